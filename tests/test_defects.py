"""Defects found by using the explorer (issue "for a classroom and for a long day's work",
item 5): one test per defect, each failing before its fix.

CLI and core first (cheap), then the app (pilot tests on tiny problems).
"""

from __future__ import annotations

import asyncio
import csv
import shutil
from pathlib import Path

import pytest
from helpers import TINY_CONFIG, replay_ready, start_run, wait_for

from core.config import parse_config
from core.session import load_session
from explorer.cli import main

# A tiny config refined at the end: refinement lowers the loss well below the flow's.
REFINED_CONFIG = TINY_CONFIG.replace('method = "none"', 'method = "newton"').replace(
    "t_max = 100.0", "t_max = 20.0"
)

SWEEP_BASE = """\
seed = 1
[teacher]
kind = "random"
input_dim = 2
widths = [1]
[student]
widths = [1]
[data]
kind = "gaussian"
samples = 100
[dynamics]
method = "gd"
lr = 0.05
t_max = 2.0
n_saves = 10
max_seconds = 120
[refine]
method = "newton"
"""


def run_cli(capsys, *argv):
    rc = main(list(map(str, argv)))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ----------------------------------------------------------------------------- CLI / core


def test_run_out_makes_missing_parents_but_not_through_a_file(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_CONFIG.replace("t_max = 100.0", "t_max = 1.0"))
    out = tmp_path / "sessions" / "day1" / "s"
    rc, _, err = run_cli(capsys, "run", cfg, "--out", out, "--quiet")
    assert rc == 0, err
    assert load_session(out).final_t == pytest.approx(1.0)
    (tmp_path / "afile").write_text("x")
    rc, _, err = run_cli(capsys, "run", cfg, "--out", tmp_path / "afile" / "s", "--quiet")
    assert rc == 2 and "afile is not a folder" in err and len(err.splitlines()) == 1


def test_sweep_out_makes_missing_parents(tmp_path):
    from core.sweep import run_sweep

    (tmp_path / "base.toml").write_text(SWEEP_BASE)
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('base = "base.toml"\n[grid]\nseed = [1]\n')
    out = tmp_path / "sweeps" / "s1"
    result = run_sweep(sweep, out, serial=True)
    assert not result.failed and (out / "summary.csv").is_file()


