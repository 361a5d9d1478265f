"""Warnings about an importance weighting that does nothing useful, from the logged `weights/*` metrics.

Two conditions, each warned about once per run (a line on stderr and a `{"step": N, "warning/<name>": text}`
record in `metrics.jsonl`; a resumed run reads the records back and does not warn again):

- `weights_underflow`: `weights/mean` below `UNDERFLOW_MEAN`. The weights scale the loss and its gradient to almost
  nothing (behaviour log-probs from a model far from the policy give weights ~e⁻²⁶ and a loss ~1e-10): the run
  barely moves, whatever its metrics say.
- `weights_saturated`: `weights/clipped_frac` above `SATURATED_CLIPPED_FRAC`. Nearly every pair's weight sits at
  the clip e^{2ε}: the weighting is a constant factor, plain DPO at a larger step size.

A condition must hold for `patience` consecutive logged steps: `PATIENCE_STEPS`, or `PATIENCE_SHARE` of the run's
logged steps when that is fewer (at least 2). Runs without an importance weighting (`weighting: none`) are not
watched. The monitor's ESS alarm cannot see either condition: the normalised ESS (Σw)²/(n·Σw²) does not change
when every weight is multiplied by the same factor, so equal weights — all ~e⁻²⁶, or all at the clip — have
ESS 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from isdaa.config import ObjectiveConfig

__all__ = ["PATIENCE_SHARE", "PATIENCE_STEPS", "SATURATED_CLIPPED_FRAC", "UNDERFLOW_MEAN", "WeightAlarms",
           "alarm_patience"]

UNDERFLOW_MEAN = 1e-3
SATURATED_CLIPPED_FRAC = 0.9
PATIENCE_STEPS = 10
PATIENCE_SHARE = 0.2
KEY_PREFIX = "warning/"


def alarm_patience(total_steps: int, log_every: int) -> int:
    """Consecutive logged steps a condition must hold: `PATIENCE_STEPS`, or `PATIENCE_SHARE` of the run's logged
    steps when fewer, at least 2."""
    logged = math.ceil(total_steps / log_every) if log_every > 0 else 1
    return max(2, min(PATIENCE_STEPS, math.ceil(PATIENCE_SHARE * logged)))


def _number(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class WeightAlarms:
    """Counts, per condition, the consecutive logged steps it held; `observe` returns each warning once."""

    objective: ObjectiveConfig
    patience: int
    streaks: dict = field(default_factory=lambda: {"weights_underflow": 0, "weights_saturated": 0})
    fired: set = field(default_factory=set)

    @property
    def watching(self) -> bool:
        return self.objective.weighting != "none"

    def replay(self, records: list[dict]) -> None:
        """Bring the streaks and warnings of an earlier part of the run (its `metrics.jsonl` records) up to
        date, silently."""
        for record in records:
            self.fired.update(k[len(KEY_PREFIX):] for k in record if k.startswith(KEY_PREFIX))
            if "weights/mean" in record:
                self.observe(record.get("step", 0), record)

    def observe(self, step: int, metrics: dict) -> list[tuple[str, str]]:
        """Count the metrics of logged step `step`; returns (metrics key, warning text) for each condition that
        has just held for `patience` steps and was not warned about yet."""
        if not self.watching:
            return []
        mean, clipped = _number(metrics, "weights/mean"), _number(metrics, "weights/clipped_frac")
        if mean is None or clipped is None:
            return []  # a skipped (non-finite) step: no evidence either way
        held = {"weights_underflow": mean < UNDERFLOW_MEAN, "weights_saturated": clipped > SATURATED_CLIPPED_FRAC}
        warnings = []
        for name, now in held.items():
            self.streaks[name] = self.streaks[name] + 1 if now else 0
            if self.streaks[name] >= self.patience and name not in self.fired:
                self.fired.add(name)
                warnings.append((KEY_PREFIX + name, self._message(name, step, metrics)))
        return warnings

    def _message(self, name: str, step: int, metrics: dict) -> str:
        streak, m = self.streaks[name], metrics
        if name == "weights_underflow":
            return (
                f"step {step}: weights/mean {m['weights/mean']:.3g} has stayed below {UNDERFLOW_MEAN:g} for {streak} "
                f"logged steps (loss {_fmt(m.get('loss'))}, unweighted loss/base {_fmt(m.get('loss/base'))}, raw "
                f"log weight mean {_fmt(m.get('weights/raw_log_mean'))}): the importance weights scale the loss to "
                "almost nothing, so the run barely trains; from the first steps this means behaviour log-probs "
                "(behavior_*_logps) far from the policy's: check that they come from the model that generated the "
                "data, tokenised as here (isdaa logps), or use objective.weighting is_two_sided (clips the log "
                "weight below too)"
            )
        ceiling = 1.0 if self.objective.weighting == "wpo" else math.exp(2 * self.objective.is_eps)
        return (
            f"step {step}: weights/clipped_frac {m['weights/clipped_frac']:.2f} has stayed above "
            f"{SATURATED_CLIPPED_FRAC:g} for {streak} logged steps: nearly every pair's weight sits at the clip "
            f"({ceiling:.3g}), so all pairs weigh the same and the weighting only scales the loss; the policy has "
            "moved far above the behaviour policy on this data (text the tokenizer reads as unknown tokens does "
            "this: see the data report), or objective.is_eps is too small"
        )


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"
