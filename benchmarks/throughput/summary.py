"""The benchmark's measurements outside the trainers (GEMM peak, IS objective cost) and its summary: medians and
paired ratios over repetitions."""

from __future__ import annotations

import statistics
import time

from throughput.setup import BATCH, BETA, VARIANTS


def gemm_peak(threads: int, n: int = 2048, reps: int = 10) -> tuple[float, float]:
    """(FLOP per wall second, FLOP per CPU second) of an n x n x n fp32 `torch.mm` on `threads` threads (the
    best of `reps` after a warm-up): the machine's practical matmul ceiling."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        torch.mm(a, b)
    best = best_cpu = float("inf")
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    return 2 * n**3 / best, 2 * n**3 / best_cpu


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def is_objective_overhead(batch: int = BATCH, reps: int = 300) -> dict:
    """Seconds per call of `daa_objective` (+ its backward) with IS weights vs without, on (B,) log-probs."""
    import torch

    from isdaa.objectives import daa_objective

    g = torch.Generator().manual_seed(0)
    base = [-100 + torch.randn(batch, generator=g) for _ in range(4)]

    def one(weighting):
        pc, pr = (b.clone().requires_grad_(True) for b in base[:2])
        out = daa_objective(loss="sigmoid", beta=BETA, policy_chosen_logps=pc, policy_rejected_logps=pr,
                            ref_chosen_logps=base[2], ref_rejected_logps=base[3], weighting=weighting,
                            chosen_lengths=torch.full((batch,), 48.0), rejected_lengths=torch.full((batch,), 48.0))
        out.loss.backward()

    times = {}
    for weighting in ("none", "is", "none", "is"):  # second round measured
        t = time.perf_counter()
        for _ in range(reps):
            one(weighting)
        times[weighting] = (time.perf_counter() - t) / reps
    return {"objective_none_s": times["none"], "objective_is_s": times["is"]}


def _median_key(rs: list[dict], key: str):
    vals = [r.get(key) for r in rs]
    return median(vals) if any(v is not None for v in vals) else None


def summarize(runs: list[dict], model: str, shape: str, overhead: dict, gemm: dict | None = None) -> dict:
    by = lambda v: [r for r in runs if r["variant"] == v]  # noqa: E731
    reps = sorted({r["rep"] for r in runs})

    def paired(num, den, key, invert=False):
        vals = []
        for rep in reps:
            a = [r for r in runs if r["rep"] == rep and r["variant"] == num]
            b = [r for r in runs if r["rep"] == rep and r["variant"] == den]
            if a and b:
                vals.append(b[0][key] / a[0][key] if invert else a[0][key] / b[0][key])
        return median(vals), vals

    flops_per_pair = _median_key([r for r in runs if r["variant"].startswith("isdaa")], "flops_per_pair")
    gemm = gemm or {}
    s = {"model": model, "shape": shape, "reps": len(reps), "variants": {}, "gemm_flops": gemm.get("gemm_flops"),
         "flops_per_pair": flops_per_pair}
    for v in VARIANTS:
        rs = by(v)
        if rs:
            m = {k: _median_key(rs, k) for k in ("pairs_per_s", "step_s", "setup_s", "peak_rss_mb", "tokens_per_pair",
                                                 "first_loss", "padding_fraction", "cpu_step_s", "pairs_per_cpu_s")}
            m["warmup_s"] = median([sum(r["step_times"][: r["steps"] - r["timed_steps"]]) for r in rs
                                    if r.get("step_times")]) if rs[0].get("step_times") else None
            if gemm and flops_per_pair:  # wall: pairs/s vs the mm's FLOP/s; cpu: the same per CPU-second
                m["gemm_fraction"] = flops_per_pair * m["pairs_per_s"] / gemm["gemm_flops"]
                m["gemm_fraction_cpu"] = flops_per_pair * m["pairs_per_cpu_s"] / gemm["gemm_flops_per_cpu_s"]
            s["variants"][v] = m
    s["ratios"] = {}
    present = [v for v in VARIANTS if by(v)]
    for trl in ("trl-pre", "trl-live", "trl-pre-ckpt"):
        for v in (x for x in present if x.startswith("isdaa") and x != "isdaa-is"):
            if by(trl):
                s["ratios"][f"pairs_per_s {v}/{trl}"] = paired(v, trl, "pairs_per_s")
                s["ratios"][f"pairs_per_cpu_s {v}/{trl}"] = paired(v, trl, "pairs_per_cpu_s")
                s["ratios"][f"peak_rss {v}/{trl}"] = paired(v, trl, "peak_rss_mb")
    for v in ("isdaa-is", "isdaa-ckpt", "isdaa-compile", "isdaa-group"):
        if by(v) and by("isdaa"):
            s["ratios"][f"step_time {v}/isdaa"] = paired(v, "isdaa", "step_s")
            s["ratios"][f"cpu_step_time {v}/isdaa"] = paired(v, "isdaa", "cpu_step_s")
    step = s["variants"].get("isdaa", {}).get("step_s")
    if step:
        s["is_objective_overhead"] = (overhead["objective_is_s"] - overhead["objective_none_s"]) / step
    return s


def print_summary(s: dict) -> None:
    print(f"\n== {s['model']} / {s['shape']}: medians over {s['reps']} repetition(s)")
    if s.get("flops_per_pair"):
        print(f"useful training FLOPs per pair (prompt once, no padding): {s['flops_per_pair'] / 1e9:.1f} GFLOP; "
              f"GEMM peak (2048^3 fp32 torch.mm): {(s['gemm_flops'] or float('nan')) / 1e9:.1f} GFLOP/s")
    print(f"{'variant':13s} {'pairs/s':>9s} {'step s':>8s} {'CPU s/step':>10s} {'warm-up s':>9s} {'setup s':>8s} {'peak RSS MB':>12s}"
          f" {'tok/pair':>9s} {'pad frac':>8s} {'GEMM frac':>9s} {'(CPU)':>6s} {'loss@1':>8s}")
    nan = float("nan")
    for v, m in s["variants"].items():
        def f(key):
            return nan if m.get(key) is None else m[key]

        print(f"{v:13s} {m['pairs_per_s']:9.3f} {m['step_s']:8.2f} {f('cpu_step_s'):10.2f} {f('warmup_s'):9.1f} {m['setup_s']:8.1f}"
              f" {m['peak_rss_mb']:12.0f} {m['tokens_per_pair']:9.1f} {f('padding_fraction'):8.3f}"
              f" {f('gemm_fraction'):9.3f} {f('gemm_fraction_cpu'):6.3f} {f('first_loss'):8.4f}")
    for name, (med, vals) in s["ratios"].items():
        print(f"ratio {name:38s} median {med:6.3f}   per repetition: {', '.join(f'{x:.3f}' for x in vals)}")
    if "is_objective_overhead" in s:
        print(f"IS objective (weights + stats) cost per step, isolated: {100 * s['is_objective_overhead']:.3f}% "
              f"of an isdaa step")
