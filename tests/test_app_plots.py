"""Plots: the thinning that keeps figures cheap (nothing a terminal can show is lost), the
y-axis fitting, symlog and sign glyphs, and the plot keys on the replay screen (pilot)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.widgets.plots import envelope_indices


def reference_envelope(x: np.ndarray, y: np.ndarray, n_bins: int) -> set[int]:
    """Per column (loop, no vectorisation): first, last, first argmin, first argmax."""
    lo, hi = x.min(), x.max()
    keep: set[int] = set()
    for b in range(n_bins):
        if hi > lo:
            col = np.minimum(((x - lo) / (hi - lo) * n_bins).astype(int), n_bins - 1)
        else:
            col = np.zeros(len(x), dtype=int)
        members = np.flatnonzero(col == b)
        if members.size:
            keep |= {
                int(members[0]),
                int(members[-1]),
                int(members[np.argmin(y[members])]),
                int(members[np.argmax(y[members])]),
            }
    return keep


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 400),
    n_bins=st.integers(1, 30),
    seed=st.integers(0, 2**31 - 1),
    sorted_x=st.booleans(),
)
def test_envelope_keeps_each_columns_ends_and_extremes(m, n_bins, seed, sorted_x) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=m)
    if sorted_x:
        x = np.sort(x)
    y = np.round(rng.normal(size=m), 1)  # ties on purpose
    keep = envelope_indices(x, y, n_bins)
    assert np.all(np.diff(keep) > 0), "sorted, no duplicates"
    if m <= 4 * n_bins:
        np.testing.assert_array_equal(keep, np.arange(m))
        return
    assert set(keep.tolist()) == reference_envelope(x, y, n_bins)
    assert len(keep) <= 4 * n_bins
    # What the eye sees per column — its y range — is unchanged.
    col = np.minimum(((x - x.min()) / (np.ptp(x) or 1) * n_bins).astype(int), n_bins - 1)
    for b in np.unique(col):
        sel = keep[col[keep] == b]
        assert y[sel].min() == y[col == b].min() and y[sel].max() == y[col == b].max()


def test_envelope_of_a_long_trajectory_is_small() -> None:
    t = np.log10(np.logspace(-3, 6, 100_000))
    keep = envelope_indices(t, np.exp(-t), 120)
    assert len(keep) <= 480 and keep[0] == 0 and keep[-1] == len(t) - 1


# -- plot control, markers, cursor, monochrome (pure parts) ------------------------------

SESSIONS = Path(__file__).resolve().parents[1] / "sessions"


def test_symlog_round_trip_and_ticks() -> None:
    from explorer.widgets.plots import symlog, symlog_inverse, symlog_ticks

    c = 1e-3
    y = np.array([-5.0, -0.01, -1e-6, 0.0, 1e-6, 0.01, 7.0])
    np.testing.assert_allclose(symlog_inverse(symlog(y, c), c), y, rtol=1e-12, atol=1e-18)
    assert np.all(np.diff(symlog(y, c)) > 0), "monotone"
    pos, labels = symlog_ticks(float(symlog(-0.02, c)), float(symlog(8.0, c)), c, max_ticks=20)
    assert "0" in labels and "-1e-2" in labels and "1" in labels
    for p, lab in zip(pos, labels, strict=True):  # each tick sits at its labelled value
        assert float(symlog_inverse(p, c)) == pytest.approx(float(lab), rel=1e-12, abs=1e-300)


def test_robust_fit_clips_a_round_off_tail_but_not_a_smooth_descent() -> None:
    from explorer.widgets.plots import fit_range

    t = np.logspace(-2, 4, 200)
    smooth = np.log10(np.exp(-t / 3e3) + 1e-3)  # a descent to 1e-3 and no tail
    lo, hi = fit_range([smooth])
    assert lo <= smooth.min() and hi >= smooth.max()
    tail = smooth.copy()
    tail[-2:] = -31.0  # the last two points drop to round-off
    lo, hi = fit_range([tail])
    assert lo > -5 and lo <= np.sort(tail)[4], "the floor is the bulk's, not the round-off"
    lo, hi = fit_range([tail], "full")
    assert lo < -31


def test_heatmap_signs_are_glyphs() -> None:
    from explorer.widgets.plots import HEAT_NEGATIVE, HEAT_POSITIVE, heatmap_text

    v = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]])
    text = heatmap_text(v, 5, 1).plain
    assert text[0] == HEAT_NEGATIVE[-1] and text[-1] == HEAT_POSITIVE[-1]
    assert text[1] in HEAT_NEGATIVE[1:] and text[3] in HEAT_POSITIVE[1:]
    assert set(HEAT_POSITIVE[1:]).isdisjoint(HEAT_NEGATIVE[1:]), "sign readable without colour"


# -- the replay screen on shipped sessions (pilot) -----------------------------------------


def _rows(values, window, rows) -> list[int]:
    lo, hi = window
    return [int((np.log10(v) - lo) / (hi - lo) * rows) for v in values]


def test_replay_plot_control_on_saddle_to_saddle(monkeypatch) -> None:
    """Auto-fit separates the three plateaus; zoom, fit, log/linear and hiding act on the
    current plot; markers sit at the events and phase boundaries; the x axis spans the
    whole run with the cursor at the replayed time; NO_COLOR gives glyphs per series."""
    from core.phases import session_phases
    from core.session import load_session
    from explorer.app import ExplorerApp
    from explorer.widgets.plots import GLYPHS, LinePlot

    monkeypatch.setattr(LinePlot, "background", False)
    monkeypatch.setenv("NO_COLOR", "1")
    session = load_session(SESSIONS / "saddle_to_saddle")
    app = ExplorerApp(replay=session)
    plateaus = (4.95, 0.595, 0.0485)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            rs = app.screen
            loss = rs.query_one("#plot-loss", LinePlot)
            await wait_for(pilot, lambda: loss.plot.series and not loss.dirty, "loss figure")
            height = loss.content_size.height - 1
            spec = loss.figure_spec(height)
            # The window leaves the final drop to round-off below and keeps the plateaus apart.
            assert spec.ylim[0] > np.log10(1e-12) and spec.extra["below"] >= 1
            rows = _rows(plateaus, spec.ylim, height - 6)
            assert len(set(rows)) == 3, rows
            # Full range (f) stretches down to the round-off; f again: robust.
            await pilot.press("f")
            lowest = min(
                float(np.min(np.asarray(s.y)[np.asarray(s.y) > 0])) for s in loss.plot.series
            )
            assert lowest < 1e-20 and loss.figure_spec(height).ylim[0] <= np.log10(lowest) + 1e-9
            await pilot.press("f")
            assert loss.figure_spec(height).ylim == spec.ylim
            # Hide ‖∇L‖∞ (v, "2"): not drawn, and the loss plateaus get ≥ 3 rows between them.
            await pilot.press("v")
            await pilot.pause(0.1)
            app.screen.query_one("#prompt-input").value = "2"
            await pilot.press("enter")
            await pilot.pause(0.2)
            hidden = loss.figure_spec(height)
            assert [s.label for s in hidden.series] == ["loss"]
            figure = str(loss.render())
            assert GLYPHS[1] * 3 not in figure.split("\n", 1)[1], "the hidden series is drawn"
            assert "‖∇L‖∞ hidden" in figure.split("\n", 1)[0]
            rows = _rows(plateaus, hidden.ylim, height - 6)
            assert min(np.diff(sorted(rows))) >= 3, rows
            # Zoom in (+) halves the span about its centre; zoom out (-) restores it.
            span = np.diff(hidden.ylim)[0]
            await pilot.press("plus")
            assert np.diff(loss.figure_spec(height).ylim)[0] < 0.6 * span
            await pilot.press("minus")
            assert np.diff(loss.figure_spec(height).ylim)[0] == pytest.approx(span)
            # Move the window up (u) by half its span, down (d) back.
            await pilot.press("u")
            shift = loss.figure_spec(height).ylim[0] - hidden.ylim[0]
            assert 0.4 * span < shift <= 0.5 * span  # half the span below the marker row
            await pilot.press("d")
            assert loss.figure_spec(height).ylim == pytest.approx(hidden.ylim)
            # Linear y (g) and back.
            await pilot.press("g")
            assert loss.figure_spec(height).scale == "linear"
            await pilot.press("g")
            assert loss.figure_spec(height).scale == "log"

            # Markers: the refine event and every phase boundary; cursor at the replayed t.
            phases = session_phases(session)
            kinds = {(m.kind, round(m.x, 6)) for m in loss.markers}
            assert ("refine", round(session.events[0]["t"], 6)) in kinds
            for p in phases[1:]:
                assert (p.kind, round(p.t_start, 6)) in kinds
            assert "=" in figure  # plateau-start glyphs on the figure
            await pilot.press("home")
            await pilot.pause(0.3)
            seg = session.segments[0]
            assert loss.cursor == pytest.approx(float(seg.t[0]))
            # The whole run is plotted whatever the replayed point.
            assert max(float(np.max(s.x)) for s in loss.plot.series) == session.final_t
            # Monochrome: every series has its own glyph, repeated in the legend.
            assert loss.glyph(0) != loss.glyph(1)
            assert "xx ‖∇L‖∞" in str(loss.legend()) or "‖∇L‖∞ hidden" in str(loss.legend())

    asyncio.run(scenario())


def test_replay_hessian_plot_is_signed(monkeypatch) -> None:
    """Symmetry saddle: λmin ≈ −0.010 on the plateau is drawn below the zero line."""
    from core.session import load_session
    from explorer.app import ExplorerApp
    from explorer.widgets.plots import LinePlot, symlog

    monkeypatch.setattr(LinePlot, "background", False)
    session = load_session(SESSIONS / "symmetry_saddle")
    app = ExplorerApp(replay=session)

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            plot = app.screen.query_one("#plot-hessian", LinePlot)
            await wait_for(pilot, lambda: plot.plot.series and not plot.dirty, "Hessian figure")
            spec = plot.figure_spec()
            assert spec.scale == "symlog"
            lmin = next(s for s in spec.series if s.label == "λmin")
            on_plateau = (lmin.x > 1) & (lmin.x < 100)
            assert on_plateau.sum() >= 15 and np.all(lmin.y[on_plateau] < -0.005)
            assert spec.ylim[0] < float(symlog(-0.01, spec.linthresh)) < 0 < spec.ylim[1]
            assert "-1e-2" in str(plot.render())  # the tick of the negative λ

    asyncio.run(scenario())


def test_replay_negative_loss_is_drawn_as_l_minus_min(monkeypatch) -> None:
    """multi_index_below: the correlation loss L = −E[f f*] < 0 everywhere; plot 1 draws
    L − min L on its log axis (title and legend say so), not an empty loss curve."""
    from core.session import load_session
    from explorer.app import ExplorerApp
    from explorer.widgets.plots import LinePlot, display_xy, thin

    monkeypatch.setattr(LinePlot, "background", False)
    session = load_session(SESSIONS / "multi_index_below")
    loss = np.concatenate([s.loss for s in session.segments])
    assert np.all(loss < 0)
    app = ExplorerApp(replay=session)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            plot = app.screen.query_one("#plot-loss", LinePlot)
            await wait_for(pilot, lambda: plot.plot.series and not plot.dirty, "loss figure")
            spec = plot.figure_spec(plot.content_size.height - 1)
            assert spec.scale == "log"
            curve = spec.series[0]
            assert curve.label == "L − min L"
            assert f"min L = {loss.min():.4g}" in spec.title
            np.testing.assert_array_equal(curve.y, loss - loss.min())
            # Drawn points: every one with t > 0 (log t) and L > min L (the last few equal
            # min L to the bit: log 0 = −∞), and the thinning keeps enough of them.
            t = np.concatenate([s.t for s in session.segments])
            x, y = display_xy(spec, curve)
            drawn = np.isfinite(x) & np.isfinite(y)
            np.testing.assert_array_equal(drawn, (t > 0) & (loss > loss.min()))
            assert drawn.sum() > 150
            assert len(thin(spec, plot.content_size.width).series[0].x) > 20
            assert "L − min L" in str(plot.legend())

    asyncio.run(scenario())


def test_loss_offset_leaves_positive_losses_alone() -> None:
    from explorer.widgets.plots import loss_offset

    assert loss_offset(np.array([3.0, 1e-31, 0.0])) == 0.0
    assert loss_offset(np.array([np.nan, 2.0]), np.array([])) == 0.0
    assert loss_offset(np.array([0.5, -0.25, np.nan]), np.array([-1.5, np.inf])) == -1.5


def test_log_toggle_only_where_it_makes_sense() -> None:
    from explorer.widgets.plots import LinePlot, Series

    signed = LinePlot("spectrum", scatter=True)
    signed.set_series([Series(np.arange(3.0), np.array([-2.0, 0.5, 1.0]), "log10|λ|")])
    assert "no log axis" in signed.toggle_scale() and signed.scale == "linear"
    positive = LinePlot("response")
    positive.set_series([Series(np.arange(3.0), np.array([1.0, 10.0, 100.0]), "y")])
    positive.toggle_scale()
    assert positive.scale == "log" and positive.figure_spec().ylim[1] > 2.0  # log10(100)
    positive.toggle_scale()
    assert positive.scale == "linear"
    loss = LinePlot("loss", log_y=True)
    loss.toggle_scale()
    assert loss.scale == "linear"


def test_help_lists_the_plot_keys_once() -> None:
    from explorer.screens.help import MARKER_HELP, key_table
    from explorer.screens.replay import ReplayScreen
    from explorer.screens.run import RunScreen
    from explorer.screens.trajectory import PLOT_TABS, TrajectoryScreen

    text = key_table([RunScreen, ReplayScreen, TrajectoryScreen])
    for desc in ("Zoom in (y)", "Zoom out (y)", "Auto-fit y", "Log / linear y", "Show / hide"):
        assert text.count(desc) == 1, desc
    assert text.count("Markers on / off") == 1
    for tab in PLOT_TABS:
        assert f" {tab.name}\n" in text + "\n"
    assert "R refine" in MARKER_HELP and "= plateau" in MARKER_HELP


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, False), ({"NO_COLOR": "1"}, True), ({"TEXTUAL_COLOR_SYSTEM": "standard"}, True)],
)
def test_glyph_mode_without_colour_or_with_16_colours(monkeypatch, env, expected) -> None:
    from explorer.app import ExplorerApp
    from explorer.widgets.plots import LinePlot

    for name in ("NO_COLOR", "TEXTUAL_COLOR_SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from core.session import load_session

    app = ExplorerApp(replay=load_session(SESSIONS / "symmetry_saddle"))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)):
            plot = app.screen.query_one("#plot-loss", LinePlot)
            assert plot.monochrome is expected
            assert (plot.glyph(0), plot.glyph(1)) == (
                ("braille", "x") if expected else ("braille", "braille")
            )

    asyncio.run(scenario())
