"""Gold scorers: a registry of functions that give each (prompt, completion) a scalar "true" reward.

A scorer is called as `scorer(prompts, completions, *, prompt_ids=None, completion_ids=None) -> list[float]`
with equally long lists of strings (and, when known, the token ids). `get_scorer(name, **kwargs)` returns one
that checks its output (one finite float per completion); extra kwargs are bound to the scorer function.

Built in:
- `length`: the completion's token count (its ids when given, else whitespace words) — a trivial check.
- `vader`: vaderSentiment's compound score of the completion text, in [-1, 1] (`pip install 'isdaa[sentiment]'`).
- `story`: the gold of the real-model lab's story world (`story_scorer`): VADER's compound score, minus 1 when
  the completion does not end a sentence, minus its repeated-bigram share.
- `hf-rm:<dir>`: a local transformers sequence-classification reward model; the score is logit 0 of the text
  prompt + completion. Loaded once (safetensors, `trust_remote_code=False`); kwargs `batch_size`, `device`,
  `max_length`.
- `<module>:<function>`: imports `module` and calls `function` with the scorer signature (or just
  `(prompts, completions)` when it takes no keyword arguments). This EXECUTES USER CODE: it is opt-in by
  naming it explicitly, never derived from data.
`register_scorer(name, fn)` adds a named scorer (the lab registers its world's exact reward as `lab`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import re
from collections.abc import Callable

from isdaa.errors import InputError
from isdaa.generation.reward_model import hf_reward_model

__all__ = ["get_scorer", "register_scorer", "registered_scorers", "checked_scorer", "Scorer"]

Scorer = Callable[..., list]

_BUILTINS = ("length", "vader", "story")
_REGISTRY: dict[str, Scorer] = {}


def length_scorer(prompts, completions, *, prompt_ids=None, completion_ids=None) -> list[float]:
    """Token count of each completion (its ids when given, else whitespace-separated words)."""
    if completion_ids is not None:
        return [float(len(c)) for c in completion_ids]
    return [float(len(c.split())) for c in completions]


def vader_scorer(prompts, completions, **_) -> list[float]:
    """vaderSentiment compound score of the completion (deterministic, lexicon inside the package)."""
    analyzer = _vader()
    return [float(analyzer.polarity_scores(c)["compound"]) for c in completions]


@functools.lru_cache(maxsize=1)
def _vader():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # optional dependency (isdaa[sentiment])
    except ImportError:
        raise InputError(
            "scorer 'vader' needs the vaderSentiment package: pip install 'isdaa[sentiment]'"
        ) from None
    return SentimentIntensityAnalyzer()


SENTENCE_END = re.compile(r"""[.!?]["'’”)\]]*\s*$""")
WORD = re.compile(r"[a-z0-9']+")


def repeated_bigram_share(text: str) -> float:
    """seq-rep-2 (Welleck et al. 2019, "Neural text generation with unlikelihood training"): the share of the
    text's word bigrams (lower case) that repeat an earlier one; 0 for fewer than two words."""
    words = WORD.findall(text.lower())
    bigrams = list(zip(words, words[1:]))
    return 1.0 - len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def story_scorer(prompts, completions, **_) -> list[float]:
    """The gold of a story continuation: VADER's compound sentiment (in [-1, 1]), minus 1 when the text does not
    end a sentence (. ! or ?, closing quotes or brackets allowed: a continuation cut off by the token limit, or
    trailing off), minus its repeated-bigram share (`repeated_bigram_share`). A labeller that sees only the
    sentiment (`vader`) is its proxy: what it cannot see — an unfinished or repetitive continuation — the gold
    charges, as a reader asked for "a positive continuation of the story in one sentence" would."""
    sentiment = vader_scorer(prompts, completions)
    return [v - (0.0 if ends_a_sentence(c) else 1.0) - repeated_bigram_share(c) for v, c in zip(sentiment, completions)]


def ends_a_sentence(text: str) -> bool:
    """The text is not empty and ends with . ! or ? (closing quotes or brackets after it allowed)."""
    return bool(text.strip()) and SENTENCE_END.search(text) is not None


_REGISTRY["length"] = length_scorer
_REGISTRY["vader"] = vader_scorer
_REGISTRY["story"] = story_scorer


def register_scorer(name: str, fn: Scorer) -> None:
    """Register `fn` under `name` (replacing an earlier registration of the same name).

    Built-in names, `none`, and names containing ':' (reserved for `hf-rm:` and `module:function`) are refused.
    """
    if not isinstance(name, str) or not name or ":" in name or name == "none":
        raise InputError(f"scorer name {name!r}: expected a non-empty name without ':' other than 'none'")
    if name in _BUILTINS:
        raise InputError(f"scorer name {name!r} is built in; choose another name")
    if not callable(fn):
        raise InputError(f"scorer {name!r}: expected a callable, got {type(fn).__name__}")
    _REGISTRY[name] = fn


def registered_scorers() -> list[str]:
    """Names `get_scorer` accepts besides `hf-rm:<dir>` and `module:function`."""
    return sorted(_REGISTRY)


def _accepts_ids(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    names = {p.name for p in params}
    return any(p.kind is p.VAR_KEYWORD for p in params) or {"prompt_ids", "completion_ids"} <= names


def checked_scorer(name: str, fn: Scorer) -> Scorer:
    """`fn` wrapped to check its output: one finite float per completion (InputError naming `name` otherwise).
    The token ids are passed on only when `fn` accepts them."""
    pass_ids = _accepts_ids(fn)

    def scorer(prompts, completions, *, prompt_ids=None, completion_ids=None) -> list[float]:
        prompts, completions = list(prompts), list(completions)
        if len(prompts) != len(completions):
            raise ValueError(f"scorer {name!r}: {len(prompts)} prompts for {len(completions)} completions")
        if pass_ids:
            out = fn(prompts, completions, prompt_ids=prompt_ids, completion_ids=completion_ids)
        else:
            out = fn(prompts, completions)
        try:
            out = [float(v) for v in out]
        except (TypeError, ValueError):
            raise InputError(f"scorer {name!r}: expected a list of numbers, got {type(out).__name__}") from None
        if len(out) != len(completions):
            raise InputError(f"scorer {name!r}: returned {len(out)} scores for {len(completions)} completions")
        bad = [k for k, v in enumerate(out) if not math.isfinite(v)]
        if bad:
            raise InputError(f"scorer {name!r}: non-finite score for completion {bad[0]} ({out[bad[0]]})")
        return out

    scorer.__name__ = f"scorer[{name}]"
    return scorer


def _import_function(name: str) -> Scorer:
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise InputError(f"scorer {name!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"scorer {name!r}: cannot import module {module_name!r} ({exc})") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise InputError(f"scorer {name!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise InputError(f"scorer {name!r}: {attr!r} is not callable")
    return fn


def get_scorer(name: str, **kwargs) -> Scorer:
    """The scorer called `name` (see the module docstring); kwargs are bound to it.

    Raises InputError for an unknown name (listing the registered ones) or a scorer that cannot be loaded.
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"scorer {name!r}: expected a name")
    if name.startswith("hf-rm:"):
        fn = hf_reward_model(name[len("hf-rm:"):], **kwargs)
        kwargs = {}
    elif name in _REGISTRY:
        fn = _REGISTRY[name]
    elif ":" in name:
        fn = _import_function(name)
    else:
        raise InputError(
            f"unknown scorer {name!r}; expected one of {', '.join(registered_scorers())}, "
            "hf-rm:<reward model dir> or module:function"
        )
    if kwargs:
        fn = functools.partial(fn, **kwargs)
    return checked_scorer(name, fn)
