"""The loss registry `LOSSES` (one `LossSpec` per DAA loss) and `preference_loss`, its one entry point.

Adding a loss = its function in losses.py (paper, equation and shapes in the docstring) plus ONE entry in
`LOSSES` below: the tensors the function takes, and its hyper-parameters with their defaults and checks.
Loss names and hyper-parameters are checked here and nowhere else; a bad one raises
`ObjectiveArgumentError`, whose `.argument` ("loss", "beta", "label_smoothing" or "hparams") lets the
caller name its own option.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from ._validate import ObjectiveArgumentError, as_number, check_choice, check_positive, check_vectors, lengths_as
from .losses import chipo_loss, dpop_loss, hinge_loss, ipo_loss, rdpo_loss, sigmoid_loss, simpo_loss

# The tensors a loss function may take, each (B,), built by `preference_loss` from its inputs:
#   delta_w, delta_l, h       Δ_w, Δ_l (policy − reference log-probs) and h = Δ_w − Δ_l: need the reference
#   chosen_lengths, rejected_lengths          token counts |y_w|, |y_l|, in the log-probs' dtype
#   chosen_avg_logps, rejected_avg_logps      summed policy log-prob / length (SimPO's ℓ̄)
REFERENCE_INPUTS = frozenset({"delta_w", "delta_l", "h"})
LENGTH_INPUTS = frozenset({"chosen_lengths", "rejected_lengths", "chosen_avg_logps", "rejected_avg_logps"})
SIMPO_DEFAULT_GAMMA_BETA_RATIO = 0.5


@dataclass(frozen=True)
class HParam:
    """One hyper-parameter of a loss: its default and `check(name, value)`, which returns the cleaned
    value or raises ObjectiveArgumentError."""

    default: object
    check: Callable[[str, object], object]


@dataclass(frozen=True)
class LossSpec:
    """One DAA loss: `fn(*tensors named by inputs, beta=β, **hyper-parameters)` -> (B,) losses.

    inputs: names of the tensors `fn` takes positionally, in order (see REFERENCE_INPUTS, LENGTH_INPUTS).
    hparams: name -> HParam, in the order the error messages list them.
    resolve: optional `(checked hparams, β) -> keyword arguments of fn`, for hyper-parameters that are
        checked together (SimPO's γ given directly or as γ/β).
    """

    fn: Callable[..., torch.Tensor]
    inputs: tuple[str, ...]
    hparams: Mapping[str, HParam] = field(default_factory=dict)
    resolve: Callable[[dict, float], dict] | None = None

    @property
    def needs_reference(self) -> bool:
        """Whether the loss needs the reference log-probs."""
        return not REFERENCE_INPUTS.isdisjoint(self.inputs)

    @property
    def needs_lengths(self) -> bool:
        """Whether the loss needs the response token counts."""
        return not LENGTH_INPUTS.isdisjoint(self.inputs)


def _optional_number(name: str, value) -> float | None:
    return None if value is None else as_number(name, value)


def _positive(name: str, value) -> float:
    return check_positive(name, value, argument="hparams")


def _optional_positive(name: str, value) -> float | None:
    return None if value is None else _positive(name, value)


def _non_negative(name: str, value) -> float:
    value = as_number(name, value)
    if value < 0:
        raise ObjectiveArgumentError("hparams", f"{name} must be >= 0, got {value}")
    return value


def _label_smoothing(name: str, value) -> float:
    """sigmoid: ls ∈ [0, 0.5); at 0.5 the loss is the same for either label, i.e. it ignores the label."""
    value = as_number(name, value, argument="label_smoothing")
    if not 0.0 <= value < 0.5:
        raise ObjectiveArgumentError("label_smoothing", f"label_smoothing must be in [0, 0.5), got {value}")
    return value


def _simpo_gamma(hparams: dict, beta: float) -> dict:
    """simpo: γ given directly, or as the ratio γ/β (default 0.5); not both."""
    gamma, ratio = hparams["gamma"], hparams["gamma_beta_ratio"]
    if gamma is not None and ratio is not None:
        raise ObjectiveArgumentError("hparams", "simpo: give either gamma or gamma_beta_ratio, not both")
    if gamma is None:
        gamma = (SIMPO_DEFAULT_GAMMA_BETA_RATIO if ratio is None else ratio) * beta
    return {"gamma": float(gamma)}


LOSSES: dict[str, LossSpec] = {
    "sigmoid": LossSpec(sigmoid_loss, ("h",), {"label_smoothing": HParam(0.0, _label_smoothing)}),
    "ipo": LossSpec(ipo_loss, ("h",)),
    "hinge": LossSpec(hinge_loss, ("h",)),
    "simpo": LossSpec(
        simpo_loss,
        ("chosen_avg_logps", "rejected_avg_logps"),
        {"gamma": HParam(None, _optional_number), "gamma_beta_ratio": HParam(None, _optional_number)},
        resolve=_simpo_gamma,
    ),
    "chipo": LossSpec(
        chipo_loss,
        ("delta_w", "delta_l"),
        {"chipo_clamp": HParam(20.0, _positive), "margin_clip": HParam(None, _optional_positive)},
    ),
    "rdpo": LossSpec(rdpo_loss, ("h", "chosen_lengths", "rejected_lengths"), {"alpha": HParam(0.01, as_number)}),
    "dpop": LossSpec(dpop_loss, ("h", "delta_w"), {"lam": HParam(50.0, _non_negative)}),
}
LOSS_KINDS: tuple[str, ...] = tuple(LOSSES)


def loss_hparams(kind: str, hparams: Mapping[str, object], beta: float) -> dict:
    """The checked keyword arguments of `LOSSES[kind].fn`: `hparams` over the defaults, each checked.

    Raises ObjectiveArgumentError: "loss" for an unknown kind (with a did-you-mean hint),
    "label_smoothing" when a loss other than sigmoid gets it, "hparams" for any other unknown or bad one.
    """
    check_choice("loss", kind, LOSSES)
    spec = LOSSES[kind]
    unknown = sorted(set(hparams) - set(spec.hparams))
    if "label_smoothing" in unknown:
        raise ObjectiveArgumentError("label_smoothing", f"only the sigmoid (DPO) loss takes it, not '{kind}'")
    if unknown:
        names = ", ".join(spec.hparams) or "none"
        raise ObjectiveArgumentError(
            "hparams", f"loss {kind!r} got unknown hyper-parameter(s) {unknown}; it accepts: {names}"
        )
    checked = {name: p.check(name, hparams.get(name, p.default)) for name, p in spec.hparams.items()}
    return checked if spec.resolve is None else spec.resolve(checked, beta)


def _loss_inputs(
    kind: str,
    spec: LossSpec,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    chosen_lengths: torch.Tensor | None,
    rejected_lengths: torch.Tensor | None,
) -> list[torch.Tensor]:
    """The tensors `spec.fn` takes, in the order of `spec.inputs`; raises if the reference or lengths it
    needs are missing."""
    pc, pr = policy_chosen_logps, policy_rejected_logps
    made: dict[str, torch.Tensor] = {}
    if spec.needs_reference:
        if ref_chosen_logps is None or ref_rejected_logps is None:
            raise ValueError(f"loss {kind!r} needs ref_chosen_logps and ref_rejected_logps")
        made["delta_w"] = pc - ref_chosen_logps
        made["delta_l"] = pr - ref_rejected_logps
        made["h"] = made["delta_w"] - made["delta_l"]
    if spec.needs_lengths:
        lc = lengths_as("chosen_lengths", chosen_lengths, pc, f"loss {kind!r}")
        lr = lengths_as("rejected_lengths", rejected_lengths, pr, f"loss {kind!r}")
        made.update(chosen_lengths=lc, rejected_lengths=lr, chosen_avg_logps=pc / lc, rejected_avg_logps=pr / lr)
    return [made[name] for name in spec.inputs]


def preference_loss(
    kind: str,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    *,
    beta: float,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    **hparams,
) -> torch.Tensor:
    """Per-example loss of DAA `kind` (one of `LOSS_KINDS`), shape (B,); differentiable.

    Inputs: (B,) summed response log-probs under the policy and the reference; `chosen_lengths` /
    `rejected_lengths`: (B,) token counts (needed by `simpo` and `rdpo`). `simpo` ignores the
    reference (it may be None). Hyper-parameters per kind (defaults):
    sigmoid: label_smoothing=0, in [0, 0.5) · simpo: gamma (or gamma_beta_ratio=0.5, gamma = ratio·β) ·
    chipo: chipo_clamp=20.0, margin_clip=None · rdpo: alpha=0.01 · dpop: lam=50 (>= 0).
    Raises ObjectiveArgumentError for an unknown kind or hyper-parameter, a bad hyper-parameter or β ≤ 0;
    ValueError for missing lengths or reference and for bad tensor shapes.
    """
    beta = check_positive("beta", beta)
    checked = loss_hparams(kind, hparams, beta)
    return checked_preference_loss(kind, checked, beta, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                   ref_rejected_logps, chosen_lengths, rejected_lengths)


def checked_preference_loss(kind: str, checked_hparams: dict, beta: float, pc, pr, rc, rr, lc=None,
                            lr=None) -> torch.Tensor:
    """`preference_loss(kind, pc, pr, rc, rr, beta=beta, chosen_lengths=lc, rejected_lengths=lr, ...)` whose β and
    hyper-parameters were checked beforehand (`checked_hparams` from `loss_hparams`): only the tensors are checked,
    as an `Objective` does on every batch."""
    check_vectors(policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=rc, ref_rejected_logps=rr)
    spec = LOSSES[kind]
    return spec.fn(*_loss_inputs(kind, spec, pc, pr, rc, rr, lc, lr), beta=beta, **checked_hparams)
