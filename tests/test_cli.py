"""explorer CLI and core.runner end to end on a tiny problem: run → report/export, errors
(exit 2, one line, nothing written), signal flushing, resume, reproducibility."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_CONFIG

from core.config import load_config
from core.flow import save_grid
from core.networks import flatten, forward
from core.problem import build_problem
from core.runner import RunInterrupted, dynamics_settings, run_config
from core.session import load_session
from explorer.cli import main

REFINE = "newton"


@pytest.fixture(scope="module")
def cli_session(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_CONFIG.replace('method = "none"', f'method = "{REFINE}"'))
    out = root / "session"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    return cfg, out


def run_cli(capsys, *argv):
    rc = main(list(map(str, argv)))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def reference_loss_and_hessian(problem, theta):
    """½ mean squared error and its Hessian by plain jax autodiff (independent of Objective)."""
    x, y = jnp.asarray(problem.data.x), jnp.asarray(problem.data.y)

    def loss(th):
        return 0.5 * jnp.mean(jnp.sum((forward(problem.spec, th, x) - y) ** 2, axis=1))

    th = jnp.asarray(theta)
    return float(jax.jit(loss)(th)), np.asarray(jax.jit(jax.hessian(loss))(th))


def test_report_json_has_every_contract_field(cli_session, capsys):
    cfg_path, out = cli_session
    rc, text, err = run_cli(capsys, "report", out, "--json")
    assert rc == 0, err
    rep = json.loads(text)
    for key in ("t", "loss", "grad_inf_norm", "params"):
        assert key in rep["final"]
    for key in ("eigenvalues", "index", "tol"):
        assert key in rep["spectrum"]
    for key in ("refined", "classification", "channels", "neurons", "teacher", "wall_seconds"):
        assert key in rep
    assert rep["classification"] in ("minimum", "saddle", "channel", "unconverged")
    assert rep["final"]["t"] == pytest.approx(100.0)
    w = rep["final"]["params"]
    assert np.shape(w["w1"]) == (2, 2) and np.shape(w["w2"]) == (1, 2)  # out×in
    assert np.shape(rep["teacher"]["params"]["w1"]) == (2, 2)
    assert len(rep["neurons"]) == 2
    for n in rep["neurons"]:
        assert {"w", "a", "nearest_teacher", "cosine"} <= set(n)
    assert rep["wall_seconds"] > 0

    problem = build_problem(load_config(cfg_path))
    theta_final = np.asarray(flatten(problem.spec, w))
    ref_loss, _ = reference_loss_and_hessian(problem, theta_final)
    assert rep["final"]["loss"] == pytest.approx(ref_loss, rel=1e-10)
    point = theta_final
    assert rep["refined"] is not None
    point = np.asarray(flatten(problem.spec, rep["refined"]["params"]))
    if rep["refined"]["converged"]:
        assert rep["refined"]["grad_inf_norm"] < 1e-8
    _, hess = reference_loss_and_hessian(problem, point)
    eig = np.asarray(rep["spectrum"]["eigenvalues"])
    assert np.all(np.diff(eig) >= 0)
    np.testing.assert_allclose(eig, np.linalg.eigvalsh(hess), atol=1e-8 * max(1, abs(eig).max()))
    assert rep["spectrum"]["index"] == int(np.sum(eig < -rep["spectrum"]["tol"]))

    rc, text, _ = run_cli(capsys, "report", out)  # human-readable form
    assert rc == 0 and "classification:" in text


def test_export_writes_parseable_csv(cli_session, capsys, tmp_path):
    _, out = cli_session
    session = load_session(out)
    n_states = sum(len(s) for s in session.segments)
    rc, _, err = run_cli(capsys, "export", out, "--csv", tmp_path / "csv")
    assert rc == 0, err
    with open(tmp_path / "csv" / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_states
    t = np.array([float(r["t"]) for r in rows])
    np.testing.assert_array_equal(t, session.segments[0].t)  # repr: exact round trip
    with open(tmp_path / "csv" / "neurons.csv") as f:
        neurons = list(csv.DictReader(f))
    assert len(neurons) == 2 * n_states
    last = [r for r in neurons if float(r["t"]) == session.final_t]
    w1 = np.array([[float(r["w_0"]), float(r["w_1"])] for r in last])
    np.testing.assert_array_equal(w1, session.final_theta[:4].reshape(2, 2))
    with open(tmp_path / "csv" / "spectrum.csv") as f:
        spectrum = list(csv.DictReader(f))
    assert len(spectrum) == 9 * len(session.spectra)
    assert [s.label for s in session.spectra][-2:] == ["final", "refined"]
    assert {r["label"] for r in spectrum} == {"trajectory", "final", "refined"}
    # a .csv file name: loss there, the others beside it; never overwrite
    rc, _, _ = run_cli(capsys, "export", out, "--csv", tmp_path / "run.csv")
    assert rc == 0 and (tmp_path / "run_spectrum.csv").is_file()
    assert (tmp_path / "run_neurons.csv").is_file()
    rc, _, err = run_cli(capsys, "export", out, "--csv", tmp_path / "run.csv")
    assert rc == 2 and "exists; refusing to overwrite" in err


def test_run_records_log_spaced_spectra_along_the_trajectory(cli_session):
    """Replays plot λmin/λmax over time from these: each is the sorted spectrum of
    jax.hessian at the saved state of its t, at exactly core.spectra's times."""
    from core.flow import save_grid
    from core.runner import dynamics_settings
    from core.spectra import spectrum_times

    cfg, out = cli_session
    session = load_session(out)
    problem = build_problem(load_config(cfg))
    seg = session.segments[0]
    snaps = [s for s in session.spectra if s.label == "trajectory"]
    assert len(snaps) >= 5
    ts = np.array([s.t for s in snaps])
    settings = dynamics_settings(load_config(cfg).dynamics, seg.theta.shape[1])
    expected = spectrum_times(save_grid(settings), seg.theta.shape[1])
    np.testing.assert_array_equal(ts, [0.0, *expected[expected <= seg.t[-1]]])
    hess = jax.jit(jax.hessian(problem.objective.loss))
    for snap in snaps[:: max(1, len(snaps) // 4)]:
        (j,) = np.flatnonzero(seg.t == snap.t)
        ref = np.linalg.eigvalsh(np.asarray(hess(jnp.asarray(seg.theta[j]))))
        np.testing.assert_allclose(snap.eigenvalues, ref, rtol=1e-8, atol=1e-10 * np.abs(ref).max())


def test_rerun_of_saved_config_reproduces_trajectory(cli_session, tmp_path):
    _, out = cli_session
    original = load_session(out)
    cfg = load_config(out / "config.toml")
    assert cfg == original.config
    again = load_session(run_config(cfg, tmp_path / "again"))
    a, b = original.segments[0], again.segments[0]
    # The save grid is reproducible; rows between grid points are progress reports of a
    # chunk that ran out of its wall-clock-adapted step budget, so they depend on load.
    grid = np.concatenate([[0.0], save_grid(dynamics_settings(cfg.dynamics, a.theta.shape[1]))])
    on_a, on_b = np.isin(a.t, grid), np.isin(b.t, grid)
    np.testing.assert_array_equal(a.t[on_a], grid)
    np.testing.assert_array_equal(b.t[on_b], grid)
    np.testing.assert_allclose(a.theta[on_a], b.theta[on_b], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.loss[on_a], b.loss[on_b], rtol=1e-12)


BAD_CONFIGS = [
    ("[student]\nwidths = [0]\n", "student.widths: must be a list of positive integers"),
    ("[dynamics]\nt_max = 1e12\n", "dynamics.t_max: must be ≤ 1e+10"),
    ("[data]\nsampels = 100\n", "data.sampels: unknown key; did you mean 'samples'?"),
    ("seed = [\n", "invalid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_run_config_errors_exit_2_nothing_written(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "run", cfg, "--out", out)
    assert rc == 2
    assert err.count("\n") == 1 and f"{cfg}: " in err and message in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_cli_refuses_to_clobber_and_reports_bad_sessions(tmp_path, capsys, tiny_config_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    rc, _, err = run_cli(capsys, "run", tiny_config_path, "--out", precious)
    assert rc == 2 and "not a session folder; refusing to overwrite" in err
    assert [p.name for p in precious.iterdir()] == ["data.txt"]
    for cmd in (["report", precious, "--json"], ["export", precious, "--csv", tmp_path / "x"]):
        rc, _, err = run_cli(capsys, *cmd)
        assert rc == 2 and err.strip().endswith("not a session folder (no meta.json)"), err
        assert err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    rc, _, err = run_cli(capsys, "replay", tmp_path / "missing")
    assert rc == 2 and "missing: not found" in err
    rc, _, err = run_cli(capsys, "run", tiny_config_path)  # --out is required
    assert rc == 2 and "--out" in err and err.count("\n") == 1
    rc, _, err = run_cli(capsys, "frobnicate.toml")  # the app on a missing config
    assert rc == 2 and "frobnicate.toml: file not found" in err


def test_sigterm_flushes_session_then_resume_finishes(tmp_path, tiny_config_path):
    cfg = load_config(tiny_config_path)
    out = tmp_path / "s"
    sent = []

    def progress(chunk):
        if not sent and len(chunk.t) and chunk.t[-1] > 0:
            sent.append(float(chunk.t[-1]))
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(RunInterrupted) as info:
        run_config(cfg, out, progress=progress)
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    s = load_session(out)
    assert s.summary["stop_reason"] == "interrupted" and s.events[-1]["kind"] == "interrupted"
    assert s.events[-1]["signal"] == "SIGTERM" and s.report is None
    assert s.final_t == pytest.approx(sent[0]) and s.final_t < 100.0

    resumed = load_session(run_config(cfg, tmp_path / "r", resume=out))
    seg = resumed.segments[0]
    assert seg.t[-1] == pytest.approx(100.0) and np.all(np.diff(seg.t) > 0)
    n = len(s.segments[0])
    np.testing.assert_array_equal(seg.theta[:n], s.segments[0].theta)  # history kept
    assert [e["kind"] for e in resumed.events][:2] == ["interrupted", "resume"]
    assert resumed.report is not None and resumed.report["final"]["t"] == pytest.approx(100.0)


@pytest.mark.slow
def test_subprocess_sigterm_exit_code_and_session(tmp_path):
    """The real console entry point: SIGTERM mid-run → exit 143 and a loadable session."""
    cfg = tmp_path / "long.toml"
    cfg.write_text(
        TINY_CONFIG.replace("t_max = 100.0", "t_max = 1e9").replace(
            "n_saves = 20", "n_saves = 2000"
        )
    )
    out = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "explorer", "run", str(cfg), "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    deadline = time.time() + 120
    while not (out / "meta.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted: session saved" in err
    assert load_session(out).events[-1]["kind"] == "interrupted"


TEACHER_STUDENT = """
seed = 2
[teacher]
kind = "random"
input_dim = 2
widths = [3]
activation = "softplus"
bias = false
[student]
widths = [3]
activation = "softplus"
bias = false
[data]
kind = "gaussian"
samples = 200
[dynamics]
t_max = 1e10
rtol = 1e-3
atol = 1e-6
max_seconds = 120
"""


def test_run_hands_over_to_refinement_before_t_max(tmp_path, capsys):
    """`explorer run` with no [refine] table (method auto) on a softplus teacher-student
    problem: the flow hands over to refinement long before t_max and the run ends at an
    exact critical point — the one the flow itself reaches at t_max — in fewer solver steps."""
    import dataclasses

    from core.flow import run_to_end
    from core.refine import refine

    cfg_path, out = tmp_path / "ts.toml", tmp_path / "ts"
    cfg_path.write_text(TEACHER_STUDENT)
    assert main(["run", str(cfg_path), "--out", str(out), "--quiet"]) == 0
    rc, text, _ = run_cli(capsys, "report", out, "--json")
    assert rc == 0
    rep = json.loads(text)
    refined = rep["refined"]
    assert rep["stop_reason"] == "refined" and refined["handed_over"], rep["stop_reason"]
    assert refined["converged"] and refined["grad_inf_norm"] < 1e-12
    assert rep["final"]["t"] < 1e-3 * 1e10 and rep["classification"] == "minimum"
    session = load_session(out)
    (event,) = [e for e in session.events if e["kind"] == "refine"]
    assert event["t"] == rep["final"]["t"] and event["handed_over"] and event["converged"]

    # Independently: the flow alone to t_max (no grad_tol stop), then refined there.
    cfg = load_config(cfg_path)
    problem = build_problem(cfg)
    settings = dataclasses.replace(
        dynamics_settings(cfg.dynamics, problem.spec.n_params), grad_tol=0.0
    )
    full = run_to_end(problem.objective, problem.theta0, settings)
    assert full.t[-1] == 1e10 and full.steps > session.summary["steps"]
    end = refine(problem.objective, full.theta[-1])
    theta = np.asarray(flatten(problem.spec, refined["params"]))
    np.testing.assert_allclose(theta, end.theta, rtol=0, atol=1e-8)
    loss, grad = problem.objective.value_and_grad(jnp.asarray(theta))
    assert float(np.max(np.abs(np.asarray(grad)))) < 1e-12
    assert float(loss) == pytest.approx(refined["loss"], rel=1e-6, abs=1e-30)


def test_run_outcome_does_not_depend_on_the_wall_clock(tmp_path, monkeypatch):
    """`explorer run` twice, the second time with a wall clock running 20× fast (what a
    loaded machine looks like to every timer): other chunks, the same hand-over, end point,
    classification and refine event."""
    cfg_path = tmp_path / "ts.toml"
    cfg_path.write_text(TEACHER_STUDENT)
    cfg = load_config(cfg_path)

    def outcome(out):
        session = load_session(run_config(cfg, out))
        keys = ("kind", "t", "method", "converged", "iterations", "handed_over")
        events = [tuple(e.get(k) for k in keys) for e in session.events]
        rep = session.report
        return rep, events, session.final_segment

    calm, calm_events, calm_seg = outcome(tmp_path / "calm")
    start, real = time.perf_counter(), time.perf_counter

    def fast():
        return start + 20.0 * (real() - start)

    monkeypatch.setattr(time, "perf_counter", fast)
    monkeypatch.setattr(time, "monotonic", fast)
    busy, busy_events, busy_seg = outcome(tmp_path / "busy")
    monkeypatch.undo()

    assert calm["stop_reason"] == busy["stop_reason"] == "refined"
    assert busy_events == calm_events and any(e[0] == "refine" for e in calm_events)
    assert busy["refined"]["params"] == calm["refined"]["params"]  # bit for bit
    assert busy["final"]["t"] == calm["final"]["t"]
    assert busy["classification"] == calm["classification"] == "minimum"
    grid = save_grid(dynamics_settings(cfg.dynamics))
    on_busy, on_calm = np.isin(busy_seg.t, grid), np.isin(calm_seg.t, grid)
    np.testing.assert_array_equal(busy_seg.theta[on_busy], calm_seg.theta[on_calm])
