"""Pilot tests of the explorer driven by keys: run, pause, inspect, refine, surgery, save, replay.

One tiny real problem (d = 1, two softplus neurons, N = 50) keeps JAX compilation, which
dominates the cost, to a few seconds.  Numbers shown by the app are checked against
core computed independently here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from helpers import start_run, tiny_config, wait_for


async def opens_and_closes(pilot, key: str, modal: str, close: str) -> None:
    """``key`` opens the screen class named ``modal``; ``close`` dismisses it."""
    await pilot.press(key)
    await pilot.pause(0.1)
    assert type(pilot.app.screen).__name__ == modal
    await pilot.press(close)
    await pilot.pause(0.1)


def test_run_pause_inspect_refine_surgery_save_replay(tmp_path: Path) -> None:
    from core.analysis import neuron_table
    from core.networks import forward
    from core.session import load_session
    from explorer.app import ExplorerApp
    from explorer.screens.replay import ReplayScreen
    from explorer.widgets.inspector import NeuronInspector
    from explorer.widgets.plots import LinePlot

    # Full-batch gradient descent with a small step: ~30 chunks of ~0.1 s, so the pause
    # below always lands mid-run (a warm-cache tiny flow finishes in ~0.1 s, faster than
    # the pilot can poll).  The flow itself runs in the app in test_app_snapshots.
    cfg = tiny_config(method="gd", lr=1e-3)
    app = ExplorerApp(config=cfg, show_clock=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await start_run(pilot, "running")
            loss0 = screen.run.segments[0].loss[0][0]

            # Pause (space) mid-run; the point stays where the flow stopped.
            await pilot.press("space")
            await wait_for(pilot, lambda: screen.state == "paused", "pause", 60)
            t_paused = screen.run.t
            assert 0 < t_paused < 1e3
            assert any(e["kind"] == "pause" for e in screen.recorder.events)
            # The shown loss is the objective at the shown point.
            assert screen.run.loss == pytest.approx(
                float(screen.objective.loss(screen.run.theta)), rel=1e-10
            )

            # Resume (space) to completion.
            await pilot.press("space")
            await wait_for(pilot, lambda: screen.state == "done", "run to t_max", 120)
            assert screen.run.t == pytest.approx(1e3)
            assert screen.run.loss < loss0
            t_all, _ = screen.run.series("loss")
            assert np.all(np.diff(t_all) >= 0), "resumed trajectory is increasing in t"
            assert screen.run.spectrum is not None
            await pilot.pause(0.3)  # a redraw tick
            assert "done" in str(screen.query_one("#status").render())
            # At 80×24 only the current plot is on screen: the others are never drawn.
            plots = {p.id: p for p in screen.query(LinePlot)}
            await wait_for(pilot, lambda: plots["plot-loss"].renders > 0, "loss figure", 10)
            assert plots["plot-hessian"].renders == 0 and plots["plot-weights"].renders == 0
            await pilot.press("2")  # the Hessian plot is drawn when shown, off the event loop
            await wait_for(pilot, lambda: plots["plot-hessian"].renders > 0, "λ figure", 10)
            assert not plots["plot-hessian"].dirty
            # It shows every spectrum recorded so far, signed: λmin and λmax against t.
            lam = {s.label: s for s in plots["plot-hessian"].plot.series}
            np.testing.assert_array_equal(lam["λmin"].x, screen.run.spec_t)
            np.testing.assert_array_equal(lam["λmin"].y, screen.run.spec_min)
            np.testing.assert_array_equal(lam["λmax"].y, screen.run.spec_max)
            await pilot.press("1")
            # The pause and the resume are marked on the loss plot at their times.
            await pilot.pause(0.5)
            events = {(e["kind"], e["t"]) for e in screen.recorder.events}
            marked = {(m.kind, m.x) for m in plots["plot-loss"].markers}
            assert {k for k, _ in events} >= {"pause", "resume"} and events <= marked

            # Inspect (i): the table shows core.analysis.neuron_table at the current point.
            await pilot.press("i")
            await wait_for(pilot, lambda: screen.last_inspection is not None, "inspection", 60)
            expected = neuron_table(screen.run.spec, screen.run.theta, screen.problem.teacher)
            table = screen.query_one("#inspector-table")
            assert table.row_count == len(expected) == 2
            assert table.get_row_at(0)[3] == f"{float(np.ravel(expected[0].a)[0]):.3g}"
            assert screen.last_inspection.responses is not None  # d = 1: a response curve
            # Every column is as wide as its widest cell on the first showing (the table
            # was filled while its tab was hidden), and the table has the keyboard: ↓ picks
            # neuron 1, whose response curve is then drawn.
            for j, column in enumerate(table.ordered_columns):
                cells = [str(table.get_row_at(r)[j]) for r in range(table.row_count)]
                assert column.width >= max(len(c) for c in cells), (column.label, cells)
            assert table.has_focus
            await pilot.press("down")
            await pilot.pause()
            assert table.cursor_row == 1
            assert screen.query_one("#inspector-line").plot.title == "neuron 1: a·σ(w·x+b)"

            # Refine (r): Newton towards a critical point; checked independently below.
            grad_before = screen.run.grad_norm
            await pilot.press("r")
            await wait_for(
                pilot, lambda: screen.last_refine is not None or screen.error, "refine", 120
            )
            assert screen.error is None, screen.error
            await wait_for(pilot, lambda: screen.state == "done", "idle after refine", 10)
            res, spectrum, kind = screen.last_refine
            # The app moved to the refined point and shows its true loss and gradient norm.
            np.testing.assert_array_equal(screen.run.theta, np.asarray(res.theta))
            grad = np.asarray(screen.objective.grad(screen.run.theta))
            assert screen.run.grad_norm == pytest.approx(np.max(np.abs(grad)), rel=1e-8)
            assert screen.run.loss == pytest.approx(
                float(screen.objective.loss(screen.run.theta)), rel=1e-10
            )
            assert screen.run.grad_norm <= grad_before
            assert kind in ("minimum", "saddle", "channel", "unconverged")
            refine_text = str(screen.query_one("#inspector-refine").render())
            assert kind in refine_text and f"index {spectrum.index}" in refine_text

            # Split (x) neuron 0 with μ = 0.3: width 3, same function.
            x = np.asarray(screen.objective.data.x)
            f_before = np.asarray(forward(screen.run.spec, screen.run.theta, x))
            # Invalid input in the prompt is refused with a message; nothing changes.
            await pilot.press("x")
            await pilot.pause(0.1)
            app.screen.query_one("#prompt-input").value = "zero"
            await pilot.press("enter")
            await pilot.pause(0.1)
            assert app.screen is screen and screen.run.spec.widths == (2,)
            assert any("split:" in str(n.message) for n in app._notifications)
            await pilot.press("x")
            await pilot.pause(0.1)
            prompt = app.screen.query_one("#prompt-input")
            prompt.value = "0 0.3"
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.run.spec.widths == (3,), "split", 60)
            await wait_for(pilot, lambda: screen.state == "done", "idle after split", 10)
            f_after = np.asarray(forward(screen.run.spec, screen.run.theta, x))
            np.testing.assert_allclose(f_after, f_before, rtol=1e-12, atol=1e-12)
            assert screen.run.loss == pytest.approx(float(res.loss), rel=1e-9)

            # Perturb (e) along the most negative eigenvector, then merge (m) back to 2.
            theta_split = screen.run.theta.copy()
            await pilot.press("e")
            await pilot.pause(0.1)
            await pilot.press("enter")  # default ε
            await wait_for(
                pilot, lambda: not np.array_equal(screen.run.theta, theta_split), "perturb", 60
            )
            await wait_for(pilot, lambda: screen.state == "done", "idle after perturb", 10)
            assert np.linalg.norm(screen.run.theta - theta_split) == pytest.approx(1e-3, rel=1e-6)
            await pilot.press("m")
            await pilot.pause(0.1)
            app.screen.query_one("#prompt-input").value = "0 2"
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.run.spec.widths == (2,), "merge", 60)
            await wait_for(pilot, lambda: screen.state == "done", "idle after merge", 10)

            # Quit with unsaved work asks first; "n" keeps the app.
            await opens_and_closes(pilot, "q", "ConfirmScreen", "n")
            assert app.screen is screen

            # Save (s) to a chosen folder.
            await pilot.press("s")
            await pilot.pause(0.1)
            app.screen.query_one("#prompt-input").value = str(tmp_path / "sess")
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.saved_to is not None, "save", 30)
            assert not screen.unsaved
            await pilot.press("q")  # saved: quits without asking
            await pilot.pause(0.1)

        session = load_session(tmp_path / "sess")
        kinds = [e["kind"] for e in session.events]
        assert {"pause", "resume", "refine", "surgery"} <= set(kinds)
        assert [s.spec.widths for s in session.segments] == [(2,), (3,), (2,)]
        assert session.refined is not None

        # Replay the saved session: the scrubber moves every plot to the chosen t.
        replay = ExplorerApp(replay=session)
        async with replay.run_test(size=(120, 40)) as pilot:
            rs: ReplayScreen = replay.screen  # type: ignore[assignment]
            assert isinstance(rs, ReplayScreen)
            await pilot.press("home")
            seg0 = session.segments[0]
            state = rs.state_at(rs.position)
            assert rs.position == 0 and state.t == pytest.approx(float(seg0.t[0]))
            await pilot.press("right", "right")
            assert rs.position == 2
            assert rs.state_at(2).loss == pytest.approx(float(seg0.loss[2]))
            await pilot.pause(0.3)
            assert f"t={float(seg0.t[2]):.4g}" in str(rs.query_one("#status").render())
            await pilot.press("space")  # play
            await wait_for(pilot, lambda: rs.position > 2, "play", 10)
            await pilot.press("space")
            await pilot.press("end")
            assert rs.position == len(rs.index) - 1
            assert rs.state_at(rs.position).t == pytest.approx(session.final_t)
            await wait_for(pilot, lambda: rs.problem is not None, "replay problem", 60)
            await pilot.press("i")
            await wait_for(pilot, lambda: rs.last_inspection is not None, "replay inspect", 60)
            assert rs.query_one(NeuronInspector).query_one("#inspector-table").row_count == 2

    asyncio.run(scenario())


def test_failing_run_shows_error_and_keeps_last_finite_state() -> None:
    from explorer.app import ExplorerApp

    # Gradient descent with a huge step diverges to non-finite values.
    cfg = tiny_config(method="gd", lr=50.0, t_max=1e6)
    app = ExplorerApp(config=cfg, show_clock=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await start_run(pilot, ("error", "done"))
            assert screen.state == "error", screen.state
            assert np.all(np.isfinite(screen.run.theta)) and np.isfinite(screen.run.loss)
            await pilot.pause(0.3)
            assert "error" in str(screen.query_one("#status").render())
            # Still usable: the help overlay opens and closes.
            await opens_and_closes(pilot, "question_mark", "HelpScreen", "escape")
            assert app.screen is screen

    asyncio.run(scenario())


def test_live_saddle_to_saddle_shows_the_plateaus_apart() -> None:
    """The preset run in the app (ctrl+r), not replayed: the auto-fitted loss plot puts the
    three plateaus (4.95, 0.595, 0.0485) on different rows although the loss ends at
    round-off, the Hessian plot shows the saddles' λmin < 0, and phase boundaries are marked."""
    from core.config import load_config
    from explorer.app import ExplorerApp
    from explorer.widgets.plots import LinePlot

    presets = Path(__file__).resolve().parents[1] / "explorer" / "presets"
    app = ExplorerApp(config=load_config(presets / "saddle_to_saddle.toml"), show_clock=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await start_run(pilot, "done")
            loss = screen.query_one("#plot-loss", LinePlot)
            assert screen.run.loss < 1e-20  # the final drop to round-off is in the data

            def final_data_drawn() -> bool:  # the redraw timer pushes it after "done"
                series = loss.plot.series
                y = np.asarray(series[0].y, float) if series else np.zeros(0)
                return not loss.dirty and y.size > 0 and np.nanmin(y) < 1e-20

            await wait_for(pilot, final_data_drawn, "loss figure with the final drop", 10)
            height = loss.content_size.height - 1
            lo, hi = loss.figure_spec(height).ylim
            rows = [
                int((np.log10(v) - lo) / (hi - lo) * (height - 6)) for v in (4.95, 0.595, 0.0485)
            ]
            assert len(set(rows)) == 3, rows
            await pilot.press("2")
            hess = screen.query_one("#plot-hessian", LinePlot)
            await wait_for(pilot, lambda: not hess.dirty and hess.plot.series, "λ figure", 10)
            lmin = next(s for s in hess.plot.series if s.label == "λmin")
            first_plateau = (lmin.x > 1) & (lmin.x < 100)
            assert first_plateau.sum() >= 10 and np.all(lmin.y[first_plateau] < 0)
            starts = [m for m in hess.markers if m.kind == "plateau"]
            assert len(starts) >= 2  # the second and third plateaus begin after a descent
            assert all(100 < m.x < 1e4 for m in starts)

    asyncio.run(scenario())
