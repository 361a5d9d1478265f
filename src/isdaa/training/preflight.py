"""Before step 1: the data report of a run's files in the training log (`isdaa.data.report`), and the refusal of
a file the tokenizer cannot read — before the output directory is touched."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from isdaa.config import TrainConfig
from isdaa.data.report import DataReport, data_report, unknown_tokens_check
from isdaa.training.setup import RunInputs

__all__ = ["DataCheck", "check_data"]


def _reports(config: TrainConfig, inputs: RunInputs) -> list[tuple[str, DataReport]]:
    """(option, report) of the train file and, when there is one, the eval file (its dropped rows not counted)."""
    limits = {"max_length": config.data.max_length, "max_prompt_length": config.data.max_prompt_length}
    reports = [("data.train_file", data_report(inputs.train, inputs.tokenizer, source=str(config.data.train_file),
                                               dropped=inputs.dropped, **limits))]
    if config.data.eval_file and inputs.eval:
        reports.append(("data.eval_file", data_report(inputs.eval, inputs.tokenizer, source=str(config.data.eval_file),
                                                      dropped=None, **limits)))
    return reports


@dataclass
class DataCheck:
    """The data reports of a run's files and the warnings about them, printed by `show` once the run is sure to
    start (a refused output directory keeps its one-line error)."""

    reports: list[DataReport]
    warnings: list[str]

    def show(self) -> None:
        """One `isdaa: data: ...` line per file on stdout, then each warning on stderr."""
        for report in self.reports:
            print(f"isdaa: data: {report.line()}", flush=True)
        for warning in self.warnings:
            print(f"isdaa: warning: {warning}", file=sys.stderr, flush=True)


def check_data(config: TrainConfig, inputs: RunInputs) -> DataCheck:
    """The data report of the run's files: InputError (one line naming the file and the share) when more than
    `isdaa.data.report.UNKNOWN_REFUSE` of a file's text tokens are the tokenizer's unknown token; else the
    reports and a warning for each file above `UNKNOWN_WARN`."""
    reports = _reports(config, inputs)
    warnings = [w for option, report in reports if (w := unknown_tokens_check(report, option=option))]
    return DataCheck([report for _, report in reports], warnings)
