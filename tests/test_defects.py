"""Defects found by using the explorer (issue "for a classroom and for a long day's work",
item 5): one test per defect, each failing before its fix.

CLI and core first (cheap), then the app (pilot tests on tiny problems).
"""

from __future__ import annotations

import csv

import pytest
from conftest import TINY_CONFIG

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
    from explorer.sweep_runner import run_sweep

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
