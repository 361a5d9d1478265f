"""What a lab sweep compares: the methods (a label plus ObjectiveConfig overrides) and the training regimes
(pairs, steps or epochs, lr, batch size, evaluation interval, plus any dotted TrainConfig key).

`resolve_methods` / `resolve_regimes` validate the lists of a `LabConfig` (empty: the defaults below) through
the config machinery, so a typo fails with a did-you-mean before anything runs; `regime_overrides` turns a
regime into the dotted TrainConfig overrides of its runs and `regime_steps` counts its optimizer steps.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math

from isdaa.config import ObjectiveConfig, TrainConfig, load_config
from isdaa.errors import InputError
from isdaa.objectives import RECOMMENDED
from isdaa.training.setup import build_objective

__all__ = ["DEFAULT_METHODS", "DEFAULT_REGIMES", "REGIME_KEYS", "resolve_methods", "resolve_regimes",
           "regime_overrides", "regime_steps"]

# Methods: a label plus ObjectiveConfig overrides (loss, weighting, is_eps, sft_eta, hparams, ...).
DEFAULT_METHODS: list[dict] = [
    {"label": "DPO", "loss": "sigmoid"},
    {"label": "IPO", "loss": "ipo"},
    {"label": "IS-DPO eps=0.25", "loss": "sigmoid", "weighting": "is", "is_eps": 0.25},
    {"label": "IS-DPO eps=1", "loss": "sigmoid", "weighting": "is", "is_eps": 1.0},
    {"label": "IS-IPO eps=0.25", "loss": "ipo", "weighting": "is", "is_eps": 0.25},
    {"label": "IS-IPO eps=1", "loss": "ipo", "weighting": "is", "is_eps": 1.0},
    # RPO: eta = 1 so that at initialisation the SFT term's gradient on log pi(y_w) (eta*beta) is of the same
    # order as DPO's (beta*sigma(0) = beta/2); the literature's eta = 0.005 would make RPO = DPO at beta = 0.01.
    {"label": "RPO", "loss": "sigmoid", "sft_eta": 1.0},
    {"label": "chiPO", "loss": "chipo"},
    {"label": "R-DPO", "loss": "rdpo", "hparams": {"alpha": 0.01}},
    {"label": "IS-DPO token-mean eps=1", "loss": "sigmoid", "weighting": "is_token_mean", "is_eps": 1.0},
    {"label": "IS-DPO two-sided eps=1", "loss": "sigmoid", "weighting": "is_two_sided", "is_eps": 1.0},
    {"label": "IS-IPO token-mean eps=1", "loss": "ipo", "weighting": "is_token_mean", "is_eps": 1.0},
    {"label": "IS-IPO two-sided eps=1", "loss": "ipo", "weighting": "is_two_sided", "is_eps": 1.0},
]

# Regimes: fixed on plain DPO at beta = 0.01 before any other method was run (see the docstring of
# isdaa.lab.world): (b) "few_pairs" is where DPO over-optimizes; (a) "one_pass" is the paper's protocol.
DEFAULT_REGIMES: list[dict] = [
    {"name": "few_pairs", "n_pairs": 1000, "max_steps": 1000, "lr": 5e-5, "batch_size": 32, "eval_every": 50},
    {"name": "one_pass", "n_pairs": 16000, "epochs": 1, "lr": 2e-5, "batch_size": 32, "eval_every": 50},
]

REGIME_KEYS = {"name", "n_pairs", "max_steps", "epochs", "lr", "batch_size", "eval_every"}


# ----------------------------------------------------------------------------- methods
def _check_method_keys(i: int, label: str, method: dict) -> None:
    objective_keys = {f.name for f in dataclasses.fields(ObjectiveConfig)} - {"beta"}
    for key in method:
        if key not in objective_keys:
            close = difflib.get_close_matches(key, sorted(objective_keys), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise InputError(f"option methods[{i}] ({label}): unknown key {key!r}{hint}; "
                             f"expected label or an objective option: {', '.join(sorted(objective_keys))}")


def _check_method_values(i: int, label: str, method: dict) -> None:
    """Types and values through the config machinery (with did-you-mean), then the objective's own dry run
    (loss and weighting names, hyper-parameters: checked by `isdaa.objectives` alone)."""
    try:
        build_objective(load_config(TrainConfig, None, {f"objective.{k}": v for k, v in method.items()}).objective)
    except InputError as exc:
        raise InputError(f"option methods[{i}] ({label}): {str(exc).removeprefix('option ')}") from None


def _expand_recommended(i: int, method: dict) -> dict:
    """`{recommended: true, ...}` -> the keys of `isdaa.objectives.RECOMMENDED` (the lab's recommendation; other
    keys of the entry override them), labelled "recommended (<loss> + <weighting>)" — "recommended (<loss>)"
    for an objective without a weighting — unless it has a label."""
    if not method.pop("recommended", False):
        return method
    parts = [RECOMMENDED["loss"]] + ([RECOMMENDED["weighting"]] if RECOMMENDED["weighting"] != "none" else [])
    label = method.pop("label", None) or f"recommended ({' + '.join(parts)})"
    return {"label": label, **copy.deepcopy(RECOMMENDED), **method}


def resolve_methods(methods: list) -> list[dict]:
    """`[{"label", "overrides"}]` for a LabConfig's `methods` (empty: `DEFAULT_METHODS`); InputError on a bad
    entry (not a mapping, duplicate label, unknown key, bad value, unknown loss or weighting)."""
    methods = methods or DEFAULT_METHODS
    out, labels = [], set()
    for i, m in enumerate(methods):
        if not isinstance(m, dict):
            raise InputError(f"option methods[{i}]: expected a mapping like {{label: DPO, loss: sigmoid}}, got {m!r}")
        m = _expand_recommended(i, dict(m))
        label = str(m.pop("label", "") or m.get("loss", f"method{i}"))
        if label in labels:
            raise InputError(f"option methods[{i}]: duplicate label {label!r}")
        labels.add(label)
        _check_method_keys(i, label, m)
        _check_method_values(i, label, m)
        out.append({"label": label, "overrides": m})
    return out


# ----------------------------------------------------------------------------- regimes
def _regime(i: int, name: str, r: dict) -> dict:
    """One regime with its defaults filled in; `extra` holds its dotted TrainConfig keys."""
    extra = {k: v for k, v in r.items() if k not in REGIME_KEYS}
    for k in extra:
        if "." not in k:
            raise InputError(f"option regimes[{i}] ({name}): unknown key {k!r}; expected "
                             f"{', '.join(sorted(REGIME_KEYS))} or a dotted TrainConfig key (e.g. optim.scheduler)")
    try:
        n_pairs = int(r.get("n_pairs", 1000))
    except (TypeError, ValueError):
        raise InputError(f"option regimes[{i}] ({name}): n_pairs must be an integer") from None
    if n_pairs < 1:
        raise InputError(f"option regimes[{i}] ({name}): n_pairs must be >= 1")
    reg = {
        "name": name, "n_pairs": n_pairs, "max_steps": int(r.get("max_steps", 0) or 0),
        "epochs": float(r.get("epochs", 1.0)), "lr": float(r.get("lr", 5e-5)),
        "batch_size": int(r.get("batch_size", 32)), "eval_every": int(r.get("eval_every", 50)), "extra": extra,
    }
    if reg["batch_size"] > n_pairs:
        raise InputError(f"option regimes[{i}] ({name}): batch_size {reg['batch_size']} > n_pairs {n_pairs}")
    return reg


def resolve_regimes(regimes: list) -> list[dict]:
    """Complete regimes for a LabConfig's `regimes` (empty: `DEFAULT_REGIMES`); InputError on a bad entry (not
    a mapping, duplicate name, unknown key, bad number, or overrides TrainConfig refuses)."""
    regimes = regimes or DEFAULT_REGIMES
    out, names = [], set()
    for i, r in enumerate(regimes):
        if not isinstance(r, dict):
            raise InputError(f"option regimes[{i}]: expected a mapping, got {r!r}")
        r = dict(r)
        name = str(r.get("name") or f"regime{i}")
        if name in names:
            raise InputError(f"option regimes[{i}]: duplicate name {name!r}")
        names.add(name)
        reg = _regime(i, name, r)
        load_config(TrainConfig, None, {**regime_overrides(reg), "objective.beta": 0.1})
        out.append(reg)
    return out


def regime_overrides(reg: dict) -> dict:
    """The dotted TrainConfig overrides of a regime's runs (its extra dotted keys last)."""
    o = {"epochs": reg["epochs"], "max_steps": reg["max_steps"], "batch_size": reg["batch_size"],
         "eval_every": reg["eval_every"], "optim.lr": reg["lr"]}
    o.update(reg["extra"])
    return o


def regime_steps(reg: dict) -> int:
    """Optimizer steps of a regime: max_steps, else epochs × full batches of its pairs."""
    return reg["max_steps"] or math.ceil(reg["epochs"] * (reg["n_pairs"] // reg["batch_size"]))
