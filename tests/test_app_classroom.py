"""The classroom features in the real app (App.run_test, pytest-textual-snapshot):

* the narration line names each preset's phenomenon at the moment it happens, replaying the
  shipped sessions (deterministic): the symmetry saddle's plateau and its index, the rank
  steps of saddle-to-saddle, the channel of the GLU target, copy and average roles, the
  exact minimum of teacher recovery;
* a preset's what-to-watch text on the setup screen and ``w`` on the run screen;
* branching: ``c`` in replay continues a new live run from the cursor's state, and the saved
  branch records its source; headless, ``explorer run --resume SRC --from-t T``;
* snapshots of the narration line at 80×24 and 120×40 (NO_COLOR too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import start_run, sync, wait_for

from core.session import load_session

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = ROOT / "sessions"
PRESETS = ROOT / "explorer" / "presets"
SIZES = [(80, 24), (120, 40)]

# The narration line is on in these tests; figures are built synchronously (conftest.py).
pytestmark = [pytest.mark.narration, pytest.mark.usefixtures("synchronous_plots")]


async def final_narration(pilot, screen):
    """The narration line's narration once it describes the run screen's final state."""
    from explorer.widgets.narration import NarrationLine

    line = screen.query_one(NarrationLine)
    await wait_for(
        pilot,
        lambda: line.narration is not None and line.narration.t == screen.run.t,
        "narration of the final state",
    )
    return line.narration


async def _narration_at(pilot, screen, position: int) -> str:
    """Move the replay cursor to ``position`` and wait for the narration of that state."""
    from explorer.widgets.narration import NarrationLine

    line = screen.query_one(NarrationLine)
    screen.position = position
    screen._redraw()
    await wait_for(
        pilot,
        lambda: (
            line.narration is not None
            and line._key == position
            and not line._busy
            and line.narration.t == float(screen.state_at(position).t)
        ),
        f"narration at position {position}",
    )
    return line.narration.text


def _position(session, t: float) -> int:
    """The global replay position of the last saved state at or before t (one segment)."""
    return int(np.searchsorted(np.asarray(session.segments[0].t), t, side="right")) - 1


# (session, t, strings the narration must hold, strings it must not)
MOMENTS = {
    "symmetry_saddle": [
        (100.0, ["plateau since t ≈ 0", "near a saddle of index 1", "L = 0.001385", "split pair"],
         ["descent"]),
        (1e4, ["descent since t ≈ 383", "from the plateau at L ≈ 0.00139"], ["plateau since"]),
    ],
    "saddle_to_saddle": [
        (100.0, ["plateau", "saddle of index 13", "L = 4.947", "end-to-end map rank 0"], []),
        (700.0, ["plateau since t ≈ 374", "L = 0.595", "end-to-end map rank 1"], []),
        (5e3, ["plateau since t ≈ 1.37e+03", "L = 0.04847", "end-to-end map rank 2"], []),
        (np.inf, ["refined: exact minimum", "rank 3: singular values 3, 1, 0.3"], []),
    ],
    "channel_to_infinity": [
        (10.0, ["descent since t ≈ 0"], ["channel"]),
        # inside the channel phase, before the pair passes the channel test: the pair the
        # inspector marks "channel (forming)"
        (1e4, ["channel to infinity since t ≈ 264",
               "channel forming: neurons 0, 1 approach each other", "growing"], ["unsure"]),
        (5e8, ["channel to infinity since t ≈ 264", "neurons 0, 1 merge (ε = 0.0",
               "shrinking", "growing", "gated linear unit (GLU error"], []),
        (np.inf, ["refinement did not converge", "channel", "neurons 0, 1 merge"],
         ["exact minimum"]),
    ],
    "copy_or_average": [
        # The run hands over to refinement at t ≈ 608, where the flow has entered the
        # minimum's basin: the end is the refined point.
        (np.inf, ["refined: exact minimum, index 0", "L = 0.0203",
                  "neuron 0 copies teacher neuron 0", "neuron 1 averages teacher neurons"], []),
    ],
    "teacher_recovery": [
        (10.0, ["descent since t ≈ 0", "no teacher match yet"], ["exact minimum"]),
        (np.inf, ["refined: exact minimum, index 0", "zero loss",
                  "every neuron copies a teacher neuron"], []),
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MOMENTS))
@sync
async def test_narration_names_each_presets_phenomenon_at_its_moment(name):
    from explorer.app import ExplorerApp

    session = load_session(SESSIONS / name)
    app = ExplorerApp(replay=session)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.problem is not None, "problem rebuilt")
        for t, must, must_not in MOMENTS[name]:
            pos = len(screen.index) - 1 if t == np.inf else _position(session, t)
            text = await _narration_at(pilot, screen, pos)
            for s in must:
                assert s in text, f"{name} at t={t}: {s!r} not in {text!r}"
            for s in must_not:
                assert s not in text, f"{name} at t={t}: {s!r} in {text!r}"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
@sync
async def test_a_long_narration_wraps_and_shows_every_word(size):
    """The forming-channel line is long: wrapped, every one of its lines is on screen."""
    import math

    from explorer.app import ExplorerApp
    from explorer.widgets.narration import NarrationLine

    session = load_session(SESSIONS / "channel_to_infinity")
    app = ExplorerApp(replay=session)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.problem is not None, "problem rebuilt")
        text = await _narration_at(pilot, screen, _position(session, 1e4))
        assert "it passes the channel test later" in text
        await pilot.pause()
        line = screen.query_one(NarrationLine)
        width = line.content_region.width
        needed = sum(max(1, math.ceil(len(row) / width)) for row in text.splitlines())
        assert needed >= 3 if size[0] == 80 else needed >= 2
        assert line.content_region.height >= needed, (needed, line.content_region)


@sync
async def test_narration_follows_the_replay_keys():
    """End (a key, not a position set by hand) moves the narration to the end of the run."""
    from explorer.app import ExplorerApp
    from explorer.widgets.narration import NarrationLine

    app = ExplorerApp(replay=load_session(SESSIONS / "symmetry_saddle"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        line = screen.query_one(NarrationLine)
        await pilot.press("home")
        await wait_for(pilot, lambda: line.narration is not None and line.narration.t == 0.0, "t=0")
        assert "plateau since t ≈ 0" in line.narration.text
        await pilot.press("end")
        end = float(screen.session.final_t)
        await wait_for(pilot, lambda: line.narration.t == end and not line._busy, "the end")
        assert line.narration.text.startswith("refined: exact minimum")


@sync
async def test_live_narration_on_the_run_screen(tiny_config_path):
    """A live run narrates its latest state (computed in a worker), and says it is done."""
    from core.config import load_config
    from explorer.app import ExplorerApp

    app = ExplorerApp(config=load_config(tiny_config_path), config_path=tiny_config_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot, "done")
        text = (await final_narration(pilot, screen)).text
        assert text.strip() and "…" not in text
        # the words restate the state's analysis: its loss is in them
        assert f"{screen.run.loss:.3g}" in text or f"{screen.run.loss:.4g}" in text


@sync
async def test_live_narration_on_the_symmetry_saddles_plateau():
    """The preset stopped at t = 100, still on its plateau: the live narration (the run so
    far, no escape yet) says the loss is flat near a saddle of index 1, a plateau so far,
    and names the split pair."""
    from core.config import config_to_dict, load_config, parse_config
    from explorer.app import ExplorerApp

    table = config_to_dict(load_config(PRESETS / "symmetry_saddle.toml"))
    table["dynamics"]["t_max"] = 100.0
    table["refine"] = {"method": "none"}
    app = ExplorerApp(config=parse_config(table, "symmetry_saddle, t_max = 100"))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot, "done")
        narration = await final_narration(pilot, screen)
        text = narration.text
        assert narration.kind == "flat"
        assert "loss flat since t ≈ 0.01 at L = 0.001385" in text
        assert "index 1 (λmin = -0.01): near a saddle, a plateau so far" in text
        assert "neurons 0 and 1 are a split pair" in text and "μ = 0.50" in text


# ----------------------------------------------------------------------------- explanations


@sync
async def test_preset_explanation_on_setup_and_w_toggles_it_on_the_run_screen():
    from core.config import load_config
    from explorer.app import ExplorerApp
    from explorer.watch import PRESET_KEYS
    from explorer.widgets.narration import WatchPanel

    path = PRESETS / "symmetry_saddle.toml"
    app = ExplorerApp(config=load_config(path), config_path=path, autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        setup = app.screen
        panel = setup.query_one("#preset-watch", WatchPanel)
        await pilot.pause()
        # opened by path (`explorer explorer/presets/symmetry_saddle.toml`): shown at once
        assert panel.has_class("-shown") and panel.display
        assert "Watch the loss plateau at 0.001385" in str(panel.render())
        setup.load_preset(PRESETS / "copy_or_average.toml")
        await pilot.pause()
        assert "Copy or average" in str(panel.render())
        setup.load_preset(path)
        await pilot.pause()
        assert panel.has_class("-shown") and panel.display
        assert "Watch the loss plateau at 0.001385" in str(panel.render())
        run = await start_run(pilot, None)
        watch = run.query_one("#watch", WatchPanel)
        assert not watch.has_class("-shown")
        await pilot.press("w")
        await pilot.pause()
        assert watch.has_class("-shown") and watch.region.height > 0
        text = str(watch.render())
        for key, what in PRESET_KEYS["symmetry_saddle"]:
            assert f"{key:<5} {what}" in text
        await pilot.press("w")
        await pilot.pause()
        assert not watch.has_class("-shown")


@sync
async def test_w_in_the_replay_of_a_shipped_session_shows_its_presets_text(tmp_path):
    from explorer.app import ExplorerApp
    from explorer.watch import PRESET_KEYS
    from explorer.widgets.narration import WatchPanel

    app = ExplorerApp(replay=load_session(SESSIONS / "channel_to_infinity"))
    async with app.run_test(size=(80, 24)) as pilot:
        watch = app.screen.query_one(WatchPanel)
        assert not watch.has_class("-shown")
        await pilot.press("w")
        await pilot.pause()
        assert watch.has_class("-shown") and watch.region.height > 0
        text = str(watch.render())
        key, what = PRESET_KEYS["channel_to_infinity"][0]
        assert text.index(f"{key:<5} {what}") < text.index("Watch:")  # keys first
    # a session whose config is not its folder's preset's gets no text
    from core.branch import branch_session
    from core.session import save_session

    other = branch_session(load_session(SESSIONS / "symmetry_saddle"), 10.0)
    save_session(tmp_path / "channel_to_infinity", other)
    app = ExplorerApp(replay=load_session(tmp_path / "channel_to_infinity"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("w")
        await pilot.pause()
        assert not app.screen.query_one(WatchPanel).has_class("-shown")


@sync
async def test_w_without_a_preset_says_there_is_no_text(tiny_config_path):
    from core.config import load_config
    from explorer.app import ExplorerApp
    from explorer.widgets.narration import WatchPanel

    app = ExplorerApp(
        config=load_config(tiny_config_path), config_path=tiny_config_path, autostart=False
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await start_run(pilot, None)
        await pilot.press("w")
        await pilot.pause()
        assert not app.screen.query_one(WatchPanel).has_class("-shown")
        assert any("not a shipped preset" in str(n.message) for n in app._notifications)


def test_every_preset_key_is_bound_on_the_run_screen_and_every_promised_preset_has_keys():
    from explorer.screens.run import RunScreen
    from explorer.watch import PRESET_KEYS, explanation

    bound = set()
    for cls in RunScreen.__mro__:
        for b in getattr(cls, "BINDINGS", []):
            bound.update(k.strip() for k in b.key.split(","))
    for name, keys in PRESET_KEYS.items():
        assert (PRESETS / f"{name}.toml").is_file(), f"PRESET_KEYS names no preset: {name}"
        for key, _ in keys:
            assert key in bound, f"{name}: key {key!r} is not bound on the run screen"
    for path in PRESETS.glob("*.toml"):
        e = explanation(path)
        assert e is not None and e.title and e.text and "GENERATED" not in e.text
    assert explanation(SESSIONS / "symmetry_saddle" / "config.toml") is None


# ----------------------------------------------------------------------------- branching


@sync
async def test_branch_from_a_replay_runs_on_and_the_saved_session_records_its_source(tmp_path):
    from explorer.app import ExplorerApp
    from explorer.screens.replay import ReplayScreen
    from explorer.screens.run import RunScreen

    source = load_session(SESSIONS / "symmetry_saddle")
    seg = source.segments[0]
    pos = _position(source, 1e3)  # after the escape: the flow from here is well conditioned
    t_b = float(seg.t[pos])
    app = ExplorerApp(replay=source, show_clock=False)
    async with app.run_test(size=(120, 40)) as pilot:
        replay = app.screen
        replay.position = pos
        replay._redraw()
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "run screen")
        run = app.screen
        await wait_for(pilot, lambda: run.state == "paused", "branch built")
        assert run.run.t == t_b and np.array_equal(run.run.theta, seg.theta[pos])
        branch = [e for e in run.recorder.events if e["kind"] == "branch"]
        assert branch and branch[-1]["t"] == t_b
        assert branch[-1]["source"] == str(SESSIONS / "symmetry_saddle")
        t_hist, _ = run.run.series("loss")
        assert np.array_equal(t_hist, seg.t[: pos + 1])  # the history up to the branch
        await pilot.press("space")  # resume the flow from there
        await wait_for(pilot, lambda: run.state == "done", "branch run finished", 180)
        assert run.run.t > t_b
        run.save_to(tmp_path / "branch")
        await pilot.press("b")  # back to the replay it came from
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen), "back to replay")
    saved = load_session(tmp_path / "branch")
    origin = saved.summary["branched_from"]
    assert origin["t"] == t_b and origin["index"] == pos
    assert origin["session"] == str(SESSIONS / "symmetry_saddle")
    assert np.array_equal(saved.segments[0].theta[: pos + 1], seg.theta[: pos + 1])
    assert any(e["kind"] == "branch" and e["t"] == t_b for e in saved.events)
    # the flow is autonomous: on the source's save grid the branch retraces the source
    common = np.intersect1d(seg.t[pos + 1 :], saved.segments[0].t[pos + 1 :])
    assert common.size >= 5
    ia = np.searchsorted(seg.t, common)
    ib = np.searchsorted(saved.segments[0].t, common)
    diff = np.max(np.abs(seg.theta[ia] - saved.segments[0].theta[ib]))
    assert diff < 1e-5, f"branch left the source's trajectory by {diff:.2e}"


def test_headless_branch_from_t(tmp_path, tiny_config_path, capsys):
    from explorer.cli import main

    src, out = tmp_path / "src", tmp_path / "branch"
    assert main(["run", str(tiny_config_path), "--out", str(src), "--quiet"]) == 0
    a = load_session(src)
    t_from = 10.0
    j = int(np.searchsorted(a.segments[0].t, t_from, side="right")) - 1
    args = ["run", str(tiny_config_path), "--out", str(out), "--resume", str(src)]
    assert main([*args, "--from-t", str(t_from), "--quiet"]) == 0
    b = load_session(out)
    t_b = float(a.segments[0].t[j])
    assert b.summary["branched_from"] == {"session": str(src), "t": t_b, "segment": 0, "index": j}
    assert next(e for e in b.events if e["kind"] == "branch")["t"] == t_b
    assert np.array_equal(b.segments[0].theta[: j + 1], a.segments[0].theta[: j + 1])
    assert b.final_t == a.final_t  # continued to the config's t_max
    # same dynamics from the same state: the end points agree to the solver's tolerance
    assert np.max(np.abs(b.final_theta - a.final_theta)) < 1e-5
    # the source is untouched
    assert load_session(src).segments[0].t.size == a.segments[0].t.size
    # bad uses: one-line errors, nothing written
    capsys.readouterr()
    assert main([*args[:4], "--from-t", "10"]) == 2
    assert "--from-t needs --resume" in capsys.readouterr().err
    assert main([*args, "--from-t", "-1", "--force"]) != 0
    err = capsys.readouterr().err.strip()
    assert "from_t = -1 is before the session's first state" in err and "\n" not in err
    # a branch never replaces an existing session unasked (here: its own source)
    assert main(["run", str(tiny_config_path), "--out", str(src), "--resume", str(src),
                 "--from-t", "5"]) != 0  # fmt: skip
    assert "refusing to replace" in capsys.readouterr().err


# ----------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("mono", [False, True], ids=["color", "no_color"])
@pytest.mark.parametrize("size", SIZES)
def test_narration_snapshot(snap_compare, monkeypatch, size, mono):
    """The symmetry saddle's plateau at t ≈ 100, narrated under the status and scrubber."""
    from explorer.app import ExplorerApp

    if mono:
        monkeypatch.setenv("NO_COLOR", "1")
    session = load_session(SESSIONS / "symmetry_saddle")
    app = ExplorerApp(replay=session)
    pos = _position(session, 100.0)

    async def scrub(pilot) -> None:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.problem is not None, "problem rebuilt")
        await _narration_at(pilot, screen, pos)
        await pilot.pause(0.3)
        await pilot.app.workers.wait_for_complete()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=scrub)
