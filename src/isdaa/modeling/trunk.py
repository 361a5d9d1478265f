"""The frozen trunk's hidden states, computed once per training sequence (`lora.layers` + `lora.cache_trunk`).

With LoRA adapters on the top N decoder layers only, the layers below them (the trunk) and the input embedding
never change during training, so the hidden state entering the lowest adapted layer is a function of the token
ids alone. `TrunkCache` computes it once per sequence (no gradient) and every later forward runs only the top N
layers, the final norm and the output head on it:

    log π_θ(y | x) = Σ_t log softmax(W · norm(top_θ(trunk(x, y))))_{t-1}[y_t]

which equals the full forward's value up to float rounding (a batch's padding changes the matmul shapes) when the
trunk has no dropout (Llama-family configs have none; with dropout the cached trunk's mask is drawn once per
sequence instead of at every step). The
backward already stops at the lowest adapted layer (nothing below requires a gradient); the cache also removes
the trunk's forward from every step after a sequence's first. Memory: 4 bytes × hidden size per cached token
(SmolLM2-135M: 2.3 kB a token, ~370 MB for 1,000 pairs of 80-token sequences).

The layers are run by calling the model's decoder (`get_decoder()`: PEFT's LoRA layers sit inside it) with its
`layers` swapped for a slice — and, for the trunk, its final `norm` for the identity — for the duration of the
call. Any transformers decoder that holds `layers` and `norm` and accepts `inputs_embeds` works (Llama, Mistral,
Qwen2/3, SmolLM, ...). The decoder is called directly, so a caller under mixed precision enters its autocast
itself (the trainer does). One process only: the cache is per process, not sharded.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from isdaa.modeling.logprobs import (position_ids_from_mask, response_logps_from_hidden, response_targets, split_pairs,
                                     unwrap_model)

__all__ = ["TrunkCache", "decoder_layer_count"]


def _decoder(model: nn.Module) -> nn.Module:
    decoder = unwrap_model(model).get_decoder()
    if not isinstance(getattr(decoder, "layers", None), nn.ModuleList) or not hasattr(decoder, "norm"):
        raise ValueError(f"{type(decoder).__name__} has no `layers` list and `norm`: its trunk cannot be cached")
    return decoder


def decoder_layer_count(model: nn.Module) -> int:
    """The number of decoder layers of a transformers causal LM (PEFT / DDP wrappers looked through)."""
    return len(_decoder(model).layers)


@contextlib.contextmanager
def _layers(model: nn.Module, start: int, stop: int | None, *, final_norm: bool):
    """`model`'s decoder, running only its layers [start, stop) (and no final norm unless `final_norm`)."""
    decoder = _decoder(model)
    layers, norm = decoder.layers, decoder.norm
    decoder.layers = nn.ModuleList(list(layers)[start:stop])
    if not final_norm:
        decoder.norm = nn.Identity()
    try:
        yield decoder
    finally:
        decoder.layers, decoder.norm = layers, norm


def _key(ids: Tensor) -> bytes:
    return ids.cpu().numpy().tobytes()


class TrunkCache:
    """Hidden states entering decoder layer `first_trained` (the lowest adapted one), keyed by each sequence's
    real token ids; `batch_logps` is `isdaa.modeling.logprobs.batch_logps` run on top of them."""

    def __init__(self, first_trained: int):
        if first_trained < 1:
            raise ValueError(f"first_trained must be >= 1 (a trunk of at least one layer), got {first_trained}")
        self.first_trained = first_trained
        self.hidden: dict[bytes, Tensor] = {}

    def __len__(self) -> int:
        return len(self.hidden)

    def _fill(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor, keys: list[bytes]) -> None:
        """Compute and keep the trunk's output of the rows whose key is not cached yet."""
        missing = [i for i, k in enumerate(keys) if k not in self.hidden]
        if not missing:
            return
        ids, mask = input_ids[missing], attention_mask[missing]
        with torch.no_grad(), _layers(model, 0, self.first_trained, final_norm=False) as decoder:
            hidden = decoder(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                             use_cache=False).last_hidden_state
        for row, i in enumerate(missing):
            self.hidden.setdefault(keys[i], hidden[row][mask[row].bool()].detach().clone())

    def trunk_states(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(N, T, H): the trunk's output for every real token of the batch (zeros at padding)."""
        mask = attention_mask.bool()
        keys = [_key(input_ids[i][mask[i]]) for i in range(input_ids.shape[0])]
        self._fill(model, input_ids, attention_mask, keys)
        parts = [self.hidden[k] for k in keys]
        states = parts[0].new_zeros(input_ids.shape[0], input_ids.shape[1], parts[0].shape[-1])
        states[mask] = torch.cat(parts)
        return states

    def sequence_logps(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor,
                       **kwargs) -> tuple[Tensor, Tensor]:
        """`isdaa.modeling.logprobs.sequence_logps`, the trunk read from the cache."""
        target = response_targets(input_ids, attention_mask, completion_mask)
        attention_mask = attention_mask.to(input_ids.device)
        states = self.trunk_states(model, input_ids, attention_mask)
        with _layers(model, self.first_trained, None, final_norm=True) as decoder:
            hidden = decoder(inputs_embeds=states, attention_mask=attention_mask,
                             position_ids=position_ids_from_mask(attention_mask), use_cache=False).last_hidden_state
        return response_logps_from_hidden(model, hidden, input_ids, target, **kwargs)

    def batch_logps(self, model: nn.Module, batch: dict, **kwargs) -> dict[str, Tensor]:
        """Chosen/rejected log-probs of a collated batch (2B concatenated rows), as `batch_logps` returns them."""
        summed, lengths = self.sequence_logps(model, batch["input_ids"], batch["attention_mask"],
                                              batch["completion_mask"], **kwargs)
        return split_pairs(summed, lengths)
