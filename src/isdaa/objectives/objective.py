"""The training objective, an object built once from its settings and called per batch: DAA loss × importance
weight (+ RPO's SFT term).

    loss_sum = Σ_i [ w_i · u_i · ℓ_f(h_i) + η·β·sft_i ],      loss = loss_sum / B

w: importance weights (`weighting.py`, ones for weighting "none"), u: optional user per-pair weights,
ℓ_f: `preference_loss`, sft_i = −log π_θ(y_w|x) (RPO, Liu et al. 2024, "Provably Mitigating Overoptimization in
RLHF: Your SFT Loss is Implicitly an Adversarial Regularizer", η = `sft_eta`).
A plain batch mean as in the IS-DAA paper, not self-normalised (unless weighting "is_self_norm").
`loss_sum` lets a caller doing gradient accumulation or DDP normalise by a global pair count.

`Objective(...)` (or `Objective.from_config(objective_config)`) checks every setting once; calling it on a batch
(`PairLogps` of the policy, the reference and the behaviour policy) checks only the tensors.
`daa_objective(**kwargs)` builds one and calls it, for one-off use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from ._validate import ObjectiveArgumentError, as_number, check_finite, check_positive, check_vectors, lengths_as
from .loss_registry import LOSSES, checked_preference_loss, loss_hparams
from .metrics import preference_metrics, weight_stats
from .weighting import (
    check_ess_target,
    clip_bounds,
    curvature_weighted,
    linear_part,
    log_importance_weights,
    weighting_spec,
    weights_from_log_weights,
)

# The objective the lab recommends, as `objective:` config keys. How it is chosen: the second pre-registered rule,
# docs/results/RULE-objectives.md, applied unchanged (`isdaa lab compare --rule objectives`,
# docs/results/objectives/summary.md) to eight objectives — DPO, IPO, χPO, the paper's IS-DPO and IS-IPO (ε = 1),
# the two-sided clip with DPO (the first rule's pick), ESS-tempered IS-IPO and χPO + IS (ε = 1) — over six
# controlled cells (3 worlds × β ∈ {0.01, 0.05} × 5 seeds) and the real-model story world (SmolLM2-135M-Instruct,
# β = 0.05, 3 seeds). The rule first disqualifies every objective with a collapsed seed (final gold below the
# reference's) in any cell. Only χPO (Huang et al. 2024, the loss "chipo") had none, so it is the pick: an
# objective **without an importance weight**. Every weighting, the paper's included, collapsed somewhere — on the
# real model the paper's weight collapsed with DPO, IPO and χPO's loss alike. docs/studies/smollm2.md and
# docs/studies/worlds.md give the numbers.
# Use: these keys under `objective:` of a train config, or in Python
# `TrainConfig(objective=ObjectiveConfig(beta=..., **RECOMMENDED))`; a lab method `{recommended: true}` runs it
# (`isdaa demo` does).
RECOMMENDED: dict = {
    "loss": "chipo",
    "weighting": "none",
    "hparams": {},
}

# `ObjectiveConfig` fields whose name differs from the argument of `Objective` they set
_CONFIG_FIELD = {"eps": "is_eps", "ess_target": "is_ess_target"}


@dataclass(frozen=True)
class PairLogps:
    """Summed response log-probs of B preference pairs under one model, (B,) each, and the responses' token
    counts (B,) — needed by the length-normalised losses and weightings; read from the policy's `PairLogps`."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None

    @classmethod
    def from_columns(cls, columns: Mapping, prefix: str) -> PairLogps | None:
        """The columns `<prefix>_chosen_logps` and `<prefix>_rejected_logps` of a batch (e.g. "behavior", "ref"),
        or None when it has neither; ValueError when it has one only."""
        chosen, rejected = columns.get(f"{prefix}_chosen_logps"), columns.get(f"{prefix}_rejected_logps")
        if (chosen is None) != (rejected is None):
            raise ValueError(f"give both {prefix}_chosen_logps and {prefix}_rejected_logps, or neither")
        return None if chosen is None else cls(chosen, rejected)