def test_closing_line_prints_the_analysed_points_loss(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(REFINED_CONFIG)
    out = tmp_path / "s"
    rc, _, err = run_cli(capsys, "run", cfg, "--out", out, "--quiet")
    assert rc == 0, err
    summary = load_session(out).summary
    refined, final = summary["refined_loss"], summary["final_loss"]
    assert f"{refined:.6g}" != f"{final:.6g}"  # refinement moved the point
    line = err.strip().splitlines()[-1]
    assert f"loss {refined:.6g} (refined)" in line and f"{final:.6g}" not in line


def test_sweep_rows_cli_and_table_share_one_vocabulary(tmp_path, capsys):
    """summary.csv's analysed_loss is the loss the outcome is judged on; the CLI's
    progress line and the sweep table name it so, next to the flow's final_loss."""
    from core.sweep import RUN_COLUMNS, read_summary_csv
    from explorer.screens.sweep import SORTS, SweepScreen

    (tmp_path / "base.toml").write_text(SWEEP_BASE)
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('base = "base.toml"\n[grid]\nseed = [1]\n')
    out = tmp_path / "sw"
    rc, _, err = run_cli(capsys, "sweep", sweep, "--out", out, "--workers", "1")
    assert rc == 0, err
    assert "loss" not in RUN_COLUMNS and "analysed_loss" in RUN_COLUMNS
    (row,) = read_summary_csv(out / "summary.csv")
    session = load_session(out / row["run"])
    analysed = session.analysis["loss"]
    assert float(row["analysed_loss"]) == analysed
    assert float(row["refined_loss"]) == session.report["refined"]["loss"]
    assert float(row["final_loss"]) == session.report["final"]["loss"]
    progress = [ln for ln in err.splitlines() if row["run"] in ln][-1]
    assert f"{row['outcome']} (analysed_loss {analysed:.3e}, final_loss " in progress
    assert SORTS["loss"][0] == "analysed_loss"
    screen = SweepScreen(out)
    screen.load_rows()
    assert screen.columns[-4:] == ["classification", "analysed_loss", "final_loss", "wall_seconds"]
    with open(out / "summary.csv", newline="") as f:
        assert "analysed_loss" in next(csv.reader(f))


def test_report_after_refine_then_resume_describes_the_final_point_and_says_so(tmp_path, capsys):
    """An app session refined at t₁ whose flow then went on to t₂ > t₁ (no stored report):
    the computed report analyses the final state, not the stale refined point."""
    import numpy as np

    from core.analysis import analyze
    from core.problem import build_problem
    from core.runner import session_report
    from core.session import SessionRecorder, save_session

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(REFINED_CONFIG)
    first = tmp_path / "s"
    assert main(["run", str(cfg), "--out", str(first), "--quiet"]) == 0
    stored = session_report(load_session(first))
    assert stored["analysed"] == {"point": "refined", "t": stored["final"]["t"]}
    session = load_session(first)
    # The flow goes on from the refined point (as the app does after r, then space).
    problem = build_problem(session.config)
    obj = problem.objective
    rec = SessionRecorder.from_session(session)
    rec.refined, rec.refined_theta = session.refined, session.refined_theta
    theta = np.asarray(session.final_theta) + 0.05
    loss, grad = obj.value_and_grad(theta)
    t2 = session.final_t * 2
    rec.append([t2], theta[None], [float(loss)], [float(np.max(np.abs(grad)))])
    later = tmp_path / "later"
    s2 = rec.to_session()
    s2.report = None
    save_session(later, s2)

    report = session_report(load_session(later))
    assert report["final"]["t"] == t2 and report["refined"] is None
    assert report["analysed"]["point"] == "final" and report["analysed"]["t"] == t2
    assert "earlier state" in report["analysed"]["note"]
    expect = analyze(obj, theta, problem.teacher, problem.data.x)
    np.testing.assert_allclose(
        report["spectrum"]["eigenvalues"], expect.spectrum.eigenvalues, rtol=1e-9, atol=1e-12
    )
    rc, out, _ = run_cli(capsys, "report", later)
    assert rc == 0 and f"(of the final point at t = {t2:.6g})" in out and "note: " in out


# ----------------------------------------------------------------------------- the app

ROOT = Path(__file__).resolve().parent.parent
TINY_APP = {
    "seed": 1,
    # A strict minimum that refinement reaches from anywhere along the run (λmin ≈ 6e-4).
    "teacher": {"kind": "random", "input_dim": 2, "widths": [2], "activation": "softplus"},
    "student": {"widths": [1], "activation": "softplus", "bias": True},
    "data": {"kind": "gaussian", "samples": 50},
    # Gradient descent with a small step: a run long enough to press keys while it runs.
    "dynamics": {"method": "gd", "lr": 1e-3, "t_max": 1e3, "max_seconds": 60},
    "refine": {"method": "auto"},
}


def notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def test_refine_banner_uses_the_reports_classification_and_says_not_converged():
    """r at the channel preset's end point: the report says "channel" (refinement not
    converged); the banner said "minimum, index 0" before."""
    from core.analysis import analyze
    from core.config import with_overrides
    from core.networks import params_to_lists
    from core.problem import build_problem
    from explorer.app import ExplorerApp

    demo = load_session(ROOT / "sessions" / "channel_to_infinity")
    assert demo.report["classification"] == "channel"
    params = params_to_lists(demo.final_spec, demo.final_theta)
    cfg = with_overrides(demo.config, student={"params": params})

    app = ExplorerApp(config=cfg, show_clock=False, autostart=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await start_run(pilot, "paused", config=cfg)
            await pilot.press("r")
            await wait_for(pilot, lambda: screen.last_refine is not None, "refine", 120)
            res, spectrum, kind = screen.last_refine
            problem = build_problem(cfg)
            expect = analyze(problem.objective, res.theta, problem.teacher, problem.data.x)
            assert kind == expect.classification == "channel"
            assert spectrum.index == expect.spectrum.index
            banner = str(screen.query_one("#inspector-refine").render())
            assert "channel" in banner and "minimum" not in banner
            assert not res.converged and "not converged" in banner

    asyncio.run(scenario())


def test_a_live_runs_own_refinement_is_classified_as_the_report_does():
    """The channel preset run live (ctrl+r): the flow's own refinement at its end arrives as
    the refine banner, which must say "channel" as `explorer report` does (it classified
    without the channel check, so "minimum", before)."""
    from core.config import load_config
    from explorer.app import ExplorerApp

    demo = load_session(ROOT / "sessions" / "channel_to_infinity")
    assert demo.report["classification"] == "channel"
    cfg = load_config(ROOT / "explorer" / "presets" / "channel_to_infinity.toml")
    app = ExplorerApp(config=cfg, show_clock=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await start_run(pilot, None)
            await wait_for(pilot, lambda: screen.last_refine is not None, "refinement", 120)
            _, _, kind = screen.last_refine
            assert kind == "channel"
            assert "channel" in str(screen.query_one("#inspector-refine").render())

    asyncio.run(scenario())


def test_ctrl_q_and_ctrl_c_never_quit_an_unsaved_run_without_asking():
    from explorer.app import ExplorerApp
    from explorer.screens.dialogs import ConfirmScreen

    cfg = parse_config({**TINY_APP, "dynamics": {**TINY_APP["dynamics"], "t_max": 0.05}}, "t")
    app = ExplorerApp(config=cfg, show_clock=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await start_run(pilot, "done")
            assert screen.unsaved
            await pilot.press("ctrl+c")
            await pilot.pause(0.1)
            assert app.screen is screen and app.is_running
            await pilot.press("ctrl+q")
            await pilot.pause(0.1)
            assert isinstance(app.screen, ConfirmScreen)
            depth = len(app.screen_stack)
            await pilot.press("ctrl+q")  # no second question on top of the first
            await pilot.pause(0.1)
            assert len(app.screen_stack) == depth
            await pilot.press("n")
            await pilot.pause(0.1)
            assert app.screen is screen and app.is_running
            await pilot.press("ctrl+q")
            await pilot.pause(0.1)
            await pilot.press("y")
            await pilot.pause(0.2)
            assert not app.is_running or app._exit

    asyncio.run(scenario())


def test_replay_opened_from_the_sweep_view_goes_back_with_escape_and_b(tmp_path):
    from explorer.app import ExplorerApp
    from explorer.screens.replay import ReplayScreen
    from explorer.screens.sweep import SweepScreen

    out = tmp_path / "sw"
    out.mkdir()
    shutil.copytree(ROOT / "sessions" / "symmetry_saddle", out / "seed=1")
    (out / "summary.csv").write_text(
        "run,seed,classification,final_loss,wall_seconds,outcome\n"
        "seed=1,1,minimum,0.001,1.0,minimum\n"
    )
    app = ExplorerApp(sweep=out)

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen), "sweep", 10)
            sweep = app.screen
            for key in ("escape", "b"):
                await pilot.press("enter")
                await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen), "replay", 30)
                assert app.screen.check_action("back", ()) is True
                await pilot.press(key)
                await wait_for(pilot, lambda: app.screen is sweep, f"{key}: back", 10)
            assert app.is_running

    asyncio.run(scenario())


