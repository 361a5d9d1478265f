"""The lab world: the gold reward equals its definition, the base distribution is what it says, and
Bradley–Terry labels carry exactly the configured noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from isdaa.config import LabWorldConfig
from isdaa.generation.pairs import bt_probability
from isdaa.lab.preference_data import bt_labels
from isdaa.lab.world import TOPICS, World, lab_scorer


def gold_by_definition(targets, words, rep=0.5, lp=0.5, free=12):
    """r = Σ_{t present} (1 − rep·(count_t − 1)) − lp·max(0, L − free), written out independently."""
    r = 0.0
    for t in targets:
        c = sum(1 for w in words if w == t)
        if c >= 1:
            r += 1 - rep * (c - 1)
    return r - lp * max(0, len(words) - free)


SEA = TOPICS["sea"]  # wave ship fish shell sand tide


@pytest.mark.parametrize(
    "response, expected",
    [
        ("", 0.0),
        ("cow", 0.0),  # another topic's word: neutral
        ("wave", 1.0),
        ("wave ship fish", 3.0),
        ("wave ship fish shell sand tide", 6.0),  # the maximum
        ("wave wave", 0.5),  # a target counts once, each extra copy costs 0.5
        ("wave wave wave", 0.0),
        ("wave wave wave wave wave", -1.0),
        ("cow " * 12, 0.0),  # 12 words: no length cost yet
        ("cow " * 13, -0.5),  # 13 words: one word over len_free
        ("wave " + "cow " * 15, 1.0 - 0.5 * 4),  # 16 words
        ("sea today <unk> system", 0.0),  # prompt words and special tokens are words that earn nothing
    ],
)
def test_gold_reward_hand_built(response, expected):
    world = World()
    assert world.gold_reward("sea today", response) == pytest.approx(expected)
    assert world.gold_reward("sea again", response.split()) == pytest.approx(expected)
    assert expected == pytest.approx(gold_by_definition(SEA, response.split()))


def test_gold_reward_random_responses_match_definition():
    params = LabWorldConfig(rep_penalty=0.3, len_penalty=0.2, len_free=5)
    world = World(params)
    rng = np.random.default_rng(0)
    vocab = world.vocabulary()
    for _ in range(300):
        prompt = world.prompts()[rng.integers(len(world.prompts()))]
        words = [vocab[i] for i in rng.integers(0, len(vocab), size=rng.integers(0, 20))]
        targets = TOPICS[prompt.split()[0]]
        assert world.gold_reward(prompt, words) == pytest.approx(gold_by_definition(targets, words, 0.3, 0.2, 5))


def test_lab_scorer_strips_eos_and_reads_ids():
    from isdaa.modeling.tiny import word_tokenizer

    world = World()
    tok = word_tokenizer(world.vocabulary())
    ids = tok.convert_tokens_to_ids(["wave", "wave", "ship"]) + [tok.eos_token_id]
    scorer = lab_scorer(world, tok)
    assert scorer(["sea now"], ["ignored"], completion_ids=[ids]) == [pytest.approx(1.5 + 1.0 - 1.0)]  # 2 hits, 1 extra
    assert scorer(["sea now"], ["wave ship"]) == [2.0]


def test_prompts_split_and_topics():
    world = World()
    train, held = set(world.train_prompts()), set(world.eval_prompts())
    assert train.isdisjoint(held) and train | held == set(world.prompts())
    assert {p.split()[0] for p in held} == set(TOPICS)
    with pytest.raises(ValueError):
        world.gold_reward("nonsense", "wave")


def test_base_distribution_matches_its_definition():
    p = LabWorldConfig()
    world = World(p)
    rng = np.random.default_rng(1)
    ys = world.sample("forest now", 20000, rng)
    lengths = np.array([len(y) for y in ys])
    expected_len = sum((1 - p.p_stop) ** k for k in range(p.max_len))
    assert lengths.min() >= 1 and lengths.max() <= p.max_len
    assert lengths.mean() == pytest.approx(expected_len, abs=4 * lengths.std() / math.sqrt(len(ys)))
    words = [w for y in ys for w in y]
    share = np.mean([w in TOPICS["forest"] for w in words])
    assert share == pytest.approx(p.p_target, abs=0.01)
    # exact log-probs: P(L = 1) = Σ over one-word responses = p_stop
    total = sum(math.exp(world.base_logp("forest now", [w])) for w in world.words)
    assert total == pytest.approx(p.p_stop)
    # at max_len the stop is certain: no stop factor
    y = ["cow"] * p.max_len
    assert world.base_logp("forest now", y) == pytest.approx(
        p.max_len * math.log(world.q[1, world.word_index["cow"]]) + (p.max_len - 1) * math.log(1 - p.p_stop))
    assert world.base_logp("forest now", ["system"]) == -math.inf


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_bradley_terry_labels_have_the_configured_noise(temperature):
    rng = np.random.default_rng(2)
    n = 20000
    for diff in (0.0, 0.5, 1.0, 2.0, -1.5):
        r_a = np.full(n, 1.0 + diff)
        r_b = np.full(n, 1.0)
        wins = bt_labels(r_a, r_b, temperature, rng)
        expected = 1 / (1 + math.exp(-diff / temperature))
        assert bt_probability(1.0 + diff, 1.0, temperature) == pytest.approx(expected)
        se = math.sqrt(expected * (1 - expected) / n)
        assert wins.mean() == pytest.approx(expected, abs=4 * se + 1e-9)
    with pytest.raises(ValueError):
        bt_probability(1.0, 0.0, 0.0)


JUNK = dict(kind="junk", min_len=6, max_len=6, rep_penalty=0.0, junk_words=6, p_junk=0.01, junk_penalty=2.0)


def test_junk_world_base_and_gold_follow_their_definitions():
    world = World(LabWorldConfig(**JUNK))
    assert world.junk == ["um", "uh", "like", "basically", "literally", "whatever"]
    assert world.vocabulary()[-6:] == world.junk  # the topics world's ids are unchanged (junk comes last)
    assert World().vocabulary() == world.vocabulary()[:-6]
    np.testing.assert_allclose(world.q.sum(1), 1.0)
    k = world.topics.index("sea")
    assert world.q[k, world.word_index["um"]] == pytest.approx(0.01 / 6)
    ys = world.sample("sea today", 5000, np.random.default_rng(3))
    assert {len(y) for y in ys} == {6}  # a fixed length
    share_junk = np.mean([w in world.junk for y in ys for w in y])
    assert share_junk == pytest.approx(0.01, abs=4 * math.sqrt(0.01 * 0.99 / 30000))
    # exact log-probs: a fixed length has no stop factor; any other length is impossible
    y = ["wave", "um", "cow", "cow", "tide", "wave"]
    expected = sum(math.log(world.q[k, world.word_index[w]]) for w in y)
    assert world.base_logp("sea today", y) == pytest.approx(expected)
    assert world.base_logp("sea today", y[:5]) == -math.inf
    # gold: distinct targets (repeats free with rep_penalty 0) minus 2 per junk word
    assert world.gold_reward("sea today", y) == pytest.approx(2.0 - 2.0)
    assert world.gold_reward("sea today", "wave wave wave ship um uh") == pytest.approx(2.0 - 4.0)


def test_world_kinds_need_what_defines_them():
    with pytest.raises(ValueError, match="junk"):
        World(LabWorldConfig(kind="junk"))
    with pytest.raises(ValueError, match="behavior"):
        World(LabWorldConfig(kind="behavior"))
    with pytest.raises(ValueError, match="min_len"):
        World(LabWorldConfig(min_len=7, max_len=6))


def test_behavior_world_has_its_own_base_and_the_same_gold():
    world = World(LabWorldConfig(kind="behavior", behavior_p_target=0.2, behavior_p_stop=0.2))
    mu = world.behavior_world()
    assert World().behavior_world() is None
    assert (mu.params.p_target, mu.params.p_stop) == (0.2, 0.2) and mu.vocabulary() == world.vocabulary()
    y = "wave ship wave cow"
    assert mu.gold_reward("sea now", y) == world.gold_reward("sea now", y) == World().gold_reward("sea now", y)
    assert mu.base_logp("sea now", y) != world.base_logp("sea now", y)
    assert "Behaviour policy" in world.describe() and "behaviour policy" in world.why()


def test_min_len_shifts_the_geometric_length():
    p = LabWorldConfig(min_len=3, max_len=16)
    world = World(p)
    lengths = np.array([len(y) for y in world.sample("farm now", 20000, np.random.default_rng(4))])
    expected = 3 + sum((1 - p.p_stop) ** i for i in range(1, 14))
    assert lengths.min() == 3
    assert lengths.mean() == pytest.approx(expected, abs=4 * lengths.std() / math.sqrt(len(lengths)))
    # P(L = 3) = p_stop: the probabilities of all 3-word responses sum to it
    total = sum(math.exp(world.base_logp("farm now", ["cow", "hay", w])) for w in world.words)
    one = math.exp(world.base_logp("farm now", ["cow", "hay", "hay"])) / world.q[7, world.word_index["hay"]]
    assert total == pytest.approx(one)  # sums over the last word: q sums to 1
    assert math.exp(world.base_logp("farm now", ["cow", "hay", "tree"])) == pytest.approx(
        world.q[7, world.word_index["cow"]] * world.q[7, world.word_index["hay"]] * world.q[7, world.word_index["tree"]]
        * p.p_stop)
