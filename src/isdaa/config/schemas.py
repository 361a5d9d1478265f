"""The config schemas of every command: one dataclass tree each for train, eval, pairs and the lab.

Each field states its default, a one-line help (what `--help` prints) and its limit, if any, in one
place (`option(...)`, see `isdaa.config.fields`). Loss names, weighting names and loss hyper-parameters
are checked by `isdaa.objectives`, not here. Loading: `isdaa.config.loader.load_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isdaa.config.fields import known_trackers, non_negative, one_of, option, positive, within

_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class ModelConfig:
    """Where the policy comes from. Exactly one of `name_or_path` and `init` must be set."""

    name_or_path: str | None = option(None, help="a local model directory (from_pretrained) or a .gguf file")
    init: dict | None = option(None, help=(
        "LlamaConfig keyword arguments: random init (tests, the lab); keys not given keep LlamaConfig's defaults "
        "(a 7B-size Llama); one key: --model.init.hidden_size 64; a mapping on the command line is merged over "
        "the file's"))
    tokenizer: str | None = option(None, help="a tokenizer directory; defaults to name_or_path")
    dtype: str = option("float32", help="weights: float32 | bfloat16 | float16 (log-probs and weights stay fp32)",
                        check=one_of(*_DTYPES))
    trust_remote_code: bool = option(False, help="run the model repository's own code: off unless you trust it")
    gradient_checkpointing: bool = option(False, help=(
        "checkpoint each decoder layer: its activations are recomputed in the backward pass (less memory, a "
        "longer step; docs/performance.md); the KV cache is kept, so prompt sharing still applies"))
    compile: bool = option(False, help=(
        "torch.compile (inductor) the decoder layers' MLPs and the norms: fused elementwise kernels, same "
        "log-probs; meant for GPUs: on CPU it was slower (docs/performance.md)"))
    disable_dropout: bool = option(True, help="set every dropout probability of the policy to 0")
    pad_token: str | None = option(None, help='set when the tokenizer has no pad token (e.g. "<|endoftext|>")')


@dataclass
class LoraConfig:
    """PEFT LoRA on the policy; the reference is then the adapter-disabled model."""

    enabled: bool = option(False, help="train a LoRA adapter instead of every weight")
    r: int = option(8, help="LoRA rank")
    alpha: int = option(16, help="LoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = option(0.0, help="dropout on the LoRA branch")
    target_modules: list = option(["q_proj", "k_proj", "v_proj", "o_proj"],
                                  help="module names that get an adapter (at least one must exist in the model)")
    layers: int = option(0, help=(
        "adapt only the top N decoder layers (0: every layer); the layers below get no gradient and no backward"),
        check=non_negative())
    cache_trunk: bool = option(False, help=(
        "with lora.layers: compute the frozen layers' output once per training sequence and reuse it at every "
        "later step (same log-probs up to float rounding; one process; 4 bytes x hidden size per token)"))


@dataclass
class DataConfig:
    """Preference data (TRL format) and truncation."""

    train_file: str | None = option(None, help=".jsonl / .json / .parquet / a datasets directory")
    eval_file: str | None = option(None, help="held-out pairs for preference accuracy")
    max_length: int = option(1024, help="prompt + completion tokens at most (the completion keeps its start)", check=positive())
    max_prompt_length: int = option(512, help="prompt tokens kept (its end); must be < max_length", check=positive())
    extra_columns: list = option([], help="other columns to ignore instead of rejecting")
    group_by_length: bool = option(False, help=(
        "batches of similar length (less padding): each step's pairs sorted out of a 64-step window of the "
        "epoch's permutation, the steps shuffled; still a function of (seed, epoch): exact resume, N processes = 1"))


@dataclass
class ObjectiveConfig:
    """The DAA loss and its importance weighting (names and hyper-parameters checked by isdaa.objectives)."""

    loss: str = option("sigmoid", help="sigmoid | ipo | hinge | simpo | chipo | rdpo | dpop")
    beta: float = option(0.1, help="the loss's beta (strength of the implicit KL to the reference)", check=positive())
    weighting: str = option("none", help=(
        "none | is (the paper) | is_token_mean | is_two_sided | is_self_norm | wpo | is_ess | is_ess_norm | is_curv"))
    is_eps: float = option(1.0, help="IS clip: w <= exp(2*eps)", check=positive())
    is_ess_target: float = option(0.5, help="is_ess / is_ess_norm / is_curv: the batch ESS the tempered weights keep",
                                  check=within("(0, 1]", lambda v: 0 < v <= 1))
    sft_eta: float = option(0.0, help="RPO: + eta * beta * (-log pi(y_w|x))", check=non_negative())
    sft_token_mean: bool = option(False, help="RPO's SFT term per token (mean) instead of summed over the response")
    label_smoothing: float = option(0.0, help="sigmoid only")
    hparams: dict = option({}, help="loss-specific: gamma (simpo), alpha (rdpo), lam (dpop), ...")


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = option(1e-6, help="peak learning rate", check=positive())
    weight_decay: float = option(0.0, help="AdamW weight decay")
    adam_beta1: float = option(0.9, help="AdamW beta1")
    adam_beta2: float = option(0.999, help="AdamW beta2")
    adam_eps: float = option(1e-8, help="AdamW epsilon")
    scheduler: str = option("cosine", help="cosine | constant | linear (transformers' schedulers)",
                            check=one_of("cosine", "constant", "linear"))
    warmup_ratio: float = option(0.0, help="share of the steps spent warming up linearly",
                                 check=within("[0, 1)", lambda v: 0 <= v < 1))
    min_lr_ratio: float = option(0.1, help="cosine floor, as in the paper (min 0.1 * lr)",
                                 check=within("[0, 1]", lambda v: 0 <= v <= 1))
    max_grad_norm: float = option(1.0, help="gradient clipping; 0 disables clipping", check=non_negative())


@dataclass
class MonitorConfig:
    """The in-run monitor (isdaa.eval.monitor): sampled KL to the reference and gold while training."""

    every: int = option(0, help="optimizer steps between monitor evaluations (also step 0 and the last); 0: off",
                        check=non_negative())
    prompts: str | None = option(None, help=(
        "held-out prompts: .txt, or .jsonl/.json with a 'prompt' field; default: the prompts of data.eval_file"))
    max_prompts: int = option(64, help="monitor: at most this many prompts", check=positive())
    n_samples: int = option(4, help="monitor: completions per prompt (temperature 1, no top-p)", check=positive())
    max_new_tokens: int = option(0, help=(
        "monitor: tokens sampled per completion at most; 0: data.max_length - data.max_prompt_length"),
        check=non_negative())
    batch_size: int = option(128, help="monitor: sequences per sampling / scoring batch", check=positive())
    shared_prefill: bool = option(True, help=(
        "monitor: each prompt runs once for its samples and for their log-probs, the reference's prompts once per "
        "run (false: transformers' generate and full teacher-forced passes)"))
    seed: int = option(0, help="monitor: sampling seed (the same at every evaluation)")
    scorer: str = option("none", help="monitor: a gold scorer isdaa eval accepts (length, vader, hf-rm:<dir>, ...)")
    stop_at_kl: float = option(0.0, help="stop (checkpoint + final) once monitor/kl_k3 exceeds this; 0: off",
                               check=non_negative())
    keep_best: bool = option(False, help="keep the policy of the best monitor/gold as best/ (needs a scorer)")
    ess_warn: float = option(0.1, help="warn once when weights/ess stays below this; 0: off",
                             check=within("[0, 1]", lambda v: 0 <= v <= 1))
    ess_patience: int = option(20, help="consecutive logged steps below ess_warn before the warning",
                               check=positive())


@dataclass
class TrainConfig:
    """`isdaa train`: one training run."""

    output_dir: str = option("runs/isdaa", help="the run directory (config, metrics, checkpoints, final model)")
    seed: int = option(0, help="seed of the model initialisation (init, LoRA) and of the data order")
    epochs: float = option(1.0, help="passes over the training data (fractions allowed)", check=positive())
    max_steps: int = option(0, help="> 0 overrides epochs", check=non_negative())
    batch_size: int = option(8, help="pairs per device per micro-step", check=positive())
    grad_accum: int = option(1, help="micro-steps per optimizer step", check=positive())
    eval_batch_size: int = option(16, help="pairs per forward pass on eval_file", check=positive())
    log_every: int = option(1, help="optimizer steps between lines of metrics.jsonl")
    eval_every: int = option(0, help="steps between held-out evaluations; 0: only at the end")
    save_every: int = option(0, help="steps between checkpoints; 0: no intermediate checkpoints")
    keep_last: int = option(2, help="checkpoints kept (older ones are deleted)", check=positive())
    resume: str = option("auto", help="auto (latest valid checkpoint if any) | never | a checkpoint path")
    overwrite: bool = option(False, help="start over: delete the earlier run's outputs in output_dir (files isdaa did not write are kept)")
    mixed_precision: str = option("no", help="no | bf16 | fp16 (accelerate)", check=one_of("no", "bf16", "fp16"))
    distributed: str = option("accelerate", help=(
        "accelerate (one process, DDP, or the FSDP / DeepSpeed of an accelerate launch config) | fsdp2 (isdaa "
        "shards each decoder layer with torch's fully_shard: the same code on CPU gloo and GPU NCCL)"),
        check=one_of("accelerate", "fsdp2"))
    precompute_ref: bool = option(True, help="reference log-probs once before training, cached on disk")
    ref_cache_dir: str | None = option(None, help="default: <output_dir>/ref-cache")
    prompt_sharing: bool = option(True, help=(
        "run each prompt once, its KV cache shared by the chosen and rejected completions (same log-probs and "
        "gradients up to float rounding); used when prompts average >= 64 tokens"))
    max_bad_steps: int = option(5, help="stop after this many consecutive non-finite steps", check=positive())
    trackers: list = option([], help="accelerate trackers: tensorboard, wandb, ...", check=known_trackers())
    progress: bool = option(True, help="a tqdm progress bar")
    num_threads: int = option(0, help="torch CPU threads; 0 = min(cores, 2 per process)")
    plots: bool = option(True, help="write plots/ and summary.md at the end of the run (isdaa plot)")
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


@dataclass
class EvalConfig:
    """`isdaa eval`: sample from a policy, score with a gold scorer, estimate KL to a reference."""

    policy: str | None = option(None, help="model directory")
    reference: str | None = option(None, help="model directory (KL is measured against it)")
    prompts: str | None = option(None, help=(
        "a preference-data file (its chosen responses are the baseline) or a prompt file"))
    scorer: str = option("none", help="a registered scorer name, or module:function (runs your code: opt-in)")
    output: str | None = option(None, help="results JSON path")
    n_samples: int = option(2, help="completions per prompt", check=positive())
    max_prompts: int = option(256, help="at most this many prompts from the file")
    max_new_tokens: int = option(64, help="tokens sampled per completion at most", check=positive())
    temperature: float = option(1.0, help="KL is estimated at T=1 without top-p; other settings bias it", check=positive())
    top_p: float = option(1.0, help="nucleus sampling; 1 = off", check=within("(0, 1]", lambda v: 0 < v <= 1))
    batch_size: int = option(16, help="sequences per sampling / scoring batch", check=positive())
    shared_prefill: bool = option(True, help=(
        "each prompt runs once for its samples and for their log-probs (isdaa's sampler; false: transformers' "
        "generate and full teacher-forced passes)"))
    seed: int = option(0, help="sampling seed")
    baseline: str = option("auto", help=(
        "auto | chosen | reference | none (win rate against ...; auto: the file's chosen responses when it has "
        "them, else reference samples when there is a reference, else none)"))
    max_prompt_length: int = option(512, help="prompt tokens kept (its end)")
    num_threads: int = option(0, help="torch CPU threads; 0 = min(cores, 2)")
    dtype: str = option("float32", help=(
        "eval: weights of models loaded from paths (float32 | bfloat16 | float16); log-probs stay fp32"))
    device: str = option("auto", help=(
        "eval: where models loaded from paths run: auto (cuda when available) | cpu | cuda | cuda:N"))
    progress: bool = option(True, help="eval: tqdm progress bars")
    pad_token: str | None = option(None, help="pad token for a policy tokenizer that has none")


# ------------------------------------------------------------------------------------------ the lab
# (isdaa.lab; `isdaa lab --config lab.yaml`, `isdaa demo`). Methods and regimes are lists of plain mappings,
# validated by isdaa.lab.regimes (each method's keys are ObjectiveConfig fields plus `label`).


@dataclass
class LabWorldConfig:
    """The lab's world: a controlled one (isdaa.lab.controlled, isdaa.lab.world: base distribution, gold reward) or,
    kind `model`, a real pretrained model with prompt files and gold / label scorers (isdaa.lab.model_world);
    isdaa.lab.worlds maps it to its world."""

    kind: str = option("topics", help=(
        "world family: topics (length and repeats are the exploit) | junk (fixed length; junk words cost) | "
        "behavior (data sampled from a behaviour policy mu != reference) | model (a real pretrained model: "
        "isdaa.lab.model_world)"), check=one_of("topics", "junk", "behavior", "model"))
    p_target: float = option(0.3, help="base: probability that a word is one of the prompt's 6 target words")
    p_stop: float = option(0.3, help="base: stop probability after each word (length >= min_len, mean ~ 1/p_stop)")
    min_len: int = option(1, help="base: at least this many words (= max_len: a fixed length)", check=positive())
    max_len: int = option(16, help="base: at most this many words")
    rep_penalty: float = option(0.5, help="gold: cost of every extra copy of a target word")
    len_penalty: float = option(0.5, help="gold: cost per word beyond len_free")
    len_free: int = option(12, help="gold: words free of the length penalty")
    junk_words: int = option(0, help="junk: how many junk words the vocabulary adds (0 = none)", check=non_negative())
    p_junk: float = option(0.0, help="junk: base probability that a word is a junk word",
                           check=within("[0, 1)", lambda v: 0 <= v < 1))
    junk_penalty: float = option(0.0, help="gold: cost of every junk word", check=non_negative())
    behavior_p_target: float = option(0.0, help=(
        "behavior: p_target of the base the behaviour policy mu imitates (0 = mu is the reference)"),
        check=within("[0, 1)", lambda v: 0 <= v < 1))
    behavior_p_stop: float = option(0.0, help="behavior: p_stop of mu's base (0 = the reference's)",
                                    check=within("[0, 1)", lambda v: 0 <= v < 1))
    # kind model only (isdaa.lab.model_world); the controlled kinds' fingerprints leave these fields out
    model: str | None = option(None, help="model: the local model directory (reference = behaviour policy = start)")
    prompts: str | None = option(None, help="model: training prompts (.txt one per line, or .jsonl with 'prompt')")
    eval_prompts: str | None = option(None, help="model: held-out prompts (same formats), never in the pairs")
    n_eval_prompts: int = option(64, help="model: held-out prompts used per evaluation (0 = all)",
                                 check=non_negative())
    gold: str = option("vader", help="model: the gold scorer of every evaluation (a registered scorer name)")
    label_scorer: str = option("", help="model: the scorer the Bradley-Terry labels use ('' = gold; a proxy)")
    chat: bool = option(True, help="model: string prompts become one user message (the chat template)")
    max_new_tokens: int = option(32, help="model: tokens sampled per completion at most", check=positive())
    batch_size: int = option(64, help="model: sequences per generate / scoring call", check=positive())
    shared_prefill: bool = option(True, help=(
        "model: each prompt runs once for all its samples and finished samples leave the batch (isdaa's sampler; "
        "false: transformers' generate, one prompt copy per sample)"))


@dataclass
class LabReferenceConfig:
    """The reference policy: a tiny Llama fitted to the base distribution by plain SFT."""

    hidden_size: int = option(64, help="reference: hidden size of the tiny Llama")
    num_layers: int = option(2, help="reference: transformer layers")
    num_heads: int = option(4, help="reference: attention heads")
    steps: int = option(200, help="reference: SFT steps on samples of the base distribution")
    batch_size: int = option(256, help="reference: sequences per SFT step")
    lr: float = option(3e-3, help="reference: SFT learning rate")
    seed: int = option(0, help="reference: initialisation and sampling seed")


@dataclass
class LabPairsConfig:
    """Preference pairs: two reference samples per prompt, Bradley-Terry labels on the gold reward."""

    label_temperature: float = option(0.5, help="P(a > b) = sigmoid((r_a - r_b) / label_temperature)")
    seed: int = option(0, help="pair seed s + training seed: every training seed gets its own pair set")


@dataclass
class LabConfig:
    """`isdaa lab` / `isdaa demo`: a sweep of methods x beta x seeds in the controlled world."""

    output_dir: str = option("runs/lab", help="the lab directory (reference, runs, results, report)")
    overwrite: bool = option(False, help="allow a non-empty output_dir (its runs are replaced)")
    world: LabWorldConfig = field(default_factory=LabWorldConfig)
    reference: LabReferenceConfig = field(default_factory=LabReferenceConfig)
    pairs: LabPairsConfig = field(default_factory=LabPairsConfig)
    methods: list = option([], help="[{label: DPO, loss: sigmoid}, ...]; left out = the default sweep (an empty list is refused)")
    regimes: list = option([], help="[{name, n_pairs, max_steps|epochs, lr, batch_size, eval_every}]")
    betas: list = option([0.01, 0.05, 0.1], help="the betas every method is trained with")
    seeds: list = option([0, 1, 2], help="training seeds of every (method, beta)")
    eval_samples: int = option(32, help="completions per held-out prompt at every evaluation (T = 1, no top-p)")
    report_beta: float = option(0.01, help="the beta of the report's main table")
    common_sqrt_kl: float = option(0.0, help=(
        'KL budget of the "gold at a common KL" column; 0 = smallest final sqrt(KL)'))
    workers: int = option(2, help="parallel training processes (one torch thread each); 1 = in this process")
    keep_models: bool = option(False, help="keep every run's final/ model (disk); off: deleted after evaluation")
    progress: bool = option(True, help="one progress line per step of the sweep (reference, pairs, each run)")
    protocol_note: str = option("", help="a sentence for the report: how the world and its protocol were fixed")
    report_only: bool = option(False, help=(
        "write the report from the runs already done (an interim report of a sweep still running); run nothing"))


@dataclass
class PairsConfig:
    """`isdaa pairs`: sample completions from a model, score them with a gold scorer, label pairs (isdaa.generation.pairs)."""

    prompts: str | None = option(None, help=".txt (one prompt per line) or .jsonl/.json objects with a 'prompt' field")
    out: str | None = option(None, help="the .jsonl file to write (atomically)")
    scorer: str = option("vader", help=(
        "a registered scorer name, hf-rm:<dir>, or module:function (runs your code: opt-in)"))
    chat: bool = option(False, help=(
        "string prompts become one user message rendered with the chat template; rows conversational"))
    n_per_prompt: int = option(2, help="completions per prompt; consecutive disjoint pairs (0,1), (2,3), ...")
    label: str = option("bt", help="bt (Bradley-Terry draw) | argmax (higher score chosen; ties left out)")
    bt_temperature: float = option(1.0, help="P(a chosen) = sigmoid((s_a - s_b) / bt_temperature)")
    max_new_tokens: int = option(64, help="tokens sampled per completion at most", check=positive())
    temperature: float = option(1.0, help="sampling temperature of the behaviour model", check=positive())
    top_p: float = option(1.0, help="nucleus sampling; 1 = off", check=within("(0, 1]", lambda v: 0 < v <= 1))
    max_prompts: int = option(0, help="0 = every prompt in the file")
    batch_size: int = option(16, help="prompts per generation batch", check=positive())
    seed: int = option(0, help="sampling and labelling seed")
    with_scores: bool = option(False, help="add score_chosen / score_rejected columns (train with data.extra_columns)")
    stats_out: str | None = option(None, help="also write counts and score summaries as JSON here")
    num_threads: int = option(0, help="torch CPU threads; 0 = min(cores, 2)")
    progress: bool = option(True, help="tqdm progress bars")
    model: ModelConfig = field(default_factory=ModelConfig)  # the behaviour policy (--model DIR)
