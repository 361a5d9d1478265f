"""`<run>/final/`: the trained policy as a plain transformers model, written atomically."""

from __future__ import annotations

import shutil
from pathlib import Path


def save_final(accelerator, policy, tokenizer, run_dir: Path, *, lora: bool) -> Path:
    """Write `final/` (safetensors + tokenizer; with LoRA the merged model, the adapter alone in
    `final/adapter`) through `final.tmp`, renamed into place. All processes must call it."""
    final, tmp = run_dir / "final", run_dir / "final.tmp"
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(policy)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        model = accelerator.unwrap_model(policy)
        if lora:
            model.save_pretrained(tmp / "adapter")
            model = model.merge_and_unload()
            state_dict = None
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final
