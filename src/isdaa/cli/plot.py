"""`isdaa plot RUN_DIR [RUN_DIR ...] [--out DIR]`: figures and summary.md of training runs (`isdaa.eval.run_plots`)."""

from __future__ import annotations

from isdaa.cli.argv import wants_help
from isdaa.errors import InputError
from isdaa.eval.run_plots import plot_runs

PLOT_HELP = """usage: isdaa plot RUN_DIR [RUN_DIR ...] [--out DIR]

Figures of training runs from their metrics.jsonl (loss and accuracy, importance weights, on-data KL and,
for monitored runs, sampled KL, gold and gold vs sqrt(KL)), and a summary.md with the final numbers.
One run: RUN_DIR/plots/ and RUN_DIR/summary.md. Several: one figure per quantity with a curve per run
(labelled by directory name) and summary.md, in --out (default: plots/ in the runs' common parent directory)."""


def _split(args: list[str]) -> tuple[list[str], str | None]:
    """(run directories, --out DIR or None)."""
    runs, out, i = [], None, 0
    while i < len(args):
        if args[i] == "--out" or args[i].startswith("--out="):
            if "=" in args[i]:
                out, i = args[i].split("=", 1)[1], i + 1
                continue
            if i + 1 >= len(args):
                raise InputError("option --out: expected a directory")
            out, i = args[i + 1], i + 2
        elif args[i].startswith("--"):
            raise InputError(f"isdaa plot: unknown option {args[i]!r}; expected run directories and --out DIR")
        else:
            runs.append(args[i])
            i += 1
    return runs, out


def plot_command(args: list[str]) -> int:
    """`isdaa plot RUN_DIR [RUN_DIR ...] [--out DIR]`."""
    if wants_help(args):
        print(PLOT_HELP)
        return 0
    runs, out = _split(args)
    *figures, summary = plot_runs(runs, out)
    where = f" in {figures[0].parent}" if figures else ""
    print(f"isdaa: {len(figures)} figures{where}; summary in {summary}")
    return 0