def test_replay_without_a_screen_beneath_offers_no_back():
    from explorer.app import ExplorerApp
    from explorer.screens.replay import ReplayScreen

    app = ExplorerApp(replay=load_session(ROOT / "sessions" / "symmetry_saddle"))

    async def scenario() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen), "replay", 10)
            screen = app.screen
            assert screen.check_action("back", ()) is False
            await pilot.press("escape")
            await pilot.pause(0.1)
            assert app.screen is screen

    asyncio.run(scenario())


def test_r_pauses_like_i_e_at_a_minimum_says_so_and_surgery_refreshes_the_inspector():
    from explorer.app import ExplorerApp
    from explorer.widgets.inspector import NeuronInspector

    app = ExplorerApp(config=parse_config(TINY_APP, "tiny"), show_clock=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await start_run(pilot, "running")
            await pilot.press("r")  # while running: pauses by itself, then refines
            await wait_for(pilot, lambda: screen.last_refine is not None, "refine", 120)
            assert screen.state == "paused"
            assert not any("pause first" in n for n in notes(app))
            _, spectrum, kind = screen.last_refine
            assert kind == "minimum" and spectrum.eigenvalues[0] > 0
            await wait_for(pilot, lambda: screen.state == "paused", "idle", 30)
            await pilot.press("e")
            await pilot.pause(0.1)
            await pilot.press("enter")
            await wait_for(
                pilot, lambda: any("no descent direction" in n for n in notes(app)), "e", 60
            )
            event = [e for e in screen.recorder.events if e["kind"] == "surgery"][-1]
            assert event["lambda_min"] > 0
            await wait_for(pilot, lambda: screen.state == "paused", "idle after e", 30)
            await pilot.press("i")
            await wait_for(pilot, lambda: screen.last_inspection is not None, "inspect", 60)
            inspector = screen.query_one(NeuronInspector)
            assert len(inspector.result.neurons) == 1
            await pilot.press("x")
            await pilot.pause(0.1)
            await pilot.press("enter")  # split the selected neuron, μ = 0.5
            await wait_for(pilot, lambda: screen.run.spec.widths == (2,), "split", 60)
            # The inspector follows the new point without pressing i again.
            await wait_for(
                pilot, lambda: len(inspector.result.neurons) == 2, "inspector refresh", 60
            )
            assert inspector.query_one("#inspector-table").row_count == 2

    asyncio.run(scenario())


def test_replay_inspector_down_moves_the_selection_and_cells_say_what_they_hold():
    """Down picks the next neuron without Tab; the norm column says it includes b; a keeps
    its decimals; empty roles read "–"; the heatmap states its scale."""
    import numpy as np

    from core.analysis import RESPONSE_EXTENT, RESPONSE_POINTS_2D, neuron_response
    from explorer.app import ExplorerApp
    from explorer.widgets.inspector import NORM_WITH_BIAS, NeuronInspector

    session = load_session(ROOT / "sessions" / "symmetry_saddle")
    app = ExplorerApp(replay=session)

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await replay_ready(pilot)
            await pilot.press("home", "i")
            await wait_for(pilot, lambda: screen.last_inspection is not None, "inspect", 60)
            await pilot.pause(0.2)
            inspector = screen.query_one(NeuronInspector)
            table = inspector.query_one("#inspector-table")
            assert not table.has_focus and table.cursor_row == 0
            await pilot.press("down")
            await pilot.pause(0.2)
            assert table.cursor_row == 1
            heat = str(inspector.query_one("#inspector-heatmap").render())
            assert heat.startswith("neuron 1:")
            grid = np.linspace(-RESPONSE_EXTENT, RESPONSE_EXTENT, RESPONSE_POINTS_2D)
            points = np.stack(np.meshgrid(grid, grid), axis=-1)
            seg = session.segments[0]
            r = neuron_response(seg.spec, seg.theta[0], 1, points)
            assert f"densest = |v| {np.max(np.abs(r)):.3g}; range {r.min():.3g}…" in heat
            labels = [str(c.label) for c in table.columns.values()]
            assert NORM_WITH_BIAS in labels and "‖w‖" not in labels
            a_cell = str(table.get_cell_at((0, labels.index("a"))))
            assert "." in a_cell
            roles = [str(table.get_cell_at((k, labels.index("role")))) for k in range(2)]
            assert all(roles)
            await pilot.press("up")
            await pilot.pause(0.1)
            assert table.cursor_row == 0

    asyncio.run(scenario())


def test_neuron_cells_keep_decimals_and_name_an_empty_role():
    from core.analysis import NeuronInfo
    from explorer.widgets.inspector import COLUMNS, neuron_row

    n = NeuronInfo(0, [1.0, -2.0], 0.5, [12.0], 2.0, None, None, "")
    cells = dict(zip(COLUMNS, neuron_row(n), strict=True))
    assert cells["a"] == "12.0" and cells["‖w‖"] == "2.00" and cells["role"] == "–"
    assert neuron_row(NeuronInfo(1, [0.3], None, [1.0], 0.3, 0, 1.0, "copy"))[3] == "1.00"


def test_setup_validates_a_teacher_file_on_entry(tmp_path):
    """teacher.kind = "file" with a path to a file that is no teacher: the field says so at
    once and Run stays disabled (it used to fail only after Run)."""
    from textual.widgets import Button, Input, Select

    from explorer.app import ExplorerApp
    from explorer.screens.setup import SetupScreen, error_id, widget_id

    not_npz = tmp_path / "notes.txt"
    not_npz.write_text("not a teacher")
    app = ExplorerApp()

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen), "setup", 10)
            screen = app.screen
            screen.query_one("#" + widget_id("teacher.kind"), Select).value = "file"
            await pilot.pause(0.1)
            screen.query_one("#" + widget_id("teacher.path"), Input).value = str(not_npz)
            await pilot.pause(0.2)
            error = str(screen.query_one("#" + error_id("teacher.path")).render())
            assert "not an .npz archive" in error
            assert screen.query_one("#run", Button).disabled
            screen.query_one("#" + widget_id("teacher.path"), Input).value = str(
                tmp_path / "missing.npz"
            )
            await pilot.pause(0.2)
            assert "file not found" in str(
                screen.query_one("#" + error_id("teacher.path")).render()
            )

    asyncio.run(scenario())


