import numpy as np
import pytest

from isdaa.errors import InputError
from isdaa.eval import ci_bounds, fit_bon, fit_rl, gao_bon, gao_rl, plot_frontier, plot_over_steps


def test_fit_rl_recovers_parameters():
    d = np.linspace(0.0, 6.0, 25)  # includes d = 0 (ignored) and d = 1 (d log d = 0)
    r = gao_rl(d, 1.3, 0.45, r0=0.7)
    fit = fit_rl(d, r, r0=0.7)
    assert fit["alpha"] == pytest.approx(1.3, abs=1e-9)
    assert fit["beta"] == pytest.approx(0.45, abs=1e-9)
    assert fit["rmse"] < 1e-9 and fit["n"] == 24


def test_fit_bon_recovers_parameters():
    d = np.array([0.2, 0.5, 1.0, 2.0, 3.5])
    r = -2.0 + d * (0.9 - 0.12 * d)
    fit = fit_bon(d.tolist(), r.tolist(), r0=-2.0)
    assert (fit["alpha"], fit["beta"]) == pytest.approx((0.9, 0.12), abs=1e-9)
    np.testing.assert_allclose(gao_bon(d, fit["alpha"], fit["beta"], -2.0), r)
    # the wrong offset gives a worse fit
    assert fit_bon(d, r, r0=0.0)["rmse"] > 1e-3


def test_fit_errors():
    with pytest.raises(InputError):
        fit_rl([0.0, 1.0], [0.0, 1.0])  # one point with d > 0
    with pytest.raises(InputError):
        fit_bon([1.0, -2.0], [0.0, 1.0])
    with pytest.raises(InputError):
        fit_rl([1.0, 2.0], [0.0])


def test_plots_write_files(tmp_path):
    d = [0.0, 0.5, 1.0, 2.0, 3.0]
    g = gao_rl(np.array(d), 1.0, 0.5, 1.0).tolist()
    lo, hi = ci_bounds(g, [0.1] * 5)
    out = plot_frontier({"dpo": (d, g, lo, hi), "ipo": (d, g, None, None)}, tmp_path / "sub" / "f.png", "frontier", ref_gold=1.0, fit="rl")
    assert out.is_file() and out.stat().st_size > 1000
    out2 = plot_over_steps({"ess": ([0, 10, 20], [1.0, 0.5, 0.1])}, tmp_path / "s.png", "ESS", logy=True)
    assert out2.is_file() and out2.stat().st_size > 1000
    with pytest.raises(ValueError):
        plot_frontier({"x": (d, g[:2])}, tmp_path / "bad.png")
    with pytest.raises(ValueError):
        plot_frontier({"x": (d, g)}, tmp_path / "bad.png", fit="cubic")