@dataclass
class ObjectiveOutput:
    """Result of an `Objective` (and `daa_objective`).

    loss: scalar, differentiable — loss_sum / B.
    losses: (B,) per-example DAA losses ℓ_f (unweighted, without the SFT term), differentiable.
    weights: (B,) importance weights, detached (ones for weighting "none").
    metrics: floats — `loss`, `loss/base` (mean unweighted DAA loss), `loss/sft` (when sft_eta > 0),
        the `weights/*` keys of `weight_stats` (and `weights/alpha` for a tempered weighting) and the keys of
        `preference_metrics`.
    loss_sum: scalar, differentiable — the un-averaged sum of per-example terms.
    raw_log_weights: (B,) pre-clip log weights, detached (for "none": the paper's pair log weight,
        logged so that runs with and without weighting can be compared; zeros without any reference).
    """

    loss: torch.Tensor
    losses: torch.Tensor
    weights: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    loss_sum: torch.Tensor | None = None
    raw_log_weights: torch.Tensor | None = None


def sft_loss(
    policy_chosen_logps: torch.Tensor,
    *,
    chosen_lengths: torch.Tensor | None = None,
    token_mean: bool = False,
) -> torch.Tensor:
    """RPO's SFT term: the negative log-likelihood of the chosen response, per example, −log π_θ(y_w|x), (B,)
    (Liu et al. 2024, see the module docstring; the objective adds η·β times it).

    `policy_chosen_logps`: (B,) summed response log-probs. With `token_mean=True` the sum is divided
    by `chosen_lengths` (B,) — the per-token variant (then the lengths are required).
    """
    check_vectors(policy_chosen_logps=policy_chosen_logps)
    if token_mean:
        lengths = lengths_as("chosen_lengths", chosen_lengths, policy_chosen_logps, "sft_loss(token_mean=True)")
        return -policy_chosen_logps / lengths
    return -policy_chosen_logps