def test_a_long_error_is_whole_in_the_log_and_the_status_says_where():
    from textual.widgets import RichLog

    from explorer.app import ExplorerApp
    from explorer.messages import FlowFailed

    cfg = parse_config(TINY_APP, "tiny")
    app = ExplorerApp(config=cfg, show_clock=False, autostart=False)
    long = "solver failure at t = 12.5: " + "the step size underflowed " * 8 + "[end]"

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await start_run(pilot, "paused", config=cfg)
            screen.post_message(FlowFailed(long, "", screen._segment))
            await wait_for(pilot, lambda: screen.state == "error", "error", 10)
            await pilot.pause(0.3)
            status = str(screen.query_one("#status").render())
            assert "l: full text in Log" in status and long not in status
            await pilot.press("l")  # the Log tab
            await pilot.pause(0.3)
            log = screen.query_one("#event-log", RichLog)
            text = " ".join("".join(seg.text for seg in line) for line in log.lines)
            assert "[end]" in text and "underflowed the step" in text.replace("  ", " ")

    asyncio.run(scenario())


def test_replay_inside_a_channel_phase_names_the_forming_pair():
    """channel_to_infinity: from t ≈ 264 the phase is a channel (core.phases), but the
    static criteria confirm the pair only near the end; in between the inspector gave the
    two neurons an empty role."""
    import numpy as np

    from core.analysis import FORMING_CHANNEL_ROLE, Inspection, mark_forming_channels
    from core.phases import session_phases
    from explorer.app import ExplorerApp

    session = load_session(ROOT / "sessions" / "channel_to_infinity")
    (channel,) = [p for p in session_phases(session) if p.kind == "channel"]
    seg = session.segments[0]
    k = int(np.searchsorted(seg.t, 1e4))  # inside the phase, before the static criteria hold
    assert channel.t_start < seg.t[k] < 1e7
    app = ExplorerApp(replay=session)

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await replay_ready(pilot)
            screen.position = k
            screen.action_inspect()
            await wait_for(pilot, lambda: screen.last_inspection is not None, "inspect", 60)
            ins = screen.last_inspection
            assert not ins.channels
            assert [n.role for n in ins.neurons] == [FORMING_CHANNEL_ROLE] * 2
            assert "form the channel confirmed at t=1e+09" in ins.note

    asyncio.run(scenario())
    empty = Inspection(0.0, "t=0", [], [])
    assert mark_forming_channels(empty, [], 1.0, phases=[channel]) is empty  # nothing ahead


