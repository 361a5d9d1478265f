"""`isdaa logps`: a model's summed log-probs of every row, written as behavior_* / ref_* columns with the same
tokenisation as training (isdaa.training.dataset_logps)."""

from __future__ import annotations

import json

import pytest

from conftest import make_pairs, save_tiny_model, write_jsonl
from isdaa.cli import main
from isdaa.data import load_rows
from isdaa.runtime import read_metrics

LIMITS = ["--max_length", "32", "--max_prompt_length", "16"]
TRAIN = ["--data.max_length", "32", "--data.max_prompt_length", "16", "--max_steps", "1", "--batch_size", "16",
         "--progress", "false", "--num_threads", "1", "--optim.scheduler", "constant"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), seed=5)


def _logps(model_dir, data, out, kind, *extra):
    return main(["logps", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--as", kind,
                 "--progress", "false", *LIMITS, *extra])


def test_behaviour_logps_of_the_training_model_give_unit_weights_at_step_1(model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(16, seed=1))
    out = tmp_path / "with_behaviour.jsonl"
    assert _logps(model_dir, data, out, "behavior") == 0
    assert "behavior_*_logps of 16 of 16 rows (0 dropped" in capsys.readouterr().out
    rows = load_rows(out)
    assert len(rows) == 16 and all(r["behavior_chosen_logps"] < 0 and r["behavior_rejected_logps"] < 0 for r in rows)
    run = tmp_path / "run"
    code = main(["train", "--model", str(model_dir), "--train_file", str(out), "--output_dir", str(run),
                 "--weighting", "is", "--is_eps", "1.0", *TRAIN])
    assert code == 0, capsys.readouterr().err
    (step1,) = [m for m in read_metrics(run) if m["step"] == 1 and "weights/min" in m]
    assert step1["weights/min"] == pytest.approx(1.0, abs=1e-5) and step1["weights/max"] == pytest.approx(1.0, abs=1e-5)
    assert abs(step1["weights/raw_log_mean"]) < 1e-5


def test_reference_logps_shipped_with_the_data_are_the_trainers(model_dir, tmp_path, capsys):
    """`--as ref`: training reads them instead of running the reference; at step 1 the policy is the reference,
    so the implicit rewards are 0 to float rounding."""
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(16, seed=2))
    out = tmp_path / "with_ref.json"
    assert _logps(model_dir, data, out, "ref", "--batch_size", "3") == 0
    assert isinstance(json.loads(out.read_text()), list)
    run = tmp_path / "run"
    assert main(["train", "--model", str(model_dir), "--train_file", str(out), "--output_dir", str(run), *TRAIN]) == 0
    step1 = read_metrics(run)[0]
    assert abs(step1["rewards/chosen"]) < 1e-6 and abs(step1["rewards/margins"]) < 1e-6
    assert not (run / "ref-cache").exists() or not any((run / "ref-cache").iterdir())


def test_dropped_rows_left_out_extra_columns_kept_existing_columns_replaced(model_dir, tmp_path, capsys):
    rows = [dict(r, id=k, behavior_chosen_logps=-1.0, behavior_rejected_logps=-2.0)
            for k, r in enumerate(make_pairs(4, seed=3))]
    same_start = "good" + " w1" * 15  # 16 tokens: all that fits after a 16-token prompt at max_length 32
    rows.insert(1, {"prompt": " ".join(["w2"] * 20), "chosen": same_start + " w3", "rejected": same_start + " w4",
                    "id": "long", "behavior_chosen_logps": -1.0, "behavior_rejected_logps": -2.0})
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert _logps(model_dir, data, out, "behavior") == 0
    assert "(replacing the input's) of 4 of 5 rows (1 dropped" in capsys.readouterr().out
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in written] == [0, 1, 2, 3]
    assert all(r["behavior_chosen_logps"] != -1.0 for r in written)


@pytest.mark.parametrize("case, match", [
    ("same_file", "is the input file"),
    ("bad_kind", "--as: invalid choice"),
    ("no_model", "the following arguments are required: --model"),
    ("bad_row", "line 2: missing field 'rejected'"),
    ("txt_out", "expected a .jsonl or .json file path"),
    ("bad_limits", "must be < --max_length"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(model_dir, tmp_path, capsys, case, match):
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(4))
    out = tmp_path / "out.jsonl"
    args = ["logps", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--as", "behavior"]
    if case == "same_file":
        args[args.index("--out") + 1] = str(data)
    elif case == "bad_kind":
        args[-1] = "policy"
    elif case == "no_model":
        args = args[:1] + args[3:]
    elif case == "bad_row":
        write_jsonl(data, [make_pairs(1)[0], {"prompt": "w1", "chosen": "good"}])
    elif case == "txt_out":
        args[args.index("--out") + 1] = str(tmp_path / "out.txt")
    elif case == "bad_limits":
        args += ["--max_length", "16", "--max_prompt_length", "16"]
    before = data.read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and match in err, err
    assert data.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_help(capsys):
    assert main(["logps", "--help"]) == 0
    assert "--as KIND" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "logps" in capsys.readouterr().out
