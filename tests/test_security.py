"""Security stance: nothing isdaa loads from a file can run code unless the user explicitly opts in.

Static checks parse every module under `src/isdaa/` (AST, so comments and strings never count):

- `torch.load` only with `weights_only=True`; no `weights_only=False`; no pickle / dill / joblib /
  marshal / shelve; no `torch.save` (we write safetensors);
- YAML only through `yaml.safe_load` (or `Loader=SafeLoader`);
- no `eval` / `exec` / `compile` / `__import__` builtins, no `os.system`, no `shell=True`;
- `trust_remote_code` is never a literal True: False, or the user's `ModelConfig.trust_remote_code`
  (default False); eval's config has no way to turn it on;
- every model `from_pretrained` asks for safetensors (`use_safetensors=True`) unless it reads a `.gguf`
  file (not pickle); accelerate checkpoints are saved with `safe_serialization=True`.

Behavioural checks: YAML with python tags is refused in one line and never executed; a model directory
holding only a (malicious) pickle is refused, not unpickled; a checkpoint whose accelerate pickles were
replaced by malicious ones fails to resume without running them; the loaders pass
`trust_remote_code=False` and `use_safetensors=True`. The `module:function` gold scorer is documented as
opt-in code execution (docs/reliability.md).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
from pathlib import Path

import pytest
import torch

from isdaa.config import EvalConfig, ModelConfig, TrainConfig, load_config
from isdaa.errors import InputError

SRC = Path(__file__).resolve().parents[1] / "src" / "isdaa"
BAD_CONFIG = Path(__file__).parent / "bad_config"
FILES = sorted(SRC.rglob("*.py"))


def _calls():
    """(file:line, Call node) for every call in the package."""
    for path in FILES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                yield f"{path.relative_to(SRC.parent)}:{node.lineno}", node


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


CALLS = list(_calls())


def test_package_is_scanned():
    assert len(FILES) > 20 and len(CALLS) > 500
    assert {"schemas.py", "loading.py", "checkpoint.py", "trainer.py", "setup.py"} <= {p.name for p in FILES}


def test_torch_load_only_with_weights_only_true():
    bad = [where for where, c in CALLS if _dotted(c.func).endswith("torch.load") and not _is_const(_kw(c, "weights_only"), True)]
    assert not bad, f"torch.load without weights_only=True: {bad}"
    unsafe = [where for where, c in CALLS if _is_const(_kw(c, "weights_only"), False)]
    assert not unsafe, f"weights_only=False: {unsafe}"
    saves = [where for where, c in CALLS if _dotted(c.func) == "torch.save"]
    assert not saves, f"torch.save writes a pickle; use safetensors: {saves}"


def test_no_pickle_modules():
    banned = {"pickle", "cPickle", "_pickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}
    found = []
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
                if node.module == "torch":
                    names += ["torch.load" for a in node.names if a.name == "load"]  # a bare load() hides torch.load
            found += [f"{path.name}:{node.lineno} {n}" for n in names if n in banned or n == "torch.load"]
    assert not found, found


def test_yaml_only_safe_load():
    unsafe_fns = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}
    bad = []
    for where, c in CALLS:
        name = _dotted(c.func)
        if name.startswith("yaml.") and name.split(".", 1)[1] in unsafe_fns:
            loader = _dotted(_kw(c, "Loader")) if _kw(c, "Loader") is not None else ""
            if loader not in ("yaml.SafeLoader", "yaml.CSafeLoader"):
                bad.append(where)
    assert not bad, f"yaml loading without SafeLoader: {bad}"
    attrs = []
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and _dotted(node) in ("yaml.Loader", "yaml.FullLoader", "yaml.UnsafeLoader"):
                attrs.append(f"{path.name}:{node.lineno}")
    assert not attrs, attrs


def test_no_code_evaluation_builtins():
    bad = [
        where for where, c in CALLS
        if (isinstance(c.func, ast.Name) and c.func.id in ("eval", "exec", "compile", "__import__"))
        or _dotted(c.func) in ("builtins.eval", "builtins.exec", "os.system", "os.popen")
        or _is_const(_kw(c, "shell"), True)
    ]
    assert not bad, bad


def test_trust_remote_code_is_never_forced_on():
    assert ModelConfig().trust_remote_code is False
    assert TrainConfig().model.trust_remote_code is False
    assert getattr(EvalConfig(), "trust_remote_code", False) is False  # eval loads with it off
    bad = []
    for where, c in CALLS:
        value = _kw(c, "trust_remote_code")
        if value is None:
            continue
        if not (_is_const(value, False) or (isinstance(value, ast.Attribute) and value.attr == "trust_remote_code")):
            bad.append(where)
    assert not bad, f"trust_remote_code must be False or the user's ModelConfig value: {bad}"


def test_models_load_from_safetensors_only():
    bad = []
    for where, c in CALLS:
        if not (isinstance(c.func, ast.Attribute) and c.func.attr == "from_pretrained"):
            continue
        owner = _dotted(c.func.value)
        if "Tokenizer" in owner or "Config" in owner or owner.endswith("Processor"):
            continue  # tokenizers and configs are JSON / sentencepiece, never pickle
        use = _kw(c, "use_safetensors")
        reads_gguf = _kw(c, "gguf_file") is not None or isinstance(use, ast.IfExp)  # GGUF is not pickle
        if not (_is_const(use, True) or reads_gguf):
            bad.append(f"{where} {owner}.from_pretrained")
    assert not bad, f"model loading must pass use_safetensors=True (pickle .bin fallback): {bad}"
    saves = [where for where, c in CALLS
             if isinstance(c.func, ast.Attribute) and c.func.attr == "save_state"
             and not _is_const(_kw(c, "safe_serialization"), True)]
    assert not saves, saves


# ---- behaviour ------------------------------------------------------------------------------------------

PAYLOADS = [
    "objective: !!python/object/apply:os.system [\"touch {marker}\"]\n",
    "objective:\n  beta: !!python/object/new:os.system [\"touch {marker}\"]\n",
    "seed: !!python/name:os.system\n",
]


@pytest.mark.parametrize("i", range(len(PAYLOADS)))
def test_yaml_python_tags_are_refused_not_run(i, tmp_path):
    marker = tmp_path / "hacked"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(PAYLOADS[i].format(marker=shlex.quote(str(marker))))
    with pytest.raises(InputError) as info:
        load_config(TrainConfig, cfg)
    msg = str(info.value)
    assert "evil.yaml" in msg and "invalid YAML" in msg and "python/" in msg and "\n" not in msg
    assert not marker.exists()


def test_yaml_python_tag_through_cli(tmp_path, monkeypatch, capsys):
    from isdaa.cli import main

    monkeypatch.chdir(tmp_path)  # the payload would write isdaa-hacked.txt into the working directory
    rc = main(["train", "--config", str(BAD_CONFIG / "python_tag.yaml"), "--output_dir", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "could not determine a constructor" in err
    assert "python_tag.yaml" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither the payload's file nor a run dir


class _Payload:
    """Unpickling this runs `touch <marker>`; the loaders must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_pickle_only_model_dir_is_refused_not_unpickled(tmp_path):
    from isdaa.modeling.loading import load_policy
    from isdaa.modeling.tiny import tiny_llama

    model_dir, marker = tmp_path / "model", tmp_path / "hacked"
    tiny_llama(16).config.save_pretrained(model_dir)
    torch.save({"model.embed_tokens.weight": _Payload(marker)}, model_dir / "pytorch_model.bin")
    with pytest.raises(InputError, match=r"model\.name_or_path: cannot load"):
        load_policy(ModelConfig(name_or_path=str(model_dir)))
    assert not marker.exists()


