"""A training run as `isdaa.train` and `isdaa train` run it: the trainer with the in-run monitor attached
(`isdaa.eval.monitor`, from the config's `monitor:` section) and, at the end, `plots/` and `summary.md`
(`isdaa.eval.run_plots`; `plots: false` turns them off). The lab calls the bare loop, `isdaa.training.trainer.fit`:
no monitor, no plots.
"""

from __future__ import annotations

from isdaa.config import TrainConfig
from isdaa.eval.monitor import check_monitor, monitor_callbacks
from isdaa.eval.run_plots import plot_runs
from isdaa.training.trainer import TrainResult, fit

__all__ = ["train"]


class RunPlots:
    """A callback: at the end of the run (main process, still inside the run directory's lock, so no second run
    can start there while they are written), the run's `plots/` and `summary.md`."""

    def on_train_end(self, result: TrainResult) -> None:
        plot_runs([result.output_dir])


def train(config: TrainConfig, *, callbacks=()) -> TrainResult:
    """Check the monitor's options and prompts, train with the monitor's callbacks before `callbacks` and (when
    `config.plots`) `RunPlots` after them. InputError before anything is written."""
    watchers = monitor_callbacks(config, check_monitor(config))
    return fit(config, callbacks=[*watchers, *callbacks, *([RunPlots()] if config.plots else [])])
