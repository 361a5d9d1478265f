"""`ISDPOTrainer` / `ISDPOConfig`: TRL's `DPOTrainer` with isdaa's objectives — importance weights, per-pair
dataset weights, behaviour and reference log-probs shipped with the data (optional extra `isdaa[trl]`).

A two-line change for a TRL user:

    from isdaa.integrations.trl import ISDPOConfig as DPOConfig, ISDPOTrainer as DPOTrainer
    args = DPOConfig(output_dir="out", beta=0.1, weighting="is", is_eps=1.0)  # + any DPOConfig field

Supported: TRL 1.16.x (`isdaa.integrations.SUPPORTED_TRL`; tested with 1.16.0); another version fails at
import with one line. Everything else is TRL's: tokenisation, collation, the reference (a frozen copy, the PEFT
model with its adapter disabled, or `precompute_ref_log_probs`), the loop, DDP / DeepSpeed, logging, saving.
Only the loss is isdaa's: `compute_loss` takes the policy's summed response log-probs
(`isdaa.modeling.logprobs.sequence_logps`), the reference's (the batch's `ref_*_logps` when present —
precomputed by TRL or shipped with the data — else TRL's own `compute_ref_log_probs`), and calls
`isdaa.objectives.daa_objective`; no loss formula is written here.

Dataset columns read when present (besides TRL's): `weight` (per-pair user weight), `behavior_chosen_logps` /
`behavior_rejected_logps` (μ of the importance weight; default: the reference), `ref_chosen_logps` /
`ref_rejected_logps`. `isdaa logps` writes the latter two pairs with isdaa's tokenisation, which equals TRL's for
plain text whose completion starts on a token boundary; TRL keeps the newline SmolLM-style chat templates write
after the end-of-turn marker, isdaa does not (see README "Data format").

Logged next to TRL's metrics: isdaa's `rewards/*`, `logps/*` (same names and meaning as TRL's), `loss/base`,
`weights/*` (mean, min, max, ess, clipped_frac, raw_log_mean), `kl/*`, `lengths/*`; computed on the batch
gathered over processes. TRL's `entropy`, `logits/*`, `mean_token_accuracy` and `num_tokens` are not logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from isdaa.integrations import check_trl_version

try:
    import trl
except ImportError:
    raise ImportError("isdaa.integrations.trl needs TRL 1.16: pip install 'isdaa[trl]'") from None
check_trl_version(trl.__version__)

from trl import DPOConfig, DPOTrainer  # noqa: E402  (after the version check: a clear line, not TRL's error)

from isdaa.data import OPTIONAL_COLUMNS  # noqa: E402
from isdaa.modeling.logprobs import sequence_logps  # noqa: E402
from isdaa.objectives import LOSSES, daa_objective, global_batch_log_weights  # noqa: E402

__all__ = ["ISDPOConfig", "ISDPOTrainer"]

# TRL loss_type -> the isdaa loss with the same formula on summed log-probs (TRL's `ipo` averages per token:
# not the same; set `daa_loss="ipo"` for the summed IPO of the IS-DAA paper)
TRL_LOSSES = {"sigmoid": "sigmoid", "hinge": "hinge"}
_BATCH_KEYS = ("input_ids", "attention_mask", "completion_mask")
# `daa_objective`'s argument names -> the ISDPOConfig fields behind them
_FIELD_OF_ARGUMENT = {"eps": "is_eps", "loss": "daa_loss", "hparams": "daa_hparams", "sft_eta": "sft_eta",
                      "weighting": "weighting", "beta": "beta"}


@dataclass
class ISDPOConfig(DPOConfig):
    """`trl.DPOConfig` plus isdaa's objective options."""

    weighting: str = field(default="none", metadata={
        "help": "importance weighting: none | is (the paper: exp(min(δ_w + δ_l, 2ε))) | is_token_mean | "
                "is_two_sided | is_self_norm | wpo | is_ess | is_ess_norm | is_curv (isdaa.objectives.WEIGHTINGS; "
                "the batch-dependent ones see the global batch under DDP)"})
    is_eps: float = field(default=1.0, metadata={"help": "the clip ε of the importance weight: w <= exp(2ε)"})
    daa_loss: str | None = field(default=None, metadata={
        "help": "an isdaa loss (isdaa.objectives.LOSSES: sigmoid, ipo, hinge, simpo, chipo, rdpo, dpop); "
                "default: TRL's loss_type, when it is sigmoid or hinge"})
    daa_hparams: dict | None = field(default=None, metadata={
        "help": "the isdaa loss's hyper-parameters, e.g. {'gamma': 0.5} for simpo"})
    sft_eta: float = field(default=0.0, metadata={"help": "RPO: + eta * beta * (-log pi(y_w|x))"})

    def __post_init__(self):
        super().__post_init__()
        if self.daa_loss is None:
            if len(self.loss_type) != 1 or self.loss_type[0] not in TRL_LOSSES:
                raise ValueError(
                    f"ISDPOConfig: loss_type {self.loss_type} has no isdaa counterpart; expected one of "
                    f"{sorted(TRL_LOSSES)}, or set daa_loss to an isdaa loss ({', '.join(LOSSES)})"
                )
        elif self.daa_loss not in LOSSES:
            raise ValueError(f"ISDPOConfig: daa_loss {self.daa_loss!r} unknown; expected one of {', '.join(LOSSES)}")
        for name, value, default in (("ld_alpha", self.ld_alpha, None), ("use_weighting", self.use_weighting, False),
                                     ("f_divergence_type", self.f_divergence_type, "reverse_kl"),
                                     ("loss_weights", self.loss_weights, None)):
            if value != default:
                raise ValueError(f"ISDPOConfig: {name}={value!r} is TRL's own objective option; isdaa's objective "
                                 f"needs {name}={default!r} (weightings: set weighting)")
        self.objective_kwargs()  # a bad weighting, ε or hyper-parameter fails here, not at the first step

    def objective_kwargs(self) -> dict:
        """The keyword arguments of `daa_objective` (all but the tensors), checked on dummy log-probs."""
        kwargs = {"loss": self.daa_loss or TRL_LOSSES[self.loss_type[0]], "beta": self.beta,
                  "weighting": self.weighting, "eps": self.is_eps, "sft_eta": self.sft_eta,
                  "loss_hparams": dict(self.daa_hparams or {})}
        logps, lengths = torch.tensor([-4.0, -6.0]), torch.tensor([2.0, 3.0])
        try:
            daa_objective(**kwargs, policy_chosen_logps=logps, policy_rejected_logps=logps - 1, ref_chosen_logps=logps,
                          ref_rejected_logps=logps - 1, chosen_lengths=lengths, rejected_lengths=lengths)
        except ValueError as exc:  # ObjectiveArgumentError names the argument: say which field it is
            argument = getattr(exc, "argument", None)
            name = _FIELD_OF_ARGUMENT.get(argument, argument)
            raise ValueError(f"ISDPOConfig: {name + ': ' if name else ''}{exc}") from None
        return kwargs


