"""Pilot test of the sweep view as users open it: ``explorer replay DIR`` on a sweep folder.

A real two-run sweep (seeds 1 and 2 of a tiny problem) is run in-process
(``run_sweep(serial=True)``); the CLI's ``replay_app`` must open the sweep view on it,
and Enter must replay the selected run's session.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

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
