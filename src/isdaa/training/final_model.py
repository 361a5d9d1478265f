"""`<run>/final/`: the trained policy as a plain transformers model, written atomically and durably."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from isdaa.training.checkpoint import resume_advice
from isdaa.training.runtime import durable_rename, failing_write


def save_final(accelerator, policy, tokenizer, run_dir: Path, *, lora: bool, name: str = "final",
               card: str | None = None) -> Path:
    """Write `final/` (safetensors + tokenizer; with LoRA the merged model, the adapter alone in
    `final/adapter`) through `final.tmp`, renamed into place. All processes must call it. Another `name`
    (e.g. `best`, mid-run) leaves the policy as it is (LoRA is merged on a copy)."""
    final, tmp = run_dir / name, run_dir / f"{name}.tmp"
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(policy)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        # a failed write (disk full) removes `tmp` and raises WriteFailed, one line; the checkpoints are untouched
        with failing_write("the model", final, resume_advice(run_dir), temporary=tmp):
            model = accelerator.unwrap_model(policy)
            if lora:
                model.save_pretrained(tmp / "adapter")
                model = (model if name == "final" else copy.deepcopy(model)).merge_and_unload()
                state_dict = None
            model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            if card is not None:  # the model card (isdaa.training.model_card), README.md as Hugging Face reads it
                (tmp / "README.md").write_text(card, encoding="utf-8")
            shutil.rmtree(final, ignore_errors=True)
            durable_rename(tmp, final)  # every file fsynced before the rename, the directory after it
    accelerator.wait_for_everyone()
    return final