def _user_weights(user_weights: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """The optional per-pair user weights u (B,), detached in the dtype of `like`; each finite and >= 0."""
    if user_weights is None:
        return None
    u = torch.as_tensor(user_weights, device=like.device).detach().to(like.dtype)
    if u.shape != like.shape:
        raise ValueError(f"user_weights must have shape {tuple(like.shape)}, got {tuple(u.shape)}")
    check_finite("user_weights", u, "per-pair weights")
    if bool((u < 0).any()):
        raise ValueError("user_weights must be >= 0")
    return u


def _check_sft_eta(sft_eta) -> float:
    sft_eta = as_number("sft_eta", sft_eta, argument="sft_eta")
    if not sft_eta >= 0.0 or sft_eta == float("inf"):
        raise ObjectiveArgumentError("sft_eta", f"sft_eta must be a finite number >= 0, got {sft_eta!r}")
    return sft_eta


class Objective:
    """The (importance-weighted) DAA objective of one run: its settings checked once, then called per batch.

    `loss`: a name of `LOSSES` (`preference_loss`); `weighting`: a name of `WEIGHTINGS` ("none", "is" = the paper,
    ...); `eps`: the clip ε (weight ≤ e^{2ε}); `ess_target`: the ESS that the tempered weightings ("is_ess",
    "is_ess_norm", "is_curv") keep (logged: `weights/alpha`); `sft_eta` > 0 adds RPO's η·β·mean(−log π_θ(y_w|x))
    (per token when `sft_token_mean`); `hparams`: the loss's hyper-parameters (label_smoothing included).
    A bad setting raises ObjectiveArgumentError here (its `.argument` names which).
    """

    def __init__(
        self,
        *,
        loss: str,
        beta: float,
        weighting: str = "none",
        eps: float = 1.0,
        ess_target: float = 0.5,
        sft_eta: float = 0.0,
        sft_token_mean: bool = False,
        hparams: Mapping | None = None,
    ):
        self.beta = check_positive("beta", beta)
        self.eps = check_positive("eps", eps)
        self.weighting = weighting_spec(weighting)
        if self.weighting.curvature_only and loss in LOSSES and not LOSSES[loss].needs_reference:
            raise ObjectiveArgumentError("weighting", f"weighting '{weighting}' weights the curvature of a loss around "
                                                      f"the reference; loss '{loss}' has no reference")
        self.sft_eta = _check_sft_eta(sft_eta)
        self.sft_token_mean = sft_token_mean
        self.ess_target = check_ess_target(ess_target)
        self.loss = loss
        self.hparams = loss_hparams(loss, dict(hparams or {}), self.beta)

    @classmethod
    def from_config(cls, config) -> Objective:
        """The objective of an `isdaa.config.ObjectiveConfig` (a run's `objective:` section; `label_smoothing`
        joins the loss's hyper-parameters when it is not 0). A bad field raises ObjectiveArgumentError whose
        `.argument` is the field's name (`is_eps`, not `eps`)."""
        hparams = dict(config.hparams)
        if config.label_smoothing:
            hparams["label_smoothing"] = config.label_smoothing
        try:
            return cls(loss=config.loss, beta=config.beta, weighting=config.weighting, eps=config.is_eps,
                       ess_target=config.is_ess_target, sft_eta=config.sft_eta, sft_token_mean=config.sft_token_mean,
                       hparams=hparams)
        except ObjectiveArgumentError as exc:
            raise ObjectiveArgumentError(_CONFIG_FIELD.get(exc.argument, exc.argument), str(exc)) from None

    def __call__(
        self,
        policy: PairLogps,
        reference: PairLogps | None = None,
        behaviour: PairLogps | None = None,
        *,
        user_weights: torch.Tensor | None = None,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> ObjectiveOutput:
        """The objective of one batch of B pairs: `policy` (differentiable; its lengths are the responses'),
        `reference` (None for a reference-free loss), `behaviour` (μ of the importance weight; default: the
        reference, i.e. data generated by π_ref), `user_weights` (B,) u >= 0. Under data parallelism `gather`
        (e.g. `Accelerator.gather`) concatenates a (B,) tensor over the processes in rank order: a weighting that
        depends on the whole batch then weights this shard as one process would weight the global batch.

        Bad or non-finite behaviour log-probs raise ValueError; non-finite POLICY log-probs (a diverged model) are
        not an input error: they give a NaN loss and NaN weights, which the trainer handles."""
        pc, pr = policy.chosen, policy.rejected
        ref = (None, None) if reference is None else (reference.chosen, reference.rejected)
        mu = ref if behaviour is None else (behaviour.chosen, behaviour.rejected)
        n = check_vectors(policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=ref[0],
                          ref_rejected_logps=ref[1], behavior_chosen_logps=mu[0], behavior_rejected_logps=mu[1])
        lengths = {"chosen_lengths": policy.chosen_lengths, "rejected_lengths": policy.rejected_lengths}
        losses = checked_preference_loss(self.loss, self.hparams, self.beta, pc, pr, *ref, *lengths.values())
        weights, raw, alpha = self._pair_weights(losses, pc, pr, mu, lengths, gather)
        terms, sft = self._terms(self._weighted_losses(losses, weights, pc, pr, ref, lengths), user_weights, policy)
        loss_sum = terms.sum()
        total = loss_sum / n
        metrics = self._loss_and_weight_metrics(total, losses, sft, weights, raw)
        if alpha is not None:
            metrics["weights/alpha"] = alpha
        metrics.update(preference_metrics(pc, pr, *ref, beta=self.beta, **lengths))
        return ObjectiveOutput(
            loss=total, losses=losses, weights=weights, metrics=metrics, loss_sum=loss_sum, raw_log_weights=raw
        )

    def _pair_weights(self, losses, pc, pr, behaviour, lengths: dict, gather) -> tuple[torch.Tensor, torch.Tensor,
                                                                                       float | None]:
        """(weights, raw log weights, α): weights and raw log weights (B,) and detached, α the tempering exponent
        (None unless the weighting tempers). Weighting "none": ones, and the paper's pair log weight for the logs.
        A diverged (non-finite) policy gives NaN weights, not an error."""
        spec = self.weighting
        if spec.mode is None:
            weights = torch.ones_like(losses).detach()
            if behaviour[0] is None:
                return weights, torch.zeros_like(weights), None
            return weights, log_importance_weights(pc, pr, *behaviour, mode="pair"), None
        raw = log_importance_weights(pc, pr, *behaviour, mode=spec.mode, **lengths)
        global_log_weights = gather(raw) if gather is not None and spec.whole_batch else None  # every process
        if spec.mode != "wpo":  # data errors raise, whatever the policy did
            check_finite("behavior_chosen_logps", behaviour[0].detach(), "behaviour log-probs")
            check_finite("behavior_rejected_logps", behaviour[1].detach(), "behaviour log-probs")
        if bool(torch.isfinite(pc.detach()).all() and torch.isfinite(pr.detach()).all()):
            weights, alpha = weights_from_log_weights(raw, eps=self.eps, ess_target=self.ess_target,
                                                      global_log_weights=global_log_weights, **spec.importance_kwargs())
            return weights, raw, alpha
        return torch.full_like(raw, float("nan")), raw, None

    def _weighted_losses(self, losses, weights, pc, pr, ref, lengths: dict) -> torch.Tensor:
        """w_i·ℓ_i, or for a curvature-only weighting ℓ_i(0) + g_i·Δ_i + w_i·R_i (`weighting.py`)."""
        if not self.weighting.curvature_only:
            return weights * losses

        def loss_at(chosen, rejected):
            return checked_preference_loss(self.loss, self.hparams, self.beta, chosen, rejected, *ref, *lengths.values())

        l0, linear = linear_part(loss_at, pc, pr, *ref)
        return curvature_weighted(losses, weights, l0, linear)

    def _terms(self, weighted: torch.Tensor, user_weights, policy: PairLogps) -> tuple[torch.Tensor,
                                                                                      torch.Tensor | None]:
        """(per-example terms u_i · (w_i · ℓ_i) + η·β·sft_i, the SFT term sft_i or None when η = 0), both (B,);
        `weighted` = the importance-weighted losses."""
        terms = weighted
        u = _user_weights(user_weights, weighted.detach())
        if u is not None:
            terms = terms * u
        if self.sft_eta > 0.0:
            sft = sft_loss(policy.chosen, chosen_lengths=policy.chosen_lengths, token_mean=self.sft_token_mean)
            return terms + self.sft_eta * self.beta * sft, sft
        return terms, None

    def _loss_and_weight_metrics(self, total, losses, sft, weights, raw) -> dict[str, float]:
        """The `loss`, `loss/base`, `loss/sft` (when the SFT term is on) and `weights/*` keys, as floats."""
        metrics = {"loss": total.detach(), "loss/base": losses.detach().mean()}
        if sft is not None:
            metrics["loss/sft"] = sft.detach().mean()
        metrics = dict(zip(metrics, torch.stack([v.to(torch.float64) for v in metrics.values()]).tolist()))
        mode = self.weighting.mode or "pair"
        metrics.update(weight_stats(weights, raw, eps=self.eps, clip_log_max=clip_bounds(eps=self.eps, mode=mode)[1]))
        return metrics


def daa_objective(
    *,
    loss: str,
    beta: float,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    behavior_chosen_logps: torch.Tensor | None = None,
    behavior_rejected_logps: torch.Tensor | None = None,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    weighting: str = "none",
    eps: float = 1.0,
    user_weights: torch.Tensor | None = None,
    sft_eta: float = 0.0,
    sft_token_mean: bool = False,
    loss_hparams: dict | None = None,
    ess_target: float = 0.5,
    global_log_weights: torch.Tensor | None = None,
) -> ObjectiveOutput:
    """(Importance-weighted) DAA objective for one batch of B pairs, all log-probs (B,) summed: `Objective` built
    from the settings and called once on the tensors (see `Objective` for the settings and the errors).

    Behaviour log-probs default to the reference log-probs (data generated by π_ref); `loss_hparams` is the
    Objective's `hparams`; `global_log_weights`: the raw pair log weights of the global batch under DDP, for the
    weightings that depend on the whole batch (what `Objective`'s `gather` returns).
    """
    objective = Objective(loss=loss, beta=beta, weighting=weighting, eps=eps, ess_target=ess_target, sft_eta=sft_eta,
                          sft_token_mean=sft_token_mean, hparams=loss_hparams)
    behaviour = PairLogps.from_columns({"behavior_chosen_logps": behavior_chosen_logps,
                                        "behavior_rejected_logps": behavior_rejected_logps}, "behavior")
    no_reference = ref_chosen_logps is None and ref_rejected_logps is None
    return objective(
        PairLogps(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths),
        None if no_reference else PairLogps(ref_chosen_logps, ref_rejected_logps),
        behaviour,
        user_weights=user_weights,
        gather=None if global_log_weights is None else (lambda raw: global_log_weights),
    )
