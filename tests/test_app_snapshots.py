"""Snapshot tests of the main screens at 80×24 and 120×40 (pytest-textual-snapshot).

Frames are deterministic: the setup screen, the help overlay, a finished run of a
fixed tiny problem with the clock hidden (its Hessian spectra sit at deterministic
simulated times, core.spectra) and the loss plot shown,
and the replay screen and its neuron inspector on a session saved by the headless runner;
shipped sessions replayed with NO_COLOR (series told apart by glyph, phase and event
markers, the cursor over the whole run) and a d = 2 inspector heatmap (signs by glyph).
Figures are built synchronously (``LinePlot.background = False``) so a frame never shows
a plot still being drawn.
Update with ``pytest tests/test_app_snapshots.py --snapshot-update`` after checking the SVGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import start_run, tiny_mapping, wait_for
from textual.widgets import DataTable

from core.config import default_config, parse_config

SIZES = [(80, 24), (120, 40)]

pytestmark = pytest.mark.usefixtures("synchronous_plots")  # conftest.py

#: The app tests' tiny problem to t = 100 with the default refinement ("auto").
TINY = tiny_mapping({"t_max": 100.0}, refine={"method": "auto"})


@pytest.fixture(scope="module")
def saved_session(tmp_path_factory):
    """A session of the tiny problem saved by ``core.runner.run_config`` (headless)."""
    from core.runner import run_config
    from core.session import load_session

    cfg = parse_config({**TINY, "refine": {"method": "newton"}}, "tiny")
    out = run_config(cfg, tmp_path_factory.mktemp("snap") / "sess")
    return load_session(out)


@pytest.mark.parametrize("size", SIZES)
def test_setup_screen(snap_compare, size) -> None:
    from explorer.app import ExplorerApp

    assert snap_compare(ExplorerApp(config=default_config()), terminal_size=size)


def test_help_overlay(snap_compare) -> None:
    from explorer.app import ExplorerApp

    async def open_help(pilot) -> None:
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(
        ExplorerApp(config=default_config()), terminal_size=(120, 40), run_before=open_help
    )


def test_finished_run(snap_compare) -> None:
    from explorer.app import ExplorerApp

    cfg = parse_config(TINY, "tiny")
    app = ExplorerApp(config=cfg, show_clock=False)

    async def run_to_end(pilot) -> None:
        await start_run(pilot)
        await pilot.pause(0.5)  # one redraw tick

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_to_end)


async def settle(pilot) -> None:
    """No worker running (problem build, inspection) and no animation (tab underline)."""
    await pilot.pause(0.3)
    await pilot.app.workers.wait_for_complete()
    await pilot.wait_for_scheduled_animations()
    # A DataTable sizes its columns on idle after rows change; a frame taken before that
    # shows header-wide columns (Textual-internal flag, hence getattr).
    for table in pilot.app.screen.query(DataTable):
        await wait_for(
            pilot, lambda t=table: not getattr(t, "_require_update_dimensions", False), "table"
        )
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES)
def test_replay_screen(snap_compare, saved_session, size) -> None:
    from explorer.app import ExplorerApp

    app = ExplorerApp(replay=saved_session)

    async def scrub(pilot) -> None:
        await pilot.press("home", "pagedown", "pagedown", "pagedown")
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=scrub)


async def inspect_replayed(pilot) -> None:
    """Once the replay has rebuilt its problem: i (inspect the cursor's point), settled."""
    rs = pilot.app.screen
    await wait_for(pilot, lambda: rs.problem is not None, "problem rebuilt")
    await pilot.press("i")
    await wait_for(pilot, lambda: rs.last_inspection is not None, "inspection")
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_replay_inspector(snap_compare, saved_session, size) -> None:
    from explorer.app import ExplorerApp

    app = ExplorerApp(replay=saved_session)

    assert snap_compare(app, terminal_size=size, run_before=inspect_replayed)


SESSIONS = Path(__file__).resolve().parents[1] / "sessions"


@pytest.mark.parametrize("size", SIZES)
def test_replay_saddle_to_saddle_monochrome(snap_compare, monkeypatch, size) -> None:
    """Three plateaus on separate rows, glyphs per series, markers, cursor at t = 300."""
    from core.session import load_session
    from explorer.app import ExplorerApp

    monkeypatch.setenv("NO_COLOR", "1")
    session = load_session(SESSIONS / "saddle_to_saddle")
    app = ExplorerApp(replay=session)
    t = session.segments[0].t
    target = int(np.searchsorted(t, 300.0))

    async def scrub(pilot) -> None:
        await pilot.press("home")
        for _ in range(target):
            await pilot.press("right")
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=scrub)


@pytest.mark.parametrize("size", SIZES)
def test_replay_inspector_heatmap_monochrome(snap_compare, monkeypatch, size) -> None:
    """teacher_recovery (d = 2): a neuron's response as a heatmap whose glyphs carry the sign."""
    from core.session import load_session
    from explorer.app import ExplorerApp

    monkeypatch.setenv("NO_COLOR", "1")
    app = ExplorerApp(replay=load_session(SESSIONS / "teacher_recovery"))

    assert snap_compare(app, terminal_size=size, run_before=inspect_replayed)


def test_replay_multi_index_below_negative_loss(snap_compare) -> None:
    """The correlation loss is < 0: plot 1 draws L − min L (title: min L = −1.044) on its
    log axis beside ‖∇L‖∞, the cursor at the end of the run."""
    from core.session import load_session
    from explorer.app import ExplorerApp

    app = ExplorerApp(replay=load_session(SESSIONS / "multi_index_below"))

    async def to_end(pilot) -> None:
        await pilot.press("end")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=to_end)