def test_a_forming_pair_is_named_beside_a_confirmed_one_and_only_inside_its_phase():
    """The forming role is core's decision (core.analysis.mark_forming_channels): the state
    and the confirming state must lie in one channel phase; a state that confirms one pair
    itself still gets the other pair ahead marked forming (it used to return unchanged as
    soon as the state had a channel of its own, leaving the second pair's role empty)."""
    from core.analysis import FORMING_CHANNEL_ROLE, Channel, Inspection, NeuronInfo
    from core.analysis import mark_forming_channels as mark
    from core.phases import Phase

    def channel(i, j):
        return Channel((i, j), 0.1, 1.0, 2.0, [1.0], [1.0], 1e-3, "softplus")

    neurons = [
        NeuronInfo(i, [1.0], None, [(-1.0) ** i], 1.0, None, None, "channel" if i < 2 else "")
        for i in range(5)
    ]
    ins = Inspection(10.0, "t=10: 5 neurons, 1 channel", neurons, [channel(0, 1)])
    ahead = [channel(0, 1), channel(2, 3)]
    phases = [
        Phase("descent", 0.0, 5.0, 1.0, None, ""),
        Phase("channel", 5.0, 100.0, 0.1, None, ""),
    ]
    marked = mark(ins, ahead, 100.0, phases=phases)
    assert [n.role for n in marked.neurons] == ["channel"] * 2 + [FORMING_CHANNEL_ROLE] * 2 + [""]
    assert marked.note.endswith("neurons 2+3 form the channel confirmed at t=100")
    assert marked.channels == ins.channels  # core's detection at t is not rewritten
    # Outside the phase (the descent before it), or ahead of another phase: nothing guessed.
    before = Inspection(2.0, "t=2", neurons, [channel(0, 1)])
    assert mark(before, ahead, 100.0, phases=phases) is before
    assert mark(ins, ahead, 200.0, phases=phases) is ins
    assert mark(ins, ahead, 100.0, phases=[Phase("plateau", 5.0, 100.0, 0.1, 1, "")]) is ins
    # Every pair ahead confirmed here already: unchanged.
    assert mark(ins, [channel(0, 1)], 100.0, phases=phases) is ins