class _WithPairColumns:
    """A collator that adds the batch's optional per-pair float columns (`weight`, `behavior_*`, `ref_*`) to
    what TRL's collator returns."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples):
        batch = self.inner(examples)
        for column in OPTIONAL_COLUMNS:
            if column not in batch and all(ex.get(column) is not None for ex in examples):
                batch[column] = torch.tensor([float(ex[column]) for ex in examples], dtype=torch.float32)
        return batch


class ISDPOTrainer(DPOTrainer):
    """`trl.DPOTrainer` whose loss is `isdaa.objectives.daa_objective` (see the module docstring); `args` must
    be an `ISDPOConfig`."""

    def __init__(self, model, ref_model=None, args: ISDPOConfig | None = None, *rest, **kwargs):
        if not isinstance(args, ISDPOConfig):
            raise TypeError(f"ISDPOTrainer: args must be an ISDPOConfig, got {type(args).__name__}")
        self._objective = args.objective_kwargs()
        super().__init__(model, ref_model, args, *rest, **kwargs)
        self.data_collator = _WithPairColumns(self.data_collator)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(dict.fromkeys(list(self._signature_columns) + list(OPTIONAL_COLUMNS)))

    def _reference_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's reference log-probs, else TRL's reference forward (frozen copy, or adapter disabled)."""
        if "ref_chosen_logps" in inputs:
            return inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        reference = self.ref_model if self.ref_model is not None else model
        return self.compute_ref_log_probs(reference, {k: inputs[k] for k in _BATCH_KEYS})

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """isdaa's objective on TRL's batch (rows 0..B-1 prompt + chosen, B..2B-1 prompt + rejected)."""
        logps, lengths = sequence_logps(model, *(inputs[k] for k in _BATCH_KEYS))
        chosen, rejected = logps.chunk(2)
        chosen_lengths, rejected_lengths = lengths.chunk(2)
        ref_chosen, ref_rejected = self._reference_logps(model, inputs)
        tensors = {
            "policy_chosen_logps": chosen, "policy_rejected_logps": rejected,
            "ref_chosen_logps": ref_chosen.to(chosen), "ref_rejected_logps": ref_rejected.to(chosen),
            "behavior_chosen_logps": inputs.get("behavior_chosen_logps"),
            "behavior_rejected_logps": inputs.get("behavior_rejected_logps"),
            "chosen_lengths": chosen_lengths, "rejected_lengths": rejected_lengths,
            "user_weights": inputs.get("weight"),
        }
        # self-normalised / ESS-tempered weights over the global batch under DDP (as isdaa train's run_objective)
        global_log_weights = global_batch_log_weights(self._objective["weighting"], self.accelerator.gather, **tensors)
        out = daa_objective(**self._objective, **tensors, global_log_weights=global_log_weights)
        self._log_objective_metrics(tensors)
        if return_outputs:
            with torch.no_grad():
                return out.loss, model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return out.loss

    @torch.no_grad()
    def _log_objective_metrics(self, tensors: dict) -> None:
        """isdaa's metrics of the batch gathered over processes, into TRL's metric store (averaged at `log`)."""
        gathered = {k: None if t is None else self.accelerator.gather_for_metrics(t.detach()) for k, t in tensors.items()}
        metrics = daa_objective(**self._objective, **gathered).metrics
        mode = "train" if self.model.training else "eval"
        for key, value in metrics.items():
            if key != "loss":  # the Trainer logs the loss itself
                self._metrics[mode][key].append(value)
