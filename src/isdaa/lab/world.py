"""The lab's controlled world: topics, a known base distribution over responses, an exact gold reward.

Prompts. A prompt is two words, ``"<topic> <style>"``, e.g. ``"sea today"``: 8 topics × 4 style words =
32 prompts. The style word changes nothing (neither the base distribution nor the reward); it only makes
a real held-out split possible: each topic has one (topic, style) combination that never appears in the
preference data and is used for evaluation (`eval_prompts`).

Base distribution (what the reference is fine-tuned to imitate). For topic k with target words
T_k = {t_1, t_2, t_3} (e.g. sea → wave, ship, fish) over a response vocabulary of the 24 target words of
all topics:
    - every response has at least one word; after each word it stops with probability ``p_stop``
      (a geometric length, mean ≈ 1/p_stop), and it always stops at ``max_len`` words;
    - each word is drawn i.i.d.: one of the prompt's own targets with total probability ``p_target``
      (split evenly), otherwise uniformly one of the 21 other topics' words.
So log p_base(y|x) = Σ_i log q_k(y_i) + (L−1)·log(1 − p_stop) + [L < max_len]·log p_stop is exact.

Gold reward (closed form), for the response's words y = (y_1 … y_L):
    r(x, y) = |T_x ∩ set(y)|                      each target word counts ONCE
              − rep_penalty · (L − |set(y)|)      every repeated word costs
              − len_penalty · max(0, L − len_free) excessive length costs
Range: at most 3 (the three targets, each once, nothing else); unbounded below.

Why plain DPO over-optimizes here. Near the data (reference samples: ~5 words, few repeats) the gold
reward is, to first order, *linear* in "how many target words": chosen responses contain more target
words, and longer responses contain more of them, so Bradley–Terry labels reward target words and
(weakly) length. The penalties act through features the data barely covers: a reference sample seldom
repeats a target word and seldom exceeds ``len_free`` words, so the preference data carry almost no
signal about them. DPO's implicit reward β·log π/π_ref is fitted by making individual target tokens more
likely and the end-of-sequence token less likely; with small β and many passes over few pairs it keeps
extrapolating that direction past the data's support, where the policy emits long runs of repeated target
words — responses the reference never produced and the gold reward penalizes. The gold reward therefore
first rises (targets appear), then falls (repetition and length), while KL to the reference keeps growing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
# The (topic, style) combination of each topic kept out of the training pairs, for evaluation.
HELD_OUT_STYLE = "again"


@dataclass(frozen=True)
class WorldParams:
    """The world's numbers (mirrors `isdaa.config.WorldConfig`)."""

    p_target: float = 0.3
    p_stop: float = 0.3
    max_len: int = 16
    rep_penalty: float = 0.5
    len_penalty: float = 0.5
    len_free: int = 8


