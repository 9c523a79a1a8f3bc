"""core.compare: the flow against GD / SGD / Adam from one θ₀, and `explorer compare`.

References independent of core.compare: a hand-written NumPy gradient-descent loop and the
flow solved by scipy's DOP853 (rtol 1e-12) at exactly t = k·lr, and explicit Euler's
first-order convergence (distance ∝ lr).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import tomllib

import numpy as np
import pytest
import scipy.integrate
from conftest import TINY_CONFIG

from core.compare import Comparison, compare_methods, flow_at
from core.config import parse_config
from core.flow import DynamicsSettings
from core.problem import build_problem
from core.session import SessionError, load_session
from explorer.cli import main

T_MAX = 5.0


@pytest.fixture(scope="module")
def problem():
    return build_problem(parse_config(tomllib.loads(TINY_CONFIG), "tiny"))


def settings(lr: float) -> DynamicsSettings:
    return DynamicsSettings(t_max=T_MAX, lr=lr, n_saves=30, rtol=1e-10, atol=1e-12)


def test_gd_tracks_the_flow_linearly_in_lr_and_matches_independent_references(problem):
    obj, theta0 = problem.objective, np.asarray(problem.theta0)
    lrs = (2e-2, 1e-2, 5e-3)
    runs = {lr: compare_methods(obj, theta0, settings(lr), ("gd",)) for lr in lrs}
    max_d = [runs[lr].traces[0].max_distance for lr in lrs]
    # Euler's global error is first order: halving lr halves the distance.
    for a, b in itertools.pairwise(max_d):
        assert 1.8 < a / b < 2.2, max_d
    assert max_d[-1] < 3e-3

    # Independent references at lr = 1e-2: NumPy GD and the DOP853 flow at t = k·lr.
    lr = 1e-2
    tr = runs[lr].traces[0]
    k_saved = np.rint(tr.t / lr).astype(int)
    assert np.allclose(k_saved * lr, tr.t, rtol=0, atol=1e-12)
    theta, gd = theta0.copy(), {}
    for k in range(k_saved[-1] + 1):
        gd[k] = theta.copy()
        theta = theta - lr * np.asarray(obj.grad(theta))
    sol = scipy.integrate.solve_ivp(
        lambda t, y: -np.asarray(obj.grad(y)),
        (0.0, T_MAX),
        theta0,
        method="DOP853",
        t_eval=tr.t,
        rtol=1e-12,
        atol=1e-14,
    )
    reference = np.linalg.norm(np.stack([gd[k] for k in k_saved]) - sol.y.T, axis=1)
    np.testing.assert_allclose(tr.distance, reference, rtol=1e-4, atol=1e-8)
    loss_ref = [float(obj.value_and_grad(gd[k])[0]) for k in k_saved]
    np.testing.assert_allclose(tr.loss, loss_ref, rtol=1e-10)
    # The first save t = lr = 1e-2 is a flow save time: used as it is, not interpolated.
    assert not tr.interpolated[0] and not tr.interpolated[1] and tr.interpolated[2:].any()
    assert tr.distance[0] == 0.0


def test_adam_does_not_track_the_flow_as_lr_shrinks(problem):
    obj, theta0 = problem.objective, np.asarray(problem.theta0)
    d = [compare_methods(obj, theta0, settings(lr), ("adam", "sgd")).traces for lr in (1e-2, 5e-3)]
    adam = [tr[0].max_distance for tr in d]
    # Adam ≈ sign-gradient flow on t = k·lr: an O(1) distance that does not shrink with lr.
    assert min(adam) > 0.3 and adam[1] / adam[0] > 0.8, adam
    sgd = [tr[1].max_distance for tr in d]
    assert all(s > 0 for s in sgd) and max(sgd) < 0.1, sgd  # noisy GD: near the flow


def test_flow_at_is_exact_for_cubics_and_on_save_times():
    t = np.array([0.0, 0.5, 1.3, 2.0])
    theta = np.stack([t**3 - t, 2 * t**2], axis=1)
    velocity = np.stack([3 * t**2 - 1, 4 * t], axis=1)
    q = np.array([0.0, 0.2, 1.3, 1.7, 2.0, 2.5])
    out, flags = flow_at(q, t, theta, velocity)
    np.testing.assert_allclose(out[:5], np.stack([q[:5] ** 3 - q[:5], 2 * q[:5] ** 2], 1))
    assert flags.tolist() == [False, True, False, True, False, False]
    assert np.all(np.isnan(out[5]))  # past the flow's last save: no value, no guess


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        ((), "at least one"),
        (("gd", "newton"), "unknown method 'newton'"),
        (("gd", "gd"), "named twice"),
    ],
)
def test_bad_methods_name_the_field(problem, methods, message):
    with pytest.raises(ValueError, match=rf"compare\.methods: .*{message}"):
        compare_methods(problem.objective, problem.theta0, settings(1e-2), methods)


def test_sgd_without_a_data_set_is_refused(problem):
    obj = dataclasses.replace(problem.objective, data=None)
    with pytest.raises(ValueError, match=r"compare\.methods: sgd needs a finite data set"):
        compare_methods(obj, problem.theta0, settings(1e-2), ("sgd",))


def test_cli_compare_records_a_loadable_validated_comparison(tiny_config_path, tmp_path, capsys):
    out = tmp_path / "deep" / "cmp"  # parents are made
    code = main([
        "compare", str(tiny_config_path), "--out", str(out), "--t-max", "2",
        "--methods", "gd,adam", "--quiet",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    session = load_session(out)
    cmp = session.comparison
    assert isinstance(cmp, Comparison) and cmp.methods == ("gd", "adam")
    assert cmp.t_max == 2.0 and cmp.flow_t[-1] == pytest.approx(2.0)
    assert cmp.traces[0].max_distance < cmp.traces[1].max_distance
    err = capsys.readouterr().err
    assert "gd (lr 0.01)" in err and "interpolated" in err
    # `report` shows it too.
    assert main(["report", str(out)]) == 0
    assert "comparison" in capsys.readouterr().out
    # Refused before any work: a bad method, an existing session without --force.
    assert main(["compare", str(tiny_config_path), "--out", str(tmp_path / "x"),
                 "--methods", "gd,lbfgs"]) == 2  # fmt: skip
    assert "--methods: unknown method 'lbfgs'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["compare", str(tiny_config_path), "--out", str(out)]) == 2
    assert "already holds a session" in capsys.readouterr().err

    # A corrupted comparison is a one-line SessionError naming the array.
    arrays = dict(np.load(out / "trajectory.npz"))
    arrays["cmp1_distance"] = arrays["cmp1_distance"][:-1]
    np.savez(out / "trajectory.npz", **arrays)
    with pytest.raises(SessionError, match="comparison: array 'cmp1_distance' has"):
        load_session(out)
    meta = json.loads((out / "meta.json").read_text())
    meta["comparison"]["methods"][0]["method"] = "flow"
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SessionError, match=r"methods\[0\]\.method"):
        load_session(out)


def test_app_k_compares_methods_shows_both_plots_saves_and_replays(tmp_path):
    """The run screen's k: the comparison of core.compare from the run's θ₀ to its t, in
    plots 9 (loss) and 0 (distance), saved with s and shown again in replay."""
    import asyncio

    from core.compare import compare_methods as reference
    from core.runner import dynamics_settings
    from explorer.app import ExplorerApp
    from explorer.screens.replay import ReplayScreen

    cfg = parse_config(tomllib.loads(TINY_CONFIG.replace("t_max = 100.0", "t_max = 2.0")), "tiny")
    app = ExplorerApp(config=cfg, show_clock=False)

    from helpers import start_run, wait_for

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await start_run(pilot, "done")
            await pilot.press("k")
            await wait_for(pilot, lambda: screen.comparison is not None, "compare")
            cmp = screen.comparison
            assert cmp.methods == ("gd", "sgd", "adam") and cmp.t_max == screen.run.t
            problem = screen.problem
            settings = dataclasses.replace(
                dynamics_settings(cfg.dynamics, problem.spec.n_params), t_max=cmp.t_max
            )
            ref = reference(problem.objective, problem.theta0, settings, ("gd",))
            np.testing.assert_allclose(cmp.traces[0].distance, ref.traces[0].distance)
            await pilot.pause(0.5)
            loss_plot = screen.query_one("#plot-compare-loss")
            labels = [s.label for s in loss_plot.plot.series]
            assert labels == ["flow", "gd lr=0.01", "sgd lr=0.01", "adam lr=0.01"]
            await pilot.press("0")
            await pilot.pause(0.5)
            dist_plot = screen.query_one("#plot-compare-distance")
            assert [s.label for s in dist_plot.plot.series] == ["gd", "sgd", "adam"]
            assert "interpolated at" in dist_plot.plot.title
            assert screen.unsaved
            screen.save_to(tmp_path / "s")
            saved = load_session(tmp_path / "s")
            assert saved.comparison is not None and saved.comparison.methods == cmp.methods
            app.push_screen(ReplayScreen(saved))
            await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen), "replay")
            await pilot.press("9")
            await pilot.pause(0.5)
            replayed = app.screen.query_one("#plot-compare-loss")
            assert [s.label for s in replayed.plot.series] == labels

    asyncio.run(scenario())


def test_compare_loss_plot_draws_a_negative_loss_as_l_minus_min() -> None:
    """A correlation loss < 0 (every method): plot 9 draws L − min L over all of them, the
    title names min L; a positive loss is drawn as it is, under the plain title."""
    from core.compare import MethodTrace
    from explorer.widgets.compare import update_compare_loss
    from explorer.widgets.panels import TrajectoryView
    from explorer.widgets.plots import LinePlot

    t = np.array([0.0, 1.0, 2.0])
    trace = MethodTrace(
        "sgd", 0.01, t, np.array([-0.5, -0.9, -1.2]), np.zeros(3), np.zeros(3, bool), "t_max"
    )
    cmp = Comparison(2.0, t, np.array([-0.5, -1.0, -1.1]), "t_max", (trace,))
    plot = LinePlot("flow vs GD/Adam: loss  (9)", log_x=True, log_y=True)
    update_compare_loss(plot, TrajectoryView(run=None, comparison=cmp))
    assert "L − min L, min L = -1.2" in plot.plot.title
    np.testing.assert_allclose(plot.plot.series[0].y, [0.7, 0.2, 0.1])
    np.testing.assert_allclose(plot.plot.series[1].y, [0.7, 0.3, 0.0])
    positive = dataclasses.replace(cmp, flow_loss=np.array([3.0, 2.0, 1.0]), traces=())
    update_compare_loss(plot, TrajectoryView(run=None, comparison=positive))
    assert plot.plot.title == "flow vs GD/Adam: loss  (9)"
    np.testing.assert_array_equal(plot.plot.series[0].y, [3.0, 2.0, 1.0])
