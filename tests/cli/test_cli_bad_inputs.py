"""Bad input through the CLI: `isdaa train` must fail early, in one line, with exit code 2.

For every data fixture in `tests/bad_inputs/` (its expected message in `cases.json`, extra tokenisation
options in `options.json`) and for every config / path / tokenizer / output-directory case below:

- exit code 2, and stderr is exactly one line `error: ...` that contains the expected text and names
  the file or option; no traceback, nothing on stdout;
- the output directory is not created, or — when it existed — is left exactly as it was
  (same entries, same bytes, same modes); input files are never modified.

Most cases call `isdaa.cli.main` in-process (fast); `test_end_to_end_subprocess` runs `python -m
isdaa.cli` for a data case and a config case to prove the exit code and the absence of a traceback
outside pytest.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_INIT, WORDS, make_pairs, write_jsonl
from isdaa.cli import main

TESTS = Path(__file__).resolve().parents[1]  # shared with tests/data/test_data.py, test_security.py
BAD = TESTS / "bad_inputs"
BAD_CONFIG = TESTS / "bad_config"
CASES = json.loads((BAD / "cases.json").read_text())
OPTIONS = json.loads((BAD / "options.json").read_text())
INIT = dict(TINY_INIT, vocab_size=len(WORDS) + 8)

# Where the CLI refuses a case's options.json before it reads the data, it says so instead (and still
# names the option). `prompt_too_long.jsonl` is tokenised with max_prompt_length == max_length in
# test_data.py; the CLI requires data.max_prompt_length < data.max_length (prompts keep their end, so
# a long prompt is truncated, never fills max_length). The data-level "every row dropped" message is
# reached through the CLI by `rows_identical_after_truncation` below.
CLI_EXPECT = {"prompt_too_long.jsonl": "option data.max_prompt_length: must be < data.max_length (8 >= 8)"}


# ---- helpers ---------------------------------------------------------------------------------------


def snapshot(path: Path) -> dict | None:
    """Every entry under `path` (or `path` itself) -> (kind, mode, sha256 of the bytes); None if absent."""
    if not path.exists() and not path.is_symlink():
        return None
    paths = [path] + (sorted(path.rglob("*")) if path.is_dir() else [])
    out = {}
    for p in paths:
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(path))] = ("dir" if p.is_dir() else "file", st.st_mode, digest)
    return out


def assert_one_line_error(rc: int, out: str, err: str, expect: str, names: str) -> None:
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert out == "", out
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert expect in err, (expect, err)
    assert names in err, (names, err)


@pytest.fixture
def base(tokenizer_dir, pairs_file, tmp_path) -> list[str]:
    """A valid tiny run (it would train if nothing below broke it); later flags override earlier ones."""
    return [
        "--model.init", json.dumps(INIT), "--model.tokenizer", str(tokenizer_dir),
        "--data.train_file", str(pairs_file), "--output_dir", str(tmp_path / "run"),
        "--data.max_length", "32", "--data.max_prompt_length", "16", "--batch_size", "4", "--max_steps", "1",
        "--progress", "false", "--num_threads", "1",
    ]


@pytest.fixture
def cli(capsys):
    def run(args: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["train", *args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture(scope="module")
def nopad_tokenizer_dir(tmp_path_factory) -> Path:
    from isdaa.modeling.tiny import word_tokenizer

    tok = word_tokenizer(WORDS)
    tok.pad_token = None
    path = tmp_path_factory.mktemp("tokenizer-nopad")
    tok.save_pretrained(path)
    return path


# ---- the data corpus ---------------------------------------------------------------------------------


def test_corpus_size():
    assert len(CASES) >= 20
    assert len(CONFIG_CASES) >= 12


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_data_through_cli(name, base, cli, tmp_path):
    path = BAD / name
    before = snapshot(path)
    args = base + ["--data.train_file", str(path)]
    for key, value in OPTIONS.get(name, {}).items():
        args += [f"--data.{key}", str(value)]
    rc, out, err = cli(args)
    expect = CLI_EXPECT.get(name, CASES[name])
    assert_one_line_error(rc, out, err, expect, "data.max_prompt_length" if name in CLI_EXPECT else name)
    assert not (tmp_path / "run").exists()
    assert snapshot(path) == before  # the input is never touched


def test_bad_eval_file_through_cli(base, cli, tmp_path):
    rc, out, err = cli(base + ["--data.eval_file", str(BAD / "negative_weight.jsonl")])
    assert_one_line_error(rc, out, err, CASES["negative_weight.jsonl"], "negative_weight.jsonl")
    assert not (tmp_path / "run").exists()


# ---- config, paths, tokenizer, output directory ----------------------------------------------------------


class Ctx:
    """What a case may build on: a scratch directory and the shared fixtures."""

    def __init__(self, tmp_path: Path, tokenizer_dir: Path, nopad_dir: Path, pairs_file: Path):
        self.tmp, self.tokenizer_dir, self.nopad_dir, self.pairs_file = tmp_path, tokenizer_dir, nopad_dir, pairs_file
        self.run = tmp_path / "run"

    def dir_with(self, name: str, files: dict[str, str]) -> Path:
        d = self.tmp / name
        d.mkdir(parents=True)
        for rel, text in files.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
        return d


def _file_parent(c: Ctx) -> list[str]:
    (c.tmp / "a-file").write_text("not a directory\n")
    c.run = c.tmp / "a-file" / "run"
    return ["--output_dir", str(c.run)]


def _output_is_file(c: Ctx) -> list[str]:
    c.run.write_text("a file where the run directory should go\n")
    return []


def _non_empty_output(c: Ctx) -> list[str]:
    c.dir_with("run", {"notes.txt": "someone's work\n", "sub/data.bin": "x"})
    return []


def _checkpoints_but_never(c: Ctx) -> list[str]:
    c.dir_with("run", {"checkpoints/step-2/trainer_state.json": '{"step": 2}', "metrics.jsonl": "{}\n"})
    return ["--resume", "never"]


def _resume_not_checkpoint(c: Ctx) -> list[str]:
    d = c.dir_with("elsewhere", {"model.safetensors": "not really"})
    return ["--resume", str(d)]


def _resume_torn(c: Ctx) -> list[str]:
    d = c.dir_with("run", {"checkpoints/step-4.tmp-write/trainer_state.json": '{"step": 4}'})
    return ["--resume", str(d / "checkpoints" / "step-4.tmp-write")]


def _few_pairs(c: Ctx) -> list[str]:
    path = write_jsonl(c.tmp / "three.jsonl", make_pairs(3))
    return ["--data.train_file", str(path), "--batch_size", "2", "--grad_accum", "2"]


def _model_dir_no_config(c: Ctx) -> list[str]:
    d = c.dir_with("model", {"model.safetensors": ""})
    return ["--model.init", "null", "--model.name_or_path", str(d)]


CONFIG_CASES = {
    # id: (build extra args from Ctx, expected text, the option or file the line must name)
    "yaml_syntax": (lambda c: ["--config", str(BAD_CONFIG / "bad_syntax.yaml")], "line 4 invalid YAML", "bad_syntax.yaml"),
    "yaml_top_level_list": (lambda c: ["--config", str(BAD_CONFIG / "top_level_list.yaml")],
                            "expected a YAML mapping at the top level, got list", "top_level_list.yaml"),
    "yaml_not_utf8": (lambda c: ["--config", str(BAD_CONFIG / "not_utf8.yaml")], "expected a UTF-8 YAML file", "not_utf8.yaml"),
    "yaml_section_not_mapping": (lambda c: ["--config", str(BAD_CONFIG / "section_not_mapping.yaml")],
                                 "option objective: expected a mapping, got 5", "section_not_mapping.yaml"),
    "yaml_unknown_key": (lambda c: ["--config", str(BAD_CONFIG / "unknown_key.yaml")],
                         "unknown config key 'objective.betta' (did you mean 'objective.beta'?)", "unknown_key.yaml"),
    "yaml_negative_beta": (lambda c: ["--config", str(BAD_CONFIG / "negative_beta.yaml")],
                           "objective.beta must be > 0, got -0.1", "objective.beta"),
    "config_file_missing": (lambda c: ["--config", str(c.tmp / "nope.yaml")], "config file not found", "nope.yaml"),
    "config_value_missing": (lambda c: ["--config"], "option --config: expected a YAML file path", "--config"),
    "config_value_is_a_flag": (lambda c: ["--config", "--beta", "0.1"], "option --config: expected a YAML file path", "--config"),
    "stray_argument": (lambda c: ["run.yaml"], "unexpected argument 'run.yaml'", "run.yaml"),
    "flag_unknown_key": (lambda c: ["--objective.betta", "0.1"],
                         "command line: unknown option --objective.betta; did you mean --objective.beta?",
                         "objective.betta"),
    "flag_unknown_top_key": (lambda c: ["--max_step", "3"], "did you mean --max_steps?", "max_step"),
    "flag_alias_misspelled": (lambda c: ["--weigting", "is"],
                              "command line: unknown option --weigting; did you mean --weighting "
                              "(= --objective.weighting)?", "--weigting"),
    "flag_without_value_last": (lambda c: ["--output_dir"],
                                "command line: option --output_dir: no value given (expected str after it)",
                                "--output_dir"),
    "flag_without_value_before_another": (lambda c: ["--train-file", "--max_steps", "1"],
                                          "option --train-file: no value given", "--train-file"),
    "beta_zero": (lambda c: ["--beta", "0"], "objective.beta must be > 0", "objective.beta"),
    "beta_negative": (lambda c: ["--objective.beta=-1"], "objective.beta must be > 0", "objective.beta"),
    "is_eps_negative": (lambda c: ["--is-eps", "-1"], "objective.is_eps must be > 0", "objective.is_eps"),
    "is_eps_inf": (lambda c: ["--is-eps", "inf"], "expected a finite number", "objective.is_eps"),
    "lr_negative": (lambda c: ["--lr", "-1e-3"], "optim.lr must be > 0", "optim.lr"),
    "lr_nan": (lambda c: ["--lr", "nan"], "expected a finite number", "optim.lr"),
    "lr_not_a_number": (lambda c: ["--optim.lr", "fast"], "expected float", "optim.lr"),
    "batch_size_not_int": (lambda c: ["--batch_size", "two"], "expected int", "batch_size"),
    "mixed_precision_unknown": (lambda c: ["--mixed_precision", "fp8"], "mixed_precision must be no, bf16 or fp16", "mixed_precision"),
    "tracker_unknown": (lambda c: ["--trackers", "tensorbord"], "(did you mean 'tensorboard'?)", "trackers"),
    "loss_unknown": (lambda c: ["--loss", "sigmod"], "unknown value 'sigmod' (did you mean 'sigmoid'?)", "objective.loss"),
    "weighting_unknown": (lambda c: ["--weighting", "iss"], "(did you mean 'is'?)", "objective.weighting"),
    "hparam_unknown": (lambda c: ["--loss", "simpo", "--objective.hparams", '{"gama": 1.0}'],
                       "unknown hyper-parameter(s) ['gama']", "objective.hparams"),
    "label_smoothing_not_sigmoid": (lambda c: ["--loss", "ipo", "--objective.label_smoothing", "0.1"],
                                    "only the sigmoid (DPO) loss takes it", "objective.label_smoothing"),
    "max_prompt_not_below_max_length": (lambda c: ["--max-prompt-length", "32"], "must be < data.max_length (32 >= 32)",
                                        "data.max_prompt_length"),
    "model_path_missing": (lambda c: ["--model.init", "null", "--model.name_or_path", str(c.tmp / "no-model")],
                           "does not exist", "model.name_or_path"),
    "model_dir_without_config": (_model_dir_no_config, "has no config.json", "model.name_or_path"),
    "model_path_and_init": (lambda c: ["--model.name_or_path", str(c.tmp)], "set exactly one of", "model.init"),
    "model_init_invalid": (lambda c: ["--model.init", json.dumps(dict(INIT, hidden_size=30))],
                           "not a valid LlamaConfig", "model.init"),
    "model_init_key_without_space": (lambda c: ["--model.init", "{hidden_size:32}"],
                                     "unknown LlamaConfig key 'hidden_size:32': YAML reads 'hidden_size:32' as one "
                                     "key because the space after ':' is missing; write {hidden_size: 32}",
                                     "model.init"),
    "model_init_unknown_key": (lambda c: ["--model.init.hiden_size", "64"],
                               "unknown LlamaConfig key 'hiden_size' (did you mean 'hidden_size'?)", "model.init"),
    "model_init_not_an_int": (lambda c: ["--model.init.hidden_size", "wide"], "expected int, got 'wide'",
                              "model.init.hidden_size"),
    "model_init_too_big": (lambda c: ["--model.init", "{hidden_size: 65536, intermediate_size: 262144, "
                                      "num_hidden_layers: 200, num_attention_heads: 64}"],
                           "parameters needs at least", "model.init"),
    "model_source_missing": (lambda c: ["--model.init", "null"], "required", "model.name_or_path"),
    "lora_targets_unknown": (lambda c: ["--lora", "--lora.target_modules", "qproj"], "none of ['qproj']", "lora.target_modules"),
    "tokenizer_missing": (lambda c: ["--model.tokenizer", str(c.tmp / "no-tok")], "does not exist", "model.tokenizer"),
    "tokenizer_without_pad": (lambda c: ["--model.tokenizer", str(c.nopad_dir)],
                              "has no pad token; set model.pad_token", "model.tokenizer"),
    "train_file_missing": (lambda c: ["--data.train_file", str(c.tmp / "nope.jsonl")],
                           "no such file or directory", "nope.jsonl"),
    "train_file_unset": (lambda c: ["--data.train_file", "null"], "required", "data.train_file"),
    "fewer_pairs_than_one_batch": (_few_pairs, "3 usable pairs, fewer than one global batch", "three.jsonl"),
    "rows_identical_after_truncation": (
        lambda c: ["--data.train_file", str(BAD_CONFIG / "identical_after_truncation.jsonl"),
                   "--max-length", "4", "--max-prompt-length", "3"],
        "2 whose chosen and rejected are identical once truncated", "identical_after_truncation.jsonl"),
    "output_parent_is_a_file": (_file_parent, "is a file, not a directory", "output_dir"),
    "output_dir_is_a_file": (_output_is_file, "exists and is not a directory", "output_dir"),
    "ref_cache_under_a_file": (lambda c: ["--ref_cache_dir", str(c.pairs_file / "cache")],
                               "is a file, not a directory", "ref_cache_dir"),
    "output_not_empty": (_non_empty_output, "is not empty and holds no checkpoint to resume; pass --overwrite", "output_dir"),
    "checkpoints_but_resume_never": (_checkpoints_but_never, "holds checkpoints but resume is 'never'", "output_dir"),
    "resume_not_a_checkpoint": (_resume_not_checkpoint, "is not a complete checkpoint", "option resume"),
    "resume_torn_checkpoint": (_resume_torn, "is not a complete checkpoint", "step-4.tmp-write"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_through_cli(case, base, cli, tmp_path, tokenizer_dir, nopad_tokenizer_dir, pairs_file):
    build, expect, names = CONFIG_CASES[case]
    c = Ctx(tmp_path, tokenizer_dir, nopad_tokenizer_dir, pairs_file)
    extra = build(c)
    inputs = [pairs_file, tokenizer_dir, nopad_tokenizer_dir, BAD_CONFIG]
    before_inputs = [snapshot(p) for p in inputs]
    before_run = snapshot(c.run)
    before_tmp = sorted(p.name for p in tmp_path.iterdir())
    rc, out, err = cli(base + extra)
    assert_one_line_error(rc, out, err, expect, names)
    assert snapshot(c.run) == before_run  # absent stays absent; an existing directory is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == before_tmp  # nothing else created either
    assert [snapshot(p) for p in inputs] == before_inputs


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_output_dir(base, cli, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc, out, err = cli(base + ["--output_dir", str(locked / "run")])
        assert_one_line_error(rc, out, err, "is not writable (no write permission on", "output_dir")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_good_inputs_are_never_modified(base, cli, tmp_path, pairs_file, tokenizer_dir):
    """A successful run reads its data and tokenizer and writes only under output_dir."""
    (tmp_path / "data").mkdir()
    data = write_jsonl(tmp_path / "data" / "pairs.jsonl", make_pairs(8))
    cfg = tmp_path / "run.yaml"
    cfg.write_text("objective:\n  beta: 0.1\n  weighting: is\n")
    inputs = [data, tokenizer_dir, cfg]
    before = [snapshot(p) for p in inputs]
    rc, out, err = cli(base + ["--config", str(cfg), "--data.train_file", str(data)])
    assert rc == 0, err
    assert "trained 1 steps" in out
    assert [snapshot(p) for p in inputs] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run", "run.yaml"]


@pytest.mark.parametrize(
    "extra, expect, names",
    [
        (["--data.train_file", str(BAD / "bad_json_line.jsonl")], CASES["bad_json_line.jsonl"], "bad_json_line.jsonl"),
        (["--config", str(BAD_CONFIG / "unknown_key.yaml")], "(did you mean 'objective.beta'?)", "unknown_key.yaml"),
    ],
    ids=["data", "config"],
)
def test_end_to_end_subprocess(extra, expect, names, base, tmp_path):
    """`python -m isdaa.cli train`: exit code 2 and one line, outside pytest's capture."""
    env = dict(os.environ, PYTHONWARNINGS="default")
    proc = subprocess.run(
        [sys.executable, "-m", "isdaa.cli", "train", *base, *extra],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, expect, names)
    assert not (tmp_path / "run").exists()
