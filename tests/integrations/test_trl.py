"""`isdaa.integrations.trl.ISDPOTrainer` against the installed TRL (the `bench` pin, 1.16.0): the same numbers
as `trl.DPOTrainer` with weighting none, unit weights at step 1 when the behaviour is the initial policy, the
paper's objective with dataset weights and behaviour log-probs, PEFT and `precompute_ref_log_probs`.

Slow group (TRL trainers take seconds to build); skipped, with the reason printed, only without TRL.
fp32 throughout: TRL's configs default to bf16 autocast, also on CPU, which moves log-probs by ~1e-3.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from conftest import make_pairs, save_tiny_model

pytestmark = pytest.mark.slow
trl = pytest.importorskip("trl", reason="TRL is not installed (pip install 'isdaa[trl]'); the TRL drop-in is untested")

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from isdaa.data import tokenize_rows  # noqa: E402
from isdaa.integrations import isdpo_objective  # noqa: E402
from isdaa.integrations.trl import ISDPOConfig, ISDPOTrainer  # noqa: E402
from isdaa.modeling.logprobs import sequence_logps  # noqa: E402
from isdaa.objectives import daa_objective  # noqa: E402
from isdaa.training.dataset_logps import dataset_logps  # noqa: E402

BETA = 0.1


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), seed=7)


def _rows(n=16, seed=0):
    """TRL-style plain rows: completions start with a space (TRL tokenises prompt + completion as one text)."""
    return [dict(r, chosen=" " + r["chosen"], rejected=" " + r["rejected"]) for r in make_pairs(n, seed=seed)]


def _args(cls, tmp_path, **overrides):
    base = dict(output_dir=str(tmp_path / cls.__name__), per_device_train_batch_size=8, max_steps=2,
                learning_rate=1e-2, logging_steps=1, report_to=[], save_strategy="no", seed=0, use_cpu=True,
                bf16=False, gradient_checkpointing=False, max_length=64, beta=BETA, disable_tqdm=True)
    return cls(**{**base, **overrides})


def _trainer(trainer_cls, config_cls, model_dir, tmp_path, rows, ref_dir=None, **overrides):
    peft_config = overrides.pop("peft_config", None)
    ref_model = AutoModelForCausalLM.from_pretrained(ref_dir) if ref_dir is not None else None
    return trainer_cls(model=AutoModelForCausalLM.from_pretrained(model_dir), ref_model=ref_model,
                       args=_args(config_cls, tmp_path, **overrides), train_dataset=Dataset.from_list(rows),
                       processing_class=AutoTokenizer.from_pretrained(model_dir), peft_config=peft_config)


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _max_param_diff(a, b):
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    return max((pa[k].detach() - pb[k].detach()).abs().max().item() for k in pa)


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("other"), seed=8)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge"])
def test_weighting_none_equals_trl_on_the_same_batch_and_run(model_dir, other_dir, tmp_path, loss_type, capsys):
    """A reference other than the policy (so h != 0 from the first batch): the same loss as TRL's on a batch,
    the same losses over a two-step run, the same weights after it."""
    rows = _rows()
    # plain SGD: the weights move by lr x gradient (Adam's normalisation would magnify float-rounding differences
    # of near-zero gradient entries up to a full step)
    same = dict(ref_dir=other_dir, loss_type=loss_type, optim="sgd", learning_rate=0.5)
    ours = _trainer(ISDPOTrainer, ISDPOConfig, model_dir, tmp_path, rows, **same)
    theirs = _trainer(trl.DPOTrainer, trl.DPOConfig, model_dir, tmp_path, rows, **same)
    batch = next(iter(theirs.get_train_dataloader()))
    with torch.no_grad():
        loss = ours.compute_loss(ours.model, batch).item()
        diff = abs(loss - theirs.compute_loss(theirs.model, batch).item())
    assert diff < 1e-6 and abs(loss - (math.log(2) if loss_type == "sigmoid" else 1.0)) > 1e-3  # not at h = 0
    ours.train()
    theirs.train()
    run_diff = max(abs(a - b) for a, b in zip(_losses(ours), _losses(theirs), strict=True))
    assert run_diff < 1e-6 and len(_losses(ours)) == 2
    param_diff = _max_param_diff(ours, theirs)
    assert param_diff < 1e-6
    logged = ours.state.log_history[0]
    assert logged["weights/mean"] == 1.0 and "rewards/margins" in logged and "weights/ess" in logged
    with capsys.disabled():
        print(f"\n[{loss_type}] |loss - TRL| batch {diff:.2e}, run {run_diff:.2e}; params {param_diff:.2e}")


def test_is_with_the_initial_policy_as_behaviour_has_unit_weights_at_step_1(model_dir, tmp_path, capsys):
    """Behaviour log-probs from isdaa (`isdaa logps`' library function, isdaa's tokenisation) for the
    initial policy: at step 1 every weight is 1 and the loss is TRL's."""
    rows = _rows(seed=1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    examples, dropped = tokenize_rows(rows, tok, max_length=64, max_prompt_length=32)
    chosen, rejected = dataset_logps(AutoModelForCausalLM.from_pretrained(model_dir), examples,
                                     pad_token_id=tok.pad_token_id, batch_size=5)
    with_behaviour = [dict(r, behavior_chosen_logps=float(c), behavior_rejected_logps=float(x))
                      for r, c, x in zip(rows, chosen, rejected)]
    ours = _trainer(ISDPOTrainer, ISDPOConfig, model_dir, tmp_path, with_behaviour, weighting="is", is_eps=1.0,
                    max_steps=1)
    theirs = _trainer(trl.DPOTrainer, trl.DPOConfig, model_dir, tmp_path, rows, max_steps=1)
    # the sequences the behaviour log-probs were computed on are TRL's
    assert dropped == 0 and [[*e.prompt_ids, *e.chosen_ids] for e in examples] == [
        r["prompt_ids"] + r["chosen_ids"] for r in ours.train_dataset]
    ours.train()
    theirs.train()
    step1 = ours.state.log_history[0]
    w_dev = max(abs(step1["weights/min"] - 1), abs(step1["weights/max"] - 1))
    loss_diff = abs(_losses(ours)[0] - _losses(theirs)[0])
    assert w_dev < 1e-5 and loss_diff < 1e-6
    with capsys.disabled():
        print(f"\n[is, behaviour = initial policy] step-1 |w - 1| <= {w_dev:.2e}; |loss - TRL| {loss_diff:.2e}")


def test_dataset_weights_and_behaviour_give_the_papers_objective(model_dir, tmp_path, capsys):
    """With `weight` and off-policy `behavior_*` columns (and TRL's precomputed reference), the loss is
    mean(u · min(exp(δ_w + δ_l), e^{2ε}) · −log σ(βh)) = `daa_objective` on the same log-probs."""
    rows = _rows(seed=2)
    gen = torch.Generator().manual_seed(0)
    rows = [dict(r, weight=float(u), behavior_chosen_logps=-15.0 + float(a), behavior_rejected_logps=-15.0 + float(b))
            for r, u, a, b in zip(rows, torch.rand(16, generator=gen) * 2, torch.randn(16, generator=gen),
                                  torch.randn(16, generator=gen))]
    eps = 0.25
    ours = _trainer(ISDPOTrainer, ISDPOConfig, model_dir, tmp_path, rows, weighting="is", is_eps=eps,
                    precompute_ref_log_probs=True)
    batch = next(iter(ours.get_train_dataloader()))
    assert {"weight", "behavior_chosen_logps", "ref_chosen_logps"} <= set(batch)
    with torch.no_grad():
        loss = ours.compute_loss(ours.model, batch).item()
        logits = ours.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    token = logits[:, :-1].log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    policy_c, policy_r = (token * batch["completion_mask"][:, 1:]).sum(-1).chunk(2)
    ref_c, ref_r = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
    log_w = (policy_c - batch["behavior_chosen_logps"]) + (policy_r - batch["behavior_rejected_logps"])
    w = torch.exp(torch.clamp(log_w, max=2 * eps))
    h = (policy_c - ref_c) - (policy_r - ref_r)
    closed = (batch["weight"] * w * -torch.nn.functional.logsigmoid(BETA * h)).mean().item()
    objective = daa_objective(loss="sigmoid", beta=BETA, weighting="is", eps=eps, policy_chosen_logps=policy_c,
                              policy_rejected_logps=policy_r, ref_chosen_logps=ref_c, ref_rejected_logps=ref_r,
                              behavior_chosen_logps=batch["behavior_chosen_logps"],
                              behavior_rejected_logps=batch["behavior_rejected_logps"],
                              user_weights=batch["weight"]).loss.item()
    assert w.min() < 0.9 and (w == math.exp(2 * eps)).any()  # weights far from 1, some clipped
    assert abs(loss - objective) < 1e-6 and abs(loss - closed) < 1e-6
    with capsys.disabled():
        print(f"\n[is, weights] |loss - daa_objective| {abs(loss - objective):.2e}, |loss - closed form| "
              f"{abs(loss - closed):.2e}")


def test_every_objective_option_reaches_the_loss(model_dir, tmp_path):
    """The objective options `isdaa train` has beyond TRL's (the ESS target, the per-token SFT term) and TRL's own
    label smoothing: the drop-in's loss is isdaa's objective with the same settings on the same log-probs."""
    gen = torch.Generator().manual_seed(1)
    rows = [dict(r, behavior_chosen_logps=-15.0 + 3 * float(a), behavior_rejected_logps=-15.0 + 3 * float(b))
            for r, a, b in zip(_rows(seed=4), torch.randn(16, generator=gen), torch.randn(16, generator=gen))]
    settings = dict(weighting="is_ess", is_eps=2.0, is_ess_target=0.9, sft_eta=0.5, sft_token_mean=True)
    ours = _trainer(ISDPOTrainer, ISDPOConfig, model_dir, tmp_path, rows, precompute_ref_log_probs=True,
                    label_smoothing=0.1, **settings)
    batch = next(iter(ours.get_train_dataloader()))
    with torch.no_grad():
        loss = ours.compute_loss(ours.model, batch).item()
        logps, lengths = sequence_logps(ours.model, *(batch[k] for k in ("input_ids", "attention_mask",
                                                                         "completion_mask")))
    tensors = dict(zip(("policy_chosen_logps", "policy_rejected_logps"), logps.chunk(2)),
                   **dict(zip(("chosen_lengths", "rejected_lengths"), lengths.chunk(2))),
                   **{k: batch[k] for k in ("ref_chosen_logps", "ref_rejected_logps", "behavior_chosen_logps",
                                            "behavior_rejected_logps")})
    same = daa_objective(loss="sigmoid", beta=BETA, weighting="is_ess", eps=2.0, ess_target=0.9, sft_eta=0.5,
                         sft_token_mean=True, loss_hparams={"label_smoothing": 0.1}, **tensors)
    defaults = daa_objective(loss="sigmoid", beta=BETA, weighting="is_ess", eps=2.0, sft_eta=0.5, **tensors)
    assert same.metrics["weights/alpha"] < 1.0  # the ESS target binds
    assert abs(loss - same.loss.item()) < 1e-6 and abs(loss - defaults.loss.item()) > 1e-3


@pytest.mark.parametrize("precompute", [False, True])
def test_peft_model_matches_trl_with_and_without_precomputed_reference(model_dir, tmp_path, precompute, capsys):
    from peft import LoraConfig  # peft: the PEFT case only

    lora = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    rows = _rows(seed=3)
    ours = _trainer(ISDPOTrainer, ISDPOConfig, model_dir, tmp_path, rows, weighting="is",
                    precompute_ref_log_probs=precompute, peft_config=LoraConfig(**lora))
    theirs = _trainer(trl.DPOTrainer, trl.DPOConfig, model_dir, tmp_path, rows,
                      precompute_ref_log_probs=precompute, peft_config=LoraConfig(**lora))
    assert ours.ref_model is None  # the reference is the adapter-disabled model
    ours.train()
    theirs.train()
    # LoRA starts as the identity: at step 1 the policy is the reference (= the behaviour), w = 1, TRL's loss
    step1 = ours.state.log_history[0]
    assert step1["weights/min"] == pytest.approx(1.0, abs=1e-5) and step1["weights/max"] == pytest.approx(1.0, abs=1e-5)
    diff = abs(_losses(ours)[0] - _losses(theirs)[0])
    assert diff < 1e-6
    assert _losses(ours)[1] != _losses(ours)[0]  # it trained
    with capsys.disabled():
        print(f"\n[LoRA, precompute={precompute}] step-1 |loss - TRL| {diff:.2e}")


def test_config_errors_are_one_line(tmp_path):
    for overrides, match in [({"loss_type": "ipo"}, r"loss_type \['ipo'\] has no isdaa counterpart"),
                             ({"daa_loss": "ipoo"}, r"daa_loss 'ipoo' unknown"),
                             ({"weighting": "iss"}, r"weighting: unknown value .iss. \(did you mean .is.\?\)"),
                             ({"use_weighting": True}, r"use_weighting=True is TRL's own objective option"),
                             ({"is_eps": 0.0}, r"is_eps: ")]:
        with pytest.raises(ValueError, match=match) as info:
            _args(ISDPOConfig, tmp_path, **overrides)
        assert "\n" not in str(info.value)
    assert isdpo_objective(_args(ISDPOConfig, tmp_path, loss_type="ipo", daa_loss="ipo")).loss == "ipo"
    with pytest.raises(TypeError, match="args must be an ISDPOConfig, got DPOConfig"):
        ISDPOTrainer(model=None, args=_args(trl.DPOConfig, tmp_path), train_dataset=None)


def test_unsupported_trl_version_fails_at_import_with_one_line():
    code = "import trl; trl.__version__ = '0.19.1'; import isdaa.integrations.trl"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: isdaa.integrations.trl supports TRL 1.16.x") and "installed: trl 0.19.1" in last
