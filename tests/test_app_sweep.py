"""Pilot tests of the sweep view as users open it: ``explorer replay DIR`` on a sweep folder.

A real two-run sweep (seeds 1 and 2 of a tiny problem) is run in-process
(``run_sweep(serial=True)``); the CLI's ``replay_app`` must open the sweep view on it,
Enter must replay the selected run's session, and the Atlas tab must list atlas.csv's
entries, Enter there replaying the entry's representative.  A snapshot test shows the
atlas tab of a sweep folder written from fixed rows (deterministic: no wall times).
Update with ``pytest tests/test_app_sweep.py --snapshot-update`` after checking the SVG.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from helpers import sweep_app

BASE = """\
[teacher]
kind = "random"
input_dim = 1
widths = [2]
activation = "softplus"

[student]
widths = [2]
activation = "softplus"

[data]
kind = "gaussian"
samples = 50

[dynamics]
method = "flow"
solver = "tsit5"
t_max = 30.0
n_saves = 20
max_seconds = 60

[refine]
method = "newton"
"""


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> tuple[Path, object]:
    from core.sweep import run_sweep

    folder = tmp_path_factory.mktemp("sweep")
    (folder / "base.toml").write_text(BASE)
    (folder / "sweep.toml").write_text('base = "base.toml"\n[grid]\nseed = [1, 2]\n')
    out = folder / "out"
    result = run_sweep(folder / "sweep.toml", out, serial=True)
    return out, result


def test_replay_on_a_sweep_folder_opens_the_sweep_view(sweep_dir) -> None:
    from core.session import SessionError
    from core.sweep import read_summary_csv
    from explorer.cli import replay_app
    from explorer.screens.replay import ReplayScreen
    from explorer.screens.sweep import SweepScreen

    out, _ = sweep_dir
    rows = read_summary_csv(out / "summary.csv")
    assert len(rows) == 2
    app = replay_app(out)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, SweepScreen)
            table = screen.query_one("#sweep-table")
            assert table.row_count == 2
            status = str(screen.query_one("#status").render())
            assert "2 runs" in status
            # The help overlay lists the sweep view's keys.
            await pilot.press("question_mark")
            await pilot.pause(0.1)
            assert "Sweep" in str(app.screen.query_one("#help-text").render())
            await pilot.press("escape")
            await pilot.pause(0.1)
            # Enter on the second row replays that run's session.
            await pilot.press("n")  # sort by name: seed=1 then seed=2
            await pilot.press("down", "enter")
            start = time.monotonic()
            while not isinstance(app.screen, ReplayScreen):
                assert time.monotonic() - start < 30, "replay did not open"
                await pilot.pause(0.05)
            assert Path(app.screen.session.path).name == sorted(r["run"] for r in rows)[1]
            assert app.screen.session.config.seed == 2

    asyncio.run(scenario())

    # A session folder still opens the replay screen; anything else is a clear error.
    assert replay_app(out / rows[0]["run"]).replay is not None
    with pytest.raises(SessionError):
        replay_app(out.parent)


def test_atlas_tab_lists_the_atlas_and_enter_replays_the_representative(sweep_dir) -> None:
    from core.sweep import read_summary_csv
    from explorer.cli import replay_app
    from explorer.screens.replay import ReplayScreen

    out, result = sweep_dir
    atlas = read_summary_csv(out / "atlas.csv")
    assert sum(int(r["count"]) for r in atlas) == 2
    assert [r["runs"].split(";") for r in atlas] == [e.runs for e in result.atlas]
    app = replay_app(out)

    async def scenario() -> None:
        async with app.run_test(size=(100, 24)) as pilot:
            screen = app.screen
            tabs = screen.query_one("#sweep-tabs")
            assert tabs.active == "tab-runs"
            await pilot.press("a")
            await pilot.pause(0.1)
            assert tabs.active == "tab-atlas"
            table = screen.query_one("#atlas-table")
            assert table.row_count == len(atlas) and app.focused is table
            status = str(screen.query_one("#status").render())
            assert f"{len(atlas)} distinct critical points of 2 runs" in status
            ids = [str(table.get_cell_at((i, 0))) for i in range(table.row_count)]
            assert ids == [r["id"] for r in atlas]
            await pilot.press("enter")
            start = time.monotonic()
            while not isinstance(app.screen, ReplayScreen):
                assert time.monotonic() - start < 30, "replay did not open"
                await pilot.pause(0.05)
            assert Path(app.screen.session.path).name == atlas[0]["representative"]
            await pilot.press("escape")
            await pilot.pause(0.1)
            await pilot.press("a")  # back to the runs
            await pilot.pause(0.1)
            assert tabs.active == "tab-runs"

    asyncio.run(scenario())


def _fixed_sweep_folder(folder: Path) -> None:
    """summary.csv and atlas.csv of a six-run sweep, written by core from fixed values."""
    import numpy as np

    from core.spec import make_spec
    from core.sweep import RUN_COLUMNS, EndPoint, csv_text, write_atlas

    runs = [f"seed={i}" for i in range(1, 7)]
    spec = make_spec(2, [2], "tanh", False, 1)
    theta = np.array([1.0, 0.5, -0.3, 1.2, 1.0, -0.7])
    moved = np.array([0.3, -1.2, 1.0, 0.5, 0.7, 1.0])  # swapped, one sign flipped
    saddle = np.array([0.4, 0.3, 0.4, 0.3, 0.2, 0.2])
    ends = [
        EndPoint(runs[0], "p", spec, theta, 1.2e-32, 0, "minimum", 1e-17),
        EndPoint(runs[1], "p", spec, moved, 3.4e-33, 0, "minimum", 2e-17),
        EndPoint(runs[2], "p", spec, saddle, 0.0235379722, 1, "saddle", 7e-18),
        EndPoint(runs[3], "p", spec, theta, 5.6e-33, 0, "minimum", 1e-17),
        EndPoint(runs[4], "p", spec, saddle, 0.0235379722, 1, "saddle", 7e-18),
        EndPoint(runs[5], "p", spec, moved, 7.8e-33, 0, "minimum", 1e-17),
    ]
    write_atlas(folder, ends)
    rows = [
        {"run": e.run, "seed": i + 1, "classification": e.classification,
         "final_loss": e.loss, "analysed_loss": e.loss, "morse_index": e.index,
         "outcome": "zero-loss" if e.loss < 1e-20 else e.classification}
        for i, e in enumerate(ends)
    ]  # fmt: skip
    (folder / "summary.csv").write_text(csv_text(rows, ["run", "seed", *RUN_COLUMNS]))


def test_atlas_tab_snapshot(snap_compare, tmp_path, monkeypatch) -> None:
    (tmp_path / "out").mkdir()
    _fixed_sweep_folder(tmp_path / "out")
    monkeypatch.chdir(tmp_path)  # the status line shows the folder as given: "out"

    async def show_atlas(pilot) -> None:
        await pilot.press("a")
        await pilot.pause(0.1)

    assert snap_compare(sweep_app(Path("out")), terminal_size=(100, 20), run_before=show_atlas)


def test_atlas_tab_of_a_sweep_without_atlas_says_so(tmp_path) -> None:
    """A sweep folder written before atlases (or still on its first pass) has no atlas.csv:
    the tab is empty and the status line says when it will be written."""
    _fixed_sweep_folder(tmp_path)
    (tmp_path / "atlas.csv").unlink()

    async def scenario() -> None:
        app = sweep_app(tmp_path)
        async with app.run_test(size=(100, 20)) as pilot:
            await pilot.press("a")
            await pilot.pause(0.1)
            assert app.screen.query_one("#atlas-table").row_count == 0
            status = str(app.screen.query_one("#status").render())
            assert "no atlas.csv yet" in status
            assert app.screen.query_one("#sweep-table").row_count == 6

    asyncio.run(scenario())
