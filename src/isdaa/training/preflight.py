"""Before step 1: the data report of a run's files in the training log (`isdaa.data.report`), and the refusal of
a file the tokenizer cannot read — before the output directory is touched."""

from __future__ import annotations

import sys

from isdaa.config import TrainConfig
from isdaa.data.report import DataReport, data_report, unknown_tokens_check
from isdaa.training.setup import RunInputs

__all__ = ["check_data"]


def _reports(config: TrainConfig, inputs: RunInputs) -> list[tuple[str, DataReport]]:
    """(option, report) of the train file and, when there is one, the eval file (its dropped rows not counted)."""
    limits = {"max_length": config.data.max_length, "max_prompt_length": config.data.max_prompt_length}
    reports = [("data.train_file", data_report(inputs.train, inputs.tokenizer, source=str(config.data.train_file),
                                               dropped=inputs.dropped, **limits))]
    if config.data.eval_file and inputs.eval:
        reports.append(("data.eval_file", data_report(inputs.eval, inputs.tokenizer, source=str(config.data.eval_file),
                                                      dropped=None, **limits)))
    return reports


def check_data(config: TrainConfig, inputs: RunInputs, *, show: bool) -> list[DataReport]:
    """The data report of the run's files: InputError (one line naming the file and the share) when more than
    `isdaa.data.report.UNKNOWN_REFUSE` of a file's text tokens are the tokenizer's unknown token; else, when
    `show` (the main process), one `isdaa: data: ...` line per file on stdout and a warning on stderr for a file
    above `UNKNOWN_WARN`. Returns the reports."""
    reports = _reports(config, inputs)
    warnings = [w for option, report in reports if (w := unknown_tokens_check(report, option=option))]
    if show:
        for _, report in reports:
            print(f"isdaa: data: {report.line()}", flush=True)
        for warning in warnings:
            print(f"isdaa: warning: {warning}", file=sys.stderr, flush=True)
    return [report for _, report in reports]
