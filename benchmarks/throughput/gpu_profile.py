"""PROFILE=1 of the GPU check's two trainers (benchmarks/gpu_check.sh, benchmarks/gpu_trl.py): a torch-profiler
window over two training steps after the warm-up, and on CUDA every host-device synchronisation of those steps
(`torch.cuda.set_sync_debug_mode("warn")`), counted by the line of Python that caused it.

The trainers call `StepProfile.step()` at the end of each step; `report()` prints, per profiled step, the wall
time, the CPU time of the operators, the GPU time of the kernels, the top operators by each, and the syncs."""

from __future__ import annotations

import collections
import time
import warnings

import torch


class StepProfile:
    """Profiles the steps warmup+2 and warmup+3 (1-based); `step()` at each step end, `report()` after training."""

    ACTIVE = 2

    def __init__(self, warmup: int, top: int = 12):
        from torch.profiler import ProfilerActivity, profile, schedule

        self.cuda = torch.cuda.is_available()
        self.warmup, self.top, self.done = warmup, top, 0
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self.prof = profile(activities=activities, schedule=schedule(wait=warmup, warmup=1, active=self.ACTIVE, repeat=1))
        self.syncs: collections.Counter = collections.Counter()
        self.window: list[float] = []
        self._catcher = None

    def __enter__(self):
        self.prof.__enter__()
        return self

    def __exit__(self, *exc):
        self._sync_watch(False)
        self.prof.__exit__(*exc)

    def step(self) -> None:
        """The end of a training step (the device synchronised by the caller)."""
        self.done += 1
        self.prof.step()
        if self.done == self.warmup + 1:  # the profiler's active window starts now
            self._sync_watch(True)
            self.window.append(time.perf_counter())
        elif self.done == self.warmup + 1 + self.ACTIVE:
            self.window.append(time.perf_counter())
            self._sync_watch(False)

    def _sync_watch(self, on: bool) -> None:
        if not self.cuda:
            return
        if on and self._catcher is None:
            self._catcher = warnings.catch_warnings(record=True)
            self._records = self._catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")  # each sync: a UserWarning at the Python line that caused it
        elif not on and self._catcher is not None:
            torch.cuda.set_sync_debug_mode("default")
            for w in self._records:
                if "synchroniz" in str(w.message):
                    self.syncs[f"{w.filename.rsplit('site-packages/', 1)[-1]}:{w.lineno}"] += 1
            self._catcher.__exit__(None, None, None)
            self._catcher = None

    def report(self) -> dict:
        """Print and return the window's figures (per step)."""
        events = self.prof.key_averages()
        n = self.ACTIVE
        wall = (self.window[1] - self.window[0]) / n if len(self.window) == 2 else float("nan")
        kernels = [e for e in events if str(e.device_type).endswith("CUDA")]
        operators = [e for e in events if not str(e.device_type).endswith("CUDA") and not e.key.startswith("ProfilerStep")]
        device_us = sum(e.self_device_time_total for e in kernels) / n
        cpu_us = sum(e.self_cpu_time_total for e in operators) / n
        print(f"profile (per step, {n} steps after {self.warmup} + 1): wall {1e3 * wall:.0f} ms | operators' CPU time "
              f"{cpu_us / 1e3:.0f} ms | kernels' GPU time {device_us / 1e3:.0f} ms"
              + (f" ({100 * device_us / 1e6 / wall:.0f}% of the wall)" if self.cuda and wall == wall else ""))
        if self.cuda:
            print(events.table(sort_by="self_device_time_total", row_limit=self.top, max_name_column_width=60))
        print(events.table(sort_by="self_cpu_time_total", row_limit=self.top, max_name_column_width=60))
        syncs = {k: v / n for k, v in self.syncs.most_common()}
        if self.cuda:
            print(f"host-device synchronisations per step: {sum(syncs.values()):.0f}")
            for place, count in syncs.items():
                print(f"  {count:5.1f}  {place}")
        return {"profile_wall_s": wall, "profile_cpu_s": cpu_us / 1e6, "profile_gpu_s": device_us / 1e6,
                "syncs_per_step": syncs}
