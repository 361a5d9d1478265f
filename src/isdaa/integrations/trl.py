"""`ISDPOTrainer` / `ISDPOConfig`: TRL's `DPOTrainer` with isdaa's objectives — importance weights, per-pair
dataset weights, behaviour and reference log-probs shipped with the data (optional extra `isdaa[trl]`).

A two-line change for a TRL user:

    from isdaa.integrations.trl import ISDPOConfig as DPOConfig, ISDPOTrainer as DPOTrainer
    args = DPOConfig(output_dir="out", beta=0.1, weighting="is", is_eps=1.0)  # + any DPOConfig field

Every option of `isdaa train`'s `objective:` section is an ISDPOConfig field of the same name (`weighting`,
`is_eps`, `is_ess_target`, `sft_eta`, `sft_token_mean`; TRL's own `beta` and `label_smoothing`), but for the loss
and its hyper-parameters: `daa_loss`, `daa_hparams`. The trainer builds its `isdaa.objectives.Objective` from them
as `isdaa train` does (`isdaa.integrations.isdpo_objective`).

Supported: TRL 1.16.x (`isdaa.integrations.SUPPORTED_TRL`; tested with 1.16.0); another version fails at
import with one line. Everything else is TRL's: tokenisation, collation, the reference (a frozen copy, the PEFT
model with its adapter disabled, or `precompute_ref_log_probs`), the loop, DDP / DeepSpeed, logging, saving.
Only the loss is isdaa's: `compute_loss` takes the policy's summed response log-probs
(`isdaa.modeling.logprobs.sequence_logps`), the reference's (the batch's `ref_*_logps` when present —
precomputed by TRL or shipped with the data — else TRL's own `compute_ref_log_probs`), and calls the
`Objective`; no loss formula is written here.

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

import dataclasses
from dataclasses import dataclass, field

import torch

from isdaa.config import ObjectiveConfig
from isdaa.integrations import TRL_LOSSES, check_trl_version, isdpo_objective

try:
    import trl
except ImportError:
    raise ImportError("isdaa.integrations.trl needs TRL 1.16: pip install 'isdaa[trl]'") from None
check_trl_version(trl.__version__)

from trl import DPOConfig, DPOTrainer  # noqa: E402  (after the version check: a clear line, not TRL's error)

from isdaa.data import OPTIONAL_COLUMNS  # noqa: E402
from isdaa.modeling.logprobs import sequence_logps  # noqa: E402
from isdaa.objectives import LOSSES, PairLogps  # noqa: E402

__all__ = ["ISDPOConfig", "ISDPOTrainer"]

_BATCH_KEYS = ("input_ids", "attention_mask", "completion_mask")
_OBJECTIVE_FIELDS = {f.name: f for f in dataclasses.fields(ObjectiveConfig)}


def _objective_option(name: str):
    """The ISDPOConfig field that sets `ObjectiveConfig.<name>`: its default and help."""
    option = _OBJECTIVE_FIELDS[name]
    return field(default=option.default, metadata={"help": option.metadata["help"]})


@dataclass
class ISDPOConfig(DPOConfig):
    """`trl.DPOConfig` plus isdaa's objective options (those of `isdaa.config.ObjectiveConfig`)."""

    weighting: str = _objective_option("weighting")
    is_eps: float = _objective_option("is_eps")
    is_ess_target: float = _objective_option("is_ess_target")
    sft_eta: float = _objective_option("sft_eta")
    sft_token_mean: bool = _objective_option("sft_token_mean")
    daa_loss: str | None = field(default=None, metadata={
        "help": "an isdaa loss (isdaa.objectives.LOSSES: sigmoid, ipo, hinge, simpo, chipo, rdpo, dpop); "
                "default: TRL's loss_type, when it is sigmoid or hinge"})
    daa_hparams: dict | None = field(default=None, metadata={
        "help": "the isdaa loss's hyper-parameters, e.g. {'gamma': 0.5} for simpo"})

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
        isdpo_objective(self)  # a bad weighting, ε or hyper-parameter fails here, not at the first step


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
    """`trl.DPOTrainer` whose loss is the `isdaa.objectives.Objective` of its `ISDPOConfig` (see the module
    docstring); `args` must be an `ISDPOConfig`."""

    def __init__(self, model, ref_model=None, args: ISDPOConfig | None = None, *rest, **kwargs):
        if not isinstance(args, ISDPOConfig):
            raise TypeError(f"ISDPOTrainer: args must be an ISDPOConfig, got {type(args).__name__}")
        self._objective = isdpo_objective(args)
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
        pairs = (PairLogps(chosen, rejected, chosen_lengths, rejected_lengths),
                 PairLogps(ref_chosen.to(chosen), ref_rejected.to(chosen)), PairLogps.from_columns(inputs, "behavior"))
        # a weighting that depends on the whole batch sees the global batch under DDP (as in isdaa train)
        out = self._objective(*pairs, user_weights=inputs.get("weight"), gather=self.accelerator.gather)
        self._log_objective_metrics(pairs, inputs.get("weight"))
        if return_outputs:
            with torch.no_grad():
                return out.loss, model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return out.loss

    @torch.no_grad()
    def _log_objective_metrics(self, pairs: tuple, user_weights) -> None:
        """isdaa's metrics of the batch gathered over processes, into TRL's metric store (averaged at `log`)."""

        def gather(t):
            return None if t is None else self.accelerator.gather_for_metrics(t.detach())

        gathered = [None if p is None else PairLogps(*(gather(getattr(p, f.name)) for f in dataclasses.fields(p)))
                    for p in pairs]
        metrics = self._objective(*gathered, user_weights=gather(user_weights)).metrics
        mode = "train" if self.model.training else "eval"
        for key, value in metrics.items():
            if key != "loss":  # the Trainer logs the loss itself
                self._metrics[mode][key].append(value)
