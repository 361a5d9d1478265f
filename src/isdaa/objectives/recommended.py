"""`RECOMMENDED`: the objective the lab recommends, as `objective:` config keys (issue 11).

How it is chosen: the pre-registered rule of docs/results/RULE.md, applied unchanged to the cross-world study
(3 worlds × β ∈ {0.01, 0.05} × 5 seeds = 6 cells; `isdaa lab compare`, docs/results/worlds/summary.md) among the
importance weightings (the paper's, the two-sided clip, and ours: ESS tempering, tempering + mean normalisation,
curvature-only). The rule first disqualifies every candidate with a collapsed seed in any cell; only one of the
ten had none — the two-sided clip with the DPO loss at the paper's ε = 1 (log weight clamped to [−2ε, 2ε]) — so
it is the pick, whatever its other numbers.

What it is, and what it is not: the most *robust* importance weighting we measured (0 collapses in 30 runs), not
the best-scoring one and not a claim that it beats every loss. At equal KL its gold is below plain DPO's in all 6
cells (frontier 1.29–1.95 vs 1.34–2.11); by the final policy it beats DPO where DPO collapses (behavior, topics)
and loses where DPO does not (junk); χPO, which is not an IS method, beats it in every cell on both counts.
docs/results/worlds/summary.md and the README give the numbers.

Use: these keys under `objective:` of a train config, or in Python
`TrainConfig(objective=ObjectiveConfig(beta=..., **RECOMMENDED))`; a lab method `{recommended: true}` runs it
(`isdaa demo` does).
"""

RECOMMENDED: dict = {
    "loss": "sigmoid",
    "weighting": "is_two_sided",
    "is_eps": 1.0,
    "hparams": {},
}
