"""The lab's controlled world: topics, a known base distribution over responses, an exact gold reward.

Prompts. A prompt is two words, ``"<topic> <style>"``, e.g. ``"sea today"``: 8 topics × 4 style words =
32 prompts. The style word changes nothing (neither the base distribution nor the reward); it only makes
a real held-out split possible: each topic's combination with the style ``again`` never appears in the
preference data and is used for evaluation (`eval_prompts`).

Base distribution (what the reference is fine-tuned to imitate). Each topic k has 6 target words T_k (sea →
wave, ship, fish, shell, sand, tide); the response vocabulary is the 48 target words of all topics.
    - a response has at least one word; after each word it stops with probability ``p_stop`` (a geometric
      length, mean ≈ 1/p_stop), and it always stops at ``max_len`` words;
    - each word is drawn i.i.d.: one of the prompt's own targets with total probability ``p_target`` (split
      evenly), otherwise uniformly one of the 42 other topics' words.
So log p_base(y|x) = Σ_i log q_k(y_i) + (L−1)·log(1 − p_stop) + [L < max_len]·log p_stop, exactly.

Gold reward (closed form). With c_t = the number of copies of target t in the response and L its length:
    r(x, y) = Σ_{t ∈ T_x, c_t ≥ 1} (1 − rep_penalty·(c_t − 1))  −  len_penalty·max(0, L − len_free)
each target word is good ONCE, every extra copy costs ``rep_penalty``, every word beyond ``len_free`` costs
``len_penalty``; other words (other topics' words, prompt words, special tokens) earn nothing. Maximum: 6.

Why DPO over-optimizes here. Near the data (reference samples: ~3.3 words, rarely a repeated target,
almost never more than 12 words — P(L > 12) = 0.7^12 ≈ 1.4%) the gold reward is, to first order, linear in
"how many target words": chosen responses contain more of them and are longer, so Bradley–Terry labels
reward target words and length. The penalties act on features the data barely cover (repeated targets, > 12 words), and nothing in the data constrains tokens that never occur
in any response (prompt words, special tokens). DPO fits β·log π/π_ref by moving likelihood; with small β and
many passes over few pairs it keeps moving after the pairs are separated, the likelihood of both chosen and
rejected responses falls, and the mass lands outside the data's support: first longer responses with
repeated targets, then words no response ever contained. The gold reward rises, peaks, and falls while
KL(π‖π_ref) keeps growing; the demo's report (docs/studies/demo.md) shows it measured.

How the parameters were fixed (plain DPO at β = 0.01 only, before any other method was run). Earlier
drafts failed the requirement and were changed for stated reasons: (1) 3 targets per topic and a penalty on
any repeated word: the labels mostly rewarded *short* responses, DPO shortened them and the gold barely rose;
(2) repeats of targets only, length penalty from 8 words: the rise was small and lost in noise because the
policy lengthened as fast as it found targets; (3) 6 targets per topic (so random duplicates are rarer and a
good response has room to grow) and the length penalty from 12 words: DPO rises and then gives all of it back
(kept; docs/lab.md has the pilots' numbers). Protocol likewise: lr 1e-3 / 1e-4 moved too fast to see the rise;
5e-5 with 1000 steps of 32 pairs over 1000 pairs (32 epochs) shows the whole rise and fall.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from isdaa.config import LabWorldConfig

TOPICS: dict[str, tuple[str, ...]] = {
    "sea": ("wave", "ship", "fish", "shell", "sand", "tide"),
    "forest": ("tree", "moss", "deer", "leaf", "owl", "fern"),
    "city": ("street", "tower", "train", "bridge", "cafe", "taxi"),
    "space": ("star", "orbit", "comet", "moon", "rocket", "planet"),
    "music": ("song", "drum", "piano", "violin", "choir", "rhythm"),
    "food": ("bread", "soup", "spice", "cheese", "honey", "apple"),
    "winter": ("snow", "ice", "frost", "sled", "scarf", "cold"),
    "farm": ("cow", "barn", "wheat", "hen", "tractor", "hay"),
}
STYLES: tuple[str, ...] = ("today", "please", "now", "again")
# The junk world's words (`junk_words` of them, in this order): fillers no topic wants.
JUNK: tuple[str, ...] = ("um", "uh", "like", "basically", "literally", "whatever", "stuff", "thing")
# The (topic, style) combination of each topic kept out of the training pairs, for evaluation.
HELD_OUT_STYLE = "again"


class World:
    """Topics, the base distribution and the gold reward. Deterministic: no hidden randomness."""

    def __init__(self, params: LabWorldConfig | None = None, **kwargs):
        p = params or LabWorldConfig(**kwargs)
        if not 0 < p.p_target < 1:
            raise ValueError(f"p_target must be in (0, 1), got {p.p_target}")
        if not 0 < p.p_stop < 1:
            raise ValueError(f"p_stop must be in (0, 1), got {p.p_stop}")
        if not 1 <= p.min_len <= p.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got min_len {p.min_len}, max_len {p.max_len}")
        _check_kind(p)
        self.params = p
        self.topics = list(TOPICS)
        self.styles = list(STYLES)
        self.junk = list(JUNK[: p.junk_words])
        self.words = [w for t in self.topics for w in TOPICS[t]] + self.junk  # the response vocabulary
        self.word_index = {w: i for i, w in enumerate(self.words)}
        self.q = self._word_probabilities()

    def _word_probabilities(self) -> np.ndarray:
        """q[k, j]: base probability of word j for topic k — own targets p_target in all, junk words p_junk in
        all, the other topics' words the rest, each group split evenly."""
        p = self.params
        n, n_junk = len(self.words), len(self.junk)
        q = np.zeros((len(self.topics), n))
        for k, topic in enumerate(self.topics):
            own = [self.word_index[w] for w in TOPICS[topic]]
            q[k, :] = (1 - p.p_target - (p.p_junk if n_junk else 0.0)) / (n - len(own) - n_junk)
            q[k, own] = p.p_target / len(own)
            if n_junk:
                q[k, n - n_junk:] = p.p_junk / n_junk
        return q

    def behavior_world(self) -> "World | None":
        """The world whose base the behaviour policy μ imitates (kind `behavior`), or None when μ = π_ref."""
        p = self.params
        if p.kind != "behavior":
            return None
        return World(dataclasses.replace(p, kind="topics", p_target=p.behavior_p_target or p.p_target,
                                         p_stop=p.behavior_p_stop or p.p_stop))

    # ------------------------------------------------------------------ vocabulary and prompts
    def vocabulary(self) -> list[str]:
        """Every word a prompt or response can contain (for `isdaa.modeling.tiny.word_tokenizer`)."""
        return self.topics + self.styles + self.words

    def prompts(self) -> list[str]:
        """Every prompt, `<topic> <style>`."""
        return [f"{t} {s}" for t in self.topics for s in self.styles]

    def train_prompts(self) -> list[str]:
        """The prompts of the preference data (every style but the held-out one)."""
        return [f"{t} {s}" for t in self.topics for s in self.styles if s != HELD_OUT_STYLE]

    def eval_prompts(self) -> list[str]:
        """The held-out prompts, `<topic> again`: one per topic."""
        return [f"{t} {HELD_OUT_STYLE}" for t in self.topics]

    def topic_of(self, prompt: str) -> str:
        """The prompt's topic (its first word); ValueError for a prompt of another world."""
        head = prompt.split()[0] if prompt.split() else ""
        if head not in TOPICS:
            raise ValueError(f"not a prompt of this world: {prompt!r}")
        return head

    # ------------------------------------------------------------------ gold reward
    def gold_reward(self, prompt: str, response: str | list[str]) -> float:
        """r(x, y) = Σ_{t ∈ T_x, c_t ≥ 1} (1 − rep_penalty·(c_t − 1)) − len_penalty·max(0, L − len_free).

        c_t = number of occurrences of target word t in y, L = number of words. Equivalently:
        (#distinct targets present) − rep_penalty·(#extra copies of target words) − length excess cost.
        `response` is the response text (split on whitespace) or its list of words (tokens); every element
        counts as a word, so strip the end-of-sequence token first.
        """
        p = self.params
        words = response.split() if isinstance(response, str) else list(response)
        reward = 0.0
        for target in TOPICS[self.topic_of(prompt)]:
            c = words.count(target)
            if c:
                reward += 1.0 - p.rep_penalty * (c - 1)
        if self.junk:
            reward -= p.junk_penalty * sum(w in self.junk for w in words)
        return float(reward - p.len_penalty * max(0, len(words) - p.len_free))

    # ------------------------------------------------------------------ base distribution
    def sample(self, prompt: str, n: int, rng: np.random.Generator) -> list[list[str]]:
        """n responses (lists of words) from the base distribution for `prompt`."""
        p = self.params
        k = self.topics.index(self.topic_of(prompt))
        # L = min_len − 1 + Geometric(stops after each word with prob p_stop), truncated at max_len
        lengths = np.minimum(rng.geometric(p.p_stop, size=n) + (p.min_len - 1), p.max_len)
        idx = rng.choice(len(self.words), size=(n, p.max_len), p=self.q[k])
        return [[self.words[i] for i in row[:length]] for row, length in zip(idx, lengths)]

    def base_logp(self, prompt: str, response: str | list[str]) -> float:
        """Exact log p_base(y | x) (the stop event included); -inf for responses the base cannot emit."""
        p = self.params
        words = response.split() if isinstance(response, str) else list(response)
        length = len(words)
        if length < p.min_len or length > p.max_len or any(w not in self.word_index for w in words):
            return -math.inf
        k = self.topics.index(self.topic_of(prompt))
        lp = float(sum(math.log(self.q[k, self.word_index[w]]) for w in words))
        lp += (length - p.min_len) * math.log(1 - p.p_stop)
        if length < p.max_len:
            lp += math.log(p.p_stop)
        return lp

    def base_gold_mean(self, prompt: str | None = None, *, n: int = 20000, seed: int = 0) -> float:
        """Monte-Carlo mean of the gold reward under the base distribution (all prompts if None)."""
        rng = np.random.default_rng(seed)
        prompts = [prompt] if prompt else self.eval_prompts()
        vals = [self.gold_reward(pr, y) for pr in prompts for y in self.sample(pr, n // len(prompts), rng)]
        return float(np.mean(vals))

    def describe(self) -> str:
        """Markdown description of the world (for the report)."""
        p = self.params
        k = len(next(iter(TOPICS.values())))
        topics = "; ".join(f"{t} → {', '.join(TOPICS[t])}" for t in self.topics)
        n_other = len(self.words) - k - len(self.junk)
        junk = (f"; one of the {len(self.junk)} junk words ({', '.join(self.junk)}) with total probability {p.p_junk}"
                if self.junk else "")
        junk_cost = f" − {p.junk_penalty}·(junk words)" if self.junk else ""
        lines = [
            f"- Kind: `{p.kind}`.",
            f"- Prompts: `<topic> <style>`, {len(self.topics)} topics × {len(self.styles)} style words "
            f"(the style word changes nothing); training prompts use {len(self.styles) - 1} styles, evaluation the "
            f"held-out combinations `<topic> {HELD_OUT_STYLE}`.",
            f"- Topics and their {k} target words: {topics}.",
            f"- Base distribution (what the reference imitates): {_length_text(p)}; each word i.i.d.: one of the "
            f"prompt's {k} targets with total probability {p.p_target}{junk}, otherwise uniform over the other "
            f"{n_other} topic words.",
            f"- Gold reward (exact): r = Σ over the prompt's targets present of (1 − {p.rep_penalty}·(copies − 1)) − "
            f"{p.len_penalty}·max(0, length − {p.len_free}){junk_cost}; i.e. each target word counts once, every extra "
            f"copy costs {p.rep_penalty}, every word beyond {p.len_free} costs {p.len_penalty}"
            + (f", every junk word costs {p.junk_penalty}" if self.junk else "")
            + f"; maximum {k} (all targets once). Other words (other topics' words, prompt words, special tokens) "
            f"earn nothing.",
        ]
        mu = self.behavior_world()
        if mu is not None:
            lines.append(f"- Behaviour policy μ (generates the preference data; not the reference): a second tiny "
                         f"Llama fitted to the same base with p_target {mu.params.p_target} and p_stop "
                         f"{mu.params.p_stop}; the pairs carry μ's log-probs as `behavior_*_logps`.")
        return "\n".join(lines)

    def why(self) -> str:
        """The report's paragraph "why over-optimization happens here" for this world's kind."""
        return WHY_OVEROPTIMIZES[self.params.kind]


def _length_text(p: LabWorldConfig) -> str:
    if p.min_len == p.max_len:
        return f"exactly {p.max_len} words"
    mean_len = p.min_len + sum((1 - p.p_stop) ** i for i in range(1, p.max_len - p.min_len + 1))
    least = "at least one word" if p.min_len == 1 else f"at least {p.min_len} words"
    return (f"{least}, stop after each word with probability {p.p_stop} (mean length {mean_len:.2f}), at most "
            f"{p.max_len} words")


def _check_kind(p: LabWorldConfig) -> None:
    """ValueError when a kind lacks what defines it (junk words, a behaviour policy that differs)."""
    if p.kind == "junk" and not (p.junk_words and p.p_junk > 0 and p.junk_penalty > 0):
        raise ValueError("world kind 'junk' needs junk_words >= 1, p_junk > 0 and junk_penalty > 0")
    if p.junk_words > len(JUNK):
        raise ValueError(f"junk_words must be <= {len(JUNK)}, got {p.junk_words}")
    if p.kind == "behavior" and not (p.behavior_p_target or p.behavior_p_stop):
        raise ValueError("world kind 'behavior' needs behavior_p_target or behavior_p_stop (> 0, μ's base)")
    if p.p_target + (p.p_junk if p.junk_words else 0.0) >= 1:
        raise ValueError("p_target + p_junk must be < 1")


WHY_OVEROPTIMIZES = {
    "topics": """**Why over-optimization happens here.** Near the data (reference samples: about 3 words, rarely a
repeated target, never beyond 12 words) the gold reward grows with the number of target words, and longer
responses hold more of them, so the Bradley–Terry labels reward target words and length almost linearly. The
penalties act on features the data hardly cover (repeated targets, more than 12 words), and nothing in the data
constrains tokens that never occur in a response at all (the prompt's own words, the special tokens). A DAA
fits its implicit reward β·log π/π_ref by pushing the likelihood of the data's responses around — and with a
small β and many passes over few pairs it keeps going long after the pairs are separated: both the chosen and
the rejected responses lose likelihood, and the freed mass lands on responses outside the data's support
(longer, repeating targets, then tokens no response ever contained). The gold reward first rises (more target
words), then falls (repetition, length, off-support words) while the KL to the reference keeps growing. The
table "What the policy looks like" below shows the measured mix.""",
    "junk": """**Why over-optimization happens here.** Every reference response has exactly the same number of
words, so a longer response is impossible and length cannot be bought. The gold reward counts distinct target
words (repeats are worth nothing, but cost nothing) and punishes junk words (fillers the reference rarely emits),
so the labels reward distinct targets and punish junk. What the data never show is a response that ends early
(the reference never stops before the fixed length) or one that piles up copies of one target. A DAA with a
small β keeps lowering the likelihood of the chosen and the rejected responses after the pairs are separated,
and the freed mass goes where the data do not pin it down: an early end-of-sequence and repeated targets (and,
if a method lets them, junk words). The gold first rises (more distinct targets), then falls as responses
shorten and repeat, with the KL still growing. The exploit is a token the data never show at that place (an
early EOS), not a longer response; the mechanism table shows the measured lengths and repeats.""",
    "behavior": """**Why over-optimization happens here.** The gold reward is the topics world's, but the preference
data were not sampled from the reference: a behaviour policy μ (imitating a base with fewer target words and
longer responses) generated them, and their labels are noisier (a higher Bradley–Terry temperature). The data
therefore sit partly where the reference rarely goes (long responses near the length penalty), and each label
carries less signal. A DAA still fits β·log π/π_ref on these pairs; with a small β and many passes it drifts
as in the topics world — likelihood of both responses falls and mass moves off the data — and the noisy labels
give it less to stop on. For the IS weights this is the case the paper's behaviour columns exist for: the weight
is π_θ/μ, not π_θ/π_ref, so it is not 1 at step 0 (the reference already differs from μ).""",
}


def lab_scorer(world: World, tokenizer=None):
    """A gold scorer (`isdaa.generation.scorers` signature) for `world`: with a tokenizer and completion ids, every generated
    token but the final EOS is a word (special tokens included); otherwise the completion text is split."""

    def scorer(prompts, completions, *, prompt_ids=None, completion_ids=None) -> list[float]:
        if completion_ids is not None and tokenizer is not None:
            out = []
            for prompt, ids in zip(prompts, completion_ids):
                ids = list(ids)
                if ids and ids[-1] == tokenizer.eos_token_id:
                    ids = ids[:-1]
                out.append(world.gold_reward(prompt, tokenizer.convert_ids_to_tokens(ids)))
            return out
        return [world.gold_reward(p, c) for p, c in zip(prompts, completions)]

    return scorer


def default_scorer(prompts, completions) -> list[float]:
    """The default world's gold reward on texts: `isdaa eval --scorer isdaa.lab.world:default_scorer`."""
    return lab_scorer(World())(prompts, completions)
