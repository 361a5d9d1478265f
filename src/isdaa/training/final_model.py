"""`<run>/final/`: the trained policy as a plain transformers model, written atomically and durably, with
`run_state.json` (the step it was written at and the run's planned length: a later run in the directory tells
from it whether the run is finished, `isdaa.training.resume`)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from isdaa.runtime import durable_rename, failing_write
from isdaa.training.checkpoint import resume_advice

FINAL_STATE_FILE = "run_state.json"


def save_final(accelerator, policy, tokenizer, run_dir: Path, *, lora: bool, name: str = "final",
               card: str | None = None, state: dict | None = None, gather_model=None) -> Path:
    """Write `final/` (safetensors + tokenizer; with LoRA the merged model, the adapter alone in
    `final/adapter`) through `final.tmp`, renamed into place. All processes must call it. Another `name`
    (e.g. `best`, mid-run) leaves the policy as it is (LoRA is merged on a copy). `gather_model(policy)`
    (collective) gives the main process the model to save and its state dict (a model sharded by isdaa itself
    is gathered there: `parallel.ShardedPlan`); default: accelerate's `unwrap_model` and `get_state_dict`.
    `state` (the step, the planned length, ...): `run_state.json`, renamed into place with the model."""
    final, tmp = run_dir / name, run_dir / f"{name}.tmp"
    accelerator.wait_for_everyone()
    if gather_model is None:
        model, state_dict = accelerator.unwrap_model(policy), accelerator.get_state_dict(policy)
    else:
        model, state_dict = gather_model(policy)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        # a failed write (disk full) removes `tmp` and raises WriteFailed, one line; the checkpoints are untouched
        with failing_write("the model", final, resume_advice(run_dir), temporary=tmp):
            if lora:
                model.save_pretrained(tmp / "adapter")
                model = (model if name == "final" else copy.deepcopy(model)).merge_and_unload()
                state_dict = None
            model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            if card is not None:  # the model card (isdaa.training.model_card), README.md as Hugging Face reads it
                (tmp / "README.md").write_text(card, encoding="utf-8")
            if state is not None:
                (tmp / FINAL_STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
            shutil.rmtree(final, ignore_errors=True)
            durable_rename(tmp, final)  # every file fsynced before the rename, the directory after it
    accelerator.wait_for_everyone()
    return final


def read_final_state(run_dir: Path) -> dict | None:
    """The `run_state.json` of `<run_dir>/final/` (`step`, `total_steps`, ...), or None: no `final/`, or one
    written by an older isdaa."""
    path = Path(run_dir) / "final" / FINAL_STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("step"), int) else None