def test_loaders_ask_for_safetensors_and_no_remote_code(tmp_path, monkeypatch):
    """Train and eval model loading pass trust_remote_code=False and use_safetensors=True to transformers."""
    import transformers

    from isdaa.eval.evaluate import _load_model
    from isdaa.modeling.loading import load_policy
    from isdaa.modeling.tiny import tiny_llama

    model_dir = tmp_path / "model"
    tiny_llama(16).save_pretrained(model_dir)
    assert (model_dir / "model.safetensors").is_file()
    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    load_policy(ModelConfig(name_or_path=str(model_dir)))
    _load_model("policy", str(model_dir), EvalConfig(device="cpu"), torch.device("cpu"))
    assert len(seen) == 2
    for kwargs in seen:
        assert kwargs["trust_remote_code"] is False and kwargs["use_safetensors"] is True


@pytest.mark.parametrize("victim", ["optimizer.bin", "scheduler.bin", "random_states_0.pkl"])
def test_tampered_checkpoint_pickles_are_not_run(victim, tiny_config, tmp_path):
    """accelerate's load_state reads optimizer/scheduler/RNG pickles with weights_only=True: a malicious
    file makes the resume fail; its code never runs."""
    import isdaa
    from isdaa.training import checkpoint as ckpt

    run, marker = tmp_path / "run", tmp_path / "hacked"
    isdaa.train(tiny_config(max_steps=2, save_every=1, output_dir=str(run)))
    latest = ckpt.latest_checkpoint(run)
    assert (latest / victim).is_file()
    torch.save({"state": _Payload(marker)}, latest / victim)
    try:
        isdaa.train(tiny_config(max_steps=4, save_every=1, output_dir=str(run)))
        raised = None
    except Exception as exc:  # noqa: BLE001
        raised = exc
    assert not marker.exists()
    if victim == "random_states_0.pkl":
        assert raised is None  # accelerate skips RNG states it cannot load (our data order is seeded anyway)
    else:
        assert raised is not None and re.search(r"(?i)weights.only|unpickl|unsupported global", str(raised))


def test_module_function_scorer_is_documented_as_code_execution():
    from isdaa.generation import scorers

    assert "EXECUTES USER CODE" in scorers.__doc__
    root = SRC.parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "module:function" in readme and "runs code" in readme.lower()


def test_unknown_scorer_name_imports_nothing():
    """Only a name with ':' is imported; anything else is a registered name or an error."""
    import sys

    from isdaa.generation.scorers import get_scorer

    name = "isdaa_never_imported_module"
    with pytest.raises(InputError, match="unknown scorer"):
        get_scorer(name)
    assert name not in sys.modules


def test_config_values_are_data_not_code(tmp_path):
    """A config value that looks like code is kept as a string (and then refused as a value)."""
    marker = tmp_path / "hacked"
    code = f"__import__('os').system('touch {marker}')"
    with pytest.raises(InputError, match="objective.loss"):
        from isdaa.training.setup import prepare_inputs

        prepare_inputs(load_config(TrainConfig, None, {"objective.loss": code, "data.train_file": "x.jsonl"}))
    cfg = load_config(TrainConfig, None, {"output_dir": code, "objective.hparams": json.dumps({"gamma": code})})
    assert cfg.output_dir == code and cfg.objective.hparams == {"gamma": code}
    assert not marker.exists()