class World:
    """Topics, the base distribution and the gold reward. Deterministic: no hidden randomness."""

    def __init__(self, params: WorldParams | None = None, **kwargs):
        p = params or WorldParams(**kwargs)
        if not 0 < p.p_target < 1:
            raise ValueError(f"p_target must be in (0, 1), got {p.p_target}")
        if not 0 < p.p_stop < 1:
            raise ValueError(f"p_stop must be in (0, 1), got {p.p_stop}")
        if p.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {p.max_len}")
        self.params = p
        self.topics = list(TOPICS)
        self.styles = list(STYLES)
        self.words = [w for t in self.topics for w in TOPICS[t]]  # the response vocabulary
        self.word_index = {w: i for i, w in enumerate(self.words)}
        n = len(self.words)
        # q[k, j]: base probability of word j for topic k
        self.q = np.zeros((len(self.topics), n))
        for k, topic in enumerate(self.topics):
            own = [self.word_index[w] for w in TOPICS[topic]]
            self.q[k, :] = (1 - p.p_target) / (n - len(own))
            self.q[k, own] = p.p_target / len(own)

    # ------------------------------------------------------------------ vocabulary and prompts
    def vocabulary(self) -> list[str]:
        """Every word a prompt or response can contain (for `isdaa.tiny.word_tokenizer`)."""
        return self.topics + self.styles + self.words

    def prompts(self) -> list[str]:
        return [f"{t} {s}" for t in self.topics for s in self.styles]

    def train_prompts(self) -> list[str]:
        return [f"{t} {s}" for t in self.topics for s in self.styles if s != HELD_OUT_STYLE]

    def eval_prompts(self) -> list[str]:
        return [f"{t} {HELD_OUT_STYLE}" for t in self.topics]

    def topic_of(self, prompt: str) -> str:
        head = prompt.split()[0] if prompt.split() else ""
        if head not in TOPICS:
            raise ValueError(f"not a prompt of this world: {prompt!r}")
        return head

    # ------------------------------------------------------------------ gold reward
    def gold_reward(self, prompt: str, response: str | list[str]) -> float:
        """r(x, y) = Σ_{t ∈ T_x, c_t ≥ 1} (1 − rep_penalty·(c_t − 1)) − len_penalty·max(0, L − len_free).

        c_t = number of occurrences of target word t in y, L = number of words. Equivalently:
        (#distinct targets present) − rep_penalty·(#extra copies of target words) − length excess cost.
        `response` is the response text (split on whitespace) or its list of words; ``<eos>`` and ``<pad>``
        are not words of the response, any other token counts as a word.
        """
        p = self.params
        words = response.split() if isinstance(response, str) else list(response)
        words = [w for w in words if w not in ("<eos>", "<pad>")]
        reward = 0.0
        for target in TOPICS[self.topic_of(prompt)]:
            c = words.count(target)
            if c:
                reward += 1.0 - p.rep_penalty * (c - 1)
        return float(reward - p.len_penalty * max(0, len(words) - p.len_free))

    # ------------------------------------------------------------------ base distribution
    def sample(self, prompt: str, n: int, rng: np.random.Generator) -> list[list[str]]:
        """n responses (lists of words) from the base distribution for `prompt`."""
        p = self.params
        k = self.topics.index(self.topic_of(prompt))
        # L = 1 + Geometric(stops after each word with prob p_stop), truncated at max_len
        lengths = np.minimum(rng.geometric(p.p_stop, size=n), p.max_len)
        idx = rng.choice(len(self.words), size=(n, p.max_len), p=self.q[k])
        return [[self.words[i] for i in row[:length]] for row, length in zip(idx, lengths)]

    def base_logp(self, prompt: str, response: str | list[str]) -> float:
        """Exact log p_base(y | x) (the stop event included); -inf for responses the base cannot emit."""
        p = self.params
        words = response.split() if isinstance(response, str) else list(response)
        length = len(words)
        if length < 1 or length > p.max_len or any(w not in self.word_index for w in words):
            return -math.inf
        k = self.topics.index(self.topic_of(prompt))
        lp = float(sum(math.log(self.q[k, self.word_index[w]]) for w in words))
        lp += (length - 1) * math.log(1 - p.p_stop)
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
        topics = "; ".join(f"{t} → {', '.join(TOPICS[t])}" for t in self.topics)
        return (
            f"- Prompts: `<topic> <style>`, {len(self.topics)} topics × {len(self.styles)} style words "
            f"(the style word changes nothing); evaluation on the held-out combinations `<topic> {HELD_OUT_STYLE}`.\n"
            f"- Topics and their target words: {topics}.\n"
            f"- Base distribution: at least one word, stop after each word with probability {p.p_stop} "
            f"(mean length ≈ {1 / p.p_stop:.1f}), at most {p.max_len} words; each word i.i.d.: one of the "
            f"prompt's 3 targets with total probability {p.p_target}, otherwise uniform over the other "
            f"{len(self.words) - 3} words.\n"
            f"- Gold reward: r = (#distinct target words present) − {p.rep_penalty}·(#repeated words) − "
            f"{p.len_penalty}·max(0, length − {p.len_free}); maximum 3."
        )
