"""`RECOMMENDED`: the objective the lab recommends, as `objective:` config keys (issue 11).

How it is chosen: the pre-registered rule of docs/results/RULE.md, applied unchanged to the cross-world study
(3 worlds × β ∈ {0.01, 0.05} × 5 seeds; `isdaa lab compare`, docs/results/worlds/summary.md) among the importance
weightings (the paper's, the two-sided clip, and ours: ESS tempering, tempering + mean normalisation,
curvature-only). It is the best of the weightings by that rule, not a claim that it beats every loss: the summary
and the README say how it compares with DPO, IPO and χPO, by the frontier and by the final policy.

Current value: the study is not complete yet (docs/results/worlds/summary.md says how many runs are missing), so
this is still the earlier, single-world recommendation (the two-sided clip with IPO at the paper's ε = 1, chosen
by the rule of src/isdaa/lab/demo.yaml's history); it is replaced by the cross-world rule's pick once every run of
the design is done.

Use: these keys under `objective:` of a train config, or in Python
`TrainConfig(objective=ObjectiveConfig(beta=..., **RECOMMENDED))`; a lab method `{recommended: true}` runs it
(`isdaa demo` does).
"""

RECOMMENDED: dict = {
    "loss": "ipo",
    "weighting": "is_two_sided",
    "is_eps": 1.0,
    "is_ess_target": 0.5,
    "hparams": {},
}
