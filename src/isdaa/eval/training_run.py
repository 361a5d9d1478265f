"""A training run as `isdaa.train` and `isdaa train` run it: the trainer with the in-run monitor attached
(`isdaa.eval.monitor`, from the config's `monitor:` section) and, at the end, `plots/` and `summary.md`
(`isdaa.eval.run_plots`; `plots: false` turns them off). The lab calls the trainer itself: no monitor, no plots.
"""

from __future__ import annotations

from isdaa.config import TrainConfig
from isdaa.eval.monitor import check_monitor, monitor_callbacks
from isdaa.eval.run_plots import plot_runs
from isdaa.training.runtime import process_state
from isdaa.training.trainer import TrainResult, train

__all__ = ["train_with_monitor"]


def train_with_monitor(config: TrainConfig, *, callbacks=()) -> TrainResult:
    """Check the monitor's options and prompts, train with the monitor's callbacks before `callbacks`, then
    (main process, `config.plots`) write the run's plots and summary. InputError before anything is written."""
    watchers = monitor_callbacks(config, check_monitor(config))
    result = train(config, callbacks=[*watchers, *callbacks])
    if config.plots and process_state().is_main_process:
        plot_runs([result.output_dir])
    return result
