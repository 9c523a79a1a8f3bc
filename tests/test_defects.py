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
