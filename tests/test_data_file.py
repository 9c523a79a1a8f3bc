"""Your own data: ``[data] kind = "file"`` (core.datafile, core.config, core.problem).

Every validation error names its field on one line; a run goes end to end through the CLI
on a config in tmp_path; the losses are re-derived here with numpy from the file's arrays
(MSE, cross-entropy from labels and from one-hot rows, the teacher labelling x); sessions
record the data's SHA-256 and refuse a changed file; the no-teacher paths (report,
analysis, narration, views, figures, the app's replay and run screens) say "none" and do
not crash.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import sync, wait_for

import core  # noqa: F401  (float64)
from core.config import ConfigError, config_to_dict, load_config, parse_config
from core.networks import forward
from core.problem import build_problem

MSE_CONFIG = """\
seed = 1

[student]
widths = [2]
activation = "tanh"

[data]
kind = "file"
path = "data.npz"

[dynamics]
t_max = 200.0
n_saves = 30
max_seconds = 60

[refine]
method = "newton"
"""


def _arrays(n: int = 60, d: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.tanh(x @ rng.normal(size=(d, 1))) + 0.1 * rng.normal(size=(n, 1))
    return x, y


def _write(folder: Path, name: str = "data.npz", **arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    np.savez(p, **arrays)
    return p


def _cfg(folder: Path, data: dict, teacher: dict | None = None, **tables) -> dict:
    out = {
        "seed": 1,
        "student": {"widths": [2], "activation": "tanh"},
        "data": {"kind": "file", "path": "data.npz", **data},
        "dynamics": {"t_max": 100.0, "max_seconds": 60},
        **tables,
    }
    if teacher is not None:
        out["teacher"] = teacher
    return out


def _error(mapping: dict, folder: Path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse_config(mapping, str(folder / "c.toml"), base_dir=folder)
    assert "\n" not in str(err.value)
    return err.value


# ----------------------------------------------------------------------------- parsing


def test_relative_path_resolves_against_the_config_and_records_n_and_the_hash(
    tmp_path, monkeypatch
):
    x, y = _arrays()
    p = _write(tmp_path / "sub", x=x, y=y)
    (tmp_path / "sub" / "c.toml").write_text(MSE_CONFIG)
    monkeypatch.chdir(tmp_path)  # not the config's folder
    cfg = load_config(tmp_path / "sub" / "c.toml")
    assert cfg.data.path == str(p.resolve())
    assert cfg.data.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert cfg.data.samples == 60
    assert cfg.teacher.kind == "none" and not cfg.teacher.is_network
    assert (cfg.teacher.input_dim, cfg.teacher.output_dim) == (2, 1)
    # the TOML mapping round-trips (sessions store it), from anywhere
    assert parse_config(config_to_dict(cfg), "again.toml") == cfg
    assert config_to_dict(cfg)["teacher"] == {"kind": "none", "input_dim": 2, "output_dim": 1}


def _fifo(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "data.npz")


def _symlink(folder: Path) -> None:
    x, y = _arrays()
    real = _write(folder, "real.npz", x=x, y=y)
    (folder / "data.npz").symlink_to(real)


def _not_npz(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.npz").write_bytes(b"x,y\n1,2\n")


def _pickled(folder: Path) -> None:
    x, _ = _arrays()
    _write(folder, x=x, y=np.array([{"a": 1}] * 60, dtype=object))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "file not found"),
        (_fifo, "not a regular file"),
        (_symlink, "symbolic link"),
        (_not_npz, "not an .npz"),
        (_pickled, "pickles"),
        (lambda f: _write(f, y=_arrays()[1]), "missing array 'x'"),
        (lambda f: _write(f, x=_arrays()[0], labels=np.zeros(60)), "unexpected array 'labels'"),
        (lambda f: _write(f, x=np.zeros(60), y=np.zeros(60)), "array 'x' has shape [60]"),
        (lambda f: _write(f, x=np.zeros((0, 2)), y=np.zeros(0)), "N, d ≥ 1"),
        (lambda f: _write(f, x=np.full((60, 2), np.nan), y=np.zeros(60)), "'x' contains NaN"),
        (lambda f: _write(f, x=np.zeros((60, 2)), y=np.full(60, np.inf)), "'y' contains NaN"),
        (lambda f: _write(f, x=np.zeros((60, 2)), y=np.zeros(59)), "one row per row of x"),
        (lambda f: _write(f, x=np.array([["a", "b"]] * 60), y=np.zeros(60)), "dtype"),
    ],
)
def test_file_errors_name_data_path(tmp_path, make, message):
    if make is not None:
        make(tmp_path)
    err = _error(_cfg(tmp_path, {}), tmp_path)
    assert err.field == "data.path"
    assert message in err.message, err.message


def test_size_limit(tmp_path, monkeypatch):
    import core.datafile

    x, y = _arrays()
    _write(tmp_path, x=x, y=y)
    monkeypatch.setattr(core.datafile, "MAX_DATA_FILE_BYTES", 1000)
    err = _error(_cfg(tmp_path, {}), tmp_path)
    assert err.field == "data.path" and "1000-byte limit" in err.message


@pytest.mark.parametrize(
    ("data", "teacher", "field", "message"),
    [
        ({"path": None}, None, "data.path", "required"),
        ({"path": 3}, None, "data.path", "must be a file name"),
        ({"sha256": "0" * 64}, None, "data.path", "has changed since"),
        ({"sha256": 5}, None, "data.sha256", "hex string"),
        ({}, {"kind": "random", "input_dim": 2}, "data.path", "omit the [teacher] table"),
        ({}, {"kind": "none", "input_dim": 3}, "teacher.input_dim", "x's 2 columns"),
        ({}, {"kind": "none", "output_dim": 2}, "data.path", "expected (60, 2)"),
        ({}, {"kind": "none", "widths": [3]}, "teacher.widths", "not used by kind = 'none'"),
    ],
)
def test_config_errors_name_the_field(tmp_path, data, teacher, field, message):
    x, y = _arrays()
    _write(tmp_path, x=x, y=y)
    mapping = _cfg(tmp_path, {k: v for k, v in data.items() if v is not None}, teacher)
    if data.get("path", "") is None:
        del mapping["data"]["path"]
    err = _error(mapping, tmp_path)
    assert err.field == field, str(err)
    assert message in err.message, err.message


def test_x_only_needs_a_teacher_of_matching_input_dim(tmp_path):
    x, _ = _arrays(d=3)
    _write(tmp_path, x=x)
    for teacher in (None, {"kind": "random", "input_dim": 2}):  # None: the default, d = 2
        err = _error(_cfg(tmp_path, {}, teacher), tmp_path)
        assert err.field == "data.path" and "x has 3 columns" in err.message
    assert _error(_cfg(tmp_path, {}, {"kind": "none"}), tmp_path).field == "teacher.kind"


def test_path_only_for_kind_file(tmp_path):
    err = _error({"data": {"kind": "gaussian", "path": "data.npz"}}, tmp_path)
    assert err.field == "data.path" and "only used by kind = 'file'" in err.message


@pytest.mark.parametrize(
    ("y", "teacher", "message"),
    [
        (np.full(60, 0.5), None, "integers ≥ 0"),
        (np.full(60, -1.0), None, "integers ≥ 0"),
        (np.arange(60) % 3, {"kind": "none", "output_dim": 2}, "integers in [0, 2)"),
        (np.zeros(60), None, "≥ 2 classes"),
        (-np.ones((60, 3)), None, "must be ≥ 0"),
    ],
)
def test_crossentropy_label_errors(tmp_path, y, teacher, message):
    x, _ = _arrays()
    _write(tmp_path, x=x, y=y)
    data = {"loss": "crossentropy"}
    mapping = _cfg(tmp_path, data, teacher)
    mapping["student"]["output"] = "softmax"
    err = _error(mapping, tmp_path)
    assert err.field == "data.path", str(err)
    assert message in err.message, err.message


# ----------------------------------------------------------------------------- losses


def test_mse_on_the_file_is_the_mean_squared_error_of_its_rows(tmp_path):
    x, y = _arrays()
    _write(tmp_path, x=x, y=y)
    problem = build_problem(parse_config(_cfg(tmp_path, {}), base_dir=tmp_path))
    assert problem.teacher.kind == "none" and problem.spec.input_dim == 2
    theta = problem.theta0
    f = np.asarray(forward(problem.spec, jnp.asarray(theta), jnp.asarray(x)))
    expected = 0.5 * np.mean(np.sum((f - y) ** 2, axis=1))
    np.testing.assert_allclose(problem.objective.loss(theta), expected, rtol=1e-13)
    with pytest.raises(ValueError, match="no teacher"):
        problem.teacher(jnp.asarray(x))


def test_without_y_the_teacher_labels_x(tmp_path):
    x, _ = _arrays()
    _write(tmp_path, x=x)
    teacher = {"kind": "random", "input_dim": 2, "widths": [3]}
    problem = build_problem(parse_config(_cfg(tmp_path, {}, teacher), base_dir=tmp_path))
    np.testing.assert_array_equal(problem.data.x, x)
    np.testing.assert_allclose(problem.data.y, problem.teacher(jnp.asarray(x)), rtol=1e-15)


def _ce_problem(tmp_path, y, teacher=None):
    x, _ = _arrays()
    _write(tmp_path, x=x, y=y)
    mapping = _cfg(tmp_path, {"loss": "crossentropy"}, teacher)
    mapping["student"]["output"] = "softmax"
    return x, build_problem(parse_config(mapping, base_dir=tmp_path))


def test_crossentropy_with_file_labels_and_one_hot_rows(tmp_path):
    """L = −(1/N) Σ_n log softmax(f(x_n))[c_n] by hand; one-hot rows give the same loss,
    gradient and Hessian; K = largest label + 1, or teacher.output_dim when given."""
    labels = (np.arange(60) * 7) % 3
    x, problem = _ce_problem(tmp_path / "a", labels.astype(np.int64))
    assert problem.spec.output_dim == 3
    theta = jnp.asarray(problem.theta0)
    f = np.asarray(forward(problem.spec, theta, jnp.asarray(x)))
    logp = f - np.log(np.sum(np.exp(f), axis=1, keepdims=True))
    expected = -np.mean(logp[np.arange(60), labels])
    np.testing.assert_allclose(problem.objective.loss(theta), expected, rtol=1e-12)
    assert problem.fit_metrics(problem.spec, problem.theta0)["accuracy"] == pytest.approx(
        np.mean(np.argmax(f, axis=1) == labels)
    )
    _, hot = _ce_problem(tmp_path / "b", np.eye(3)[labels])
    for name in ("loss", "grad", "hessian"):
        a = np.asarray(getattr(problem.objective, name)(theta))
        b = np.asarray(getattr(hot.objective, name)(theta))
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    _, four = _ce_problem(tmp_path / "c", labels, {"kind": "none", "output_dim": 4})
    assert four.spec.output_dim == 4


def test_crossentropy_without_y_uses_the_teachers_argmax(tmp_path):
    teacher = {"kind": "random", "input_dim": 2, "widths": [3], "output_dim": 3}
    x, _ = _arrays()
    _write(tmp_path, x=x)
    mapping = _cfg(tmp_path, {"loss": "crossentropy"}, teacher)
    mapping["student"]["output"] = "softmax"
    problem = build_problem(parse_config(mapping, base_dir=tmp_path))
    c = np.argmax(np.asarray(problem.teacher(jnp.asarray(x))), axis=1)
    np.testing.assert_array_equal(np.asarray(problem.data.y), np.eye(3)[c])


# ----------------------------------------------------------------------------- sessions


@pytest.fixture
def file_session(tmp_path):
    """A file-data run through the CLI: (config path, session path)."""
    from explorer.cli import main

    x, y = _arrays()
    _write(tmp_path, x=x, y=y)
    cfg = tmp_path / "c.toml"
    cfg.write_text(MSE_CONFIG)
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    return cfg, out


def test_cli_run_report_and_replay_of_a_file_data_run(file_session, capsys):
    from core.runner import session_report
    from core.session import load_session
    from explorer.cli import main

    cfg_path, out = file_session
    session = load_session(out)
    assert session.config == load_config(cfg_path)
    report = session_report(session)
    assert report["teacher"] == {"kind": "none"}
    assert all(n["nearest_teacher"] is None for n in report["neurons"])
    # the stored loss is the file's MSE at the stored θ
    problem = build_problem(session.config)
    x, y = np.asarray(problem.data.x), np.asarray(problem.data.y)
    f = np.asarray(forward(session.final_spec, jnp.asarray(session.final_theta), x))
    np.testing.assert_allclose(session.final_loss, 0.5 * np.mean((f - y) ** 2), rtol=1e-10)
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rmse" in text and "teacher: none" in text
    png = out.parent / "f.png"
    assert main(["plot", str(out), "--out", str(png), "--view", "function"]) == 0
    assert png.stat().st_size > 0


def test_a_session_refuses_a_changed_data_file(file_session):
    from core.session import SessionError, load_session

    cfg_path, out = file_session
    data = cfg_path.parent / "data.npz"
    x, y = _arrays()
    np.savez(data, x=x, y=y + 1.0)  # same names and shapes, other values
    with pytest.raises(SessionError, match=r"data\.path: data\.npz has changed since"):
        load_session(out)
    np.savez(data, x=x, y=y)  # the same content again: the session loads
    load_session(out)
    os.remove(data)
    with pytest.raises(SessionError, match=r"data\.path: file not found"):
        load_session(out)


def test_build_problem_refuses_a_file_changed_after_parsing(tmp_path):
    x, y = _arrays()
    p = _write(tmp_path, x=x, y=y)
    cfg = parse_config(_cfg(tmp_path, {}), base_dir=tmp_path)
    np.savez(p, x=x, y=2 * y)
    with pytest.raises(ConfigError, match="has changed since"):
        build_problem(cfg)


# ----------------------------------------------------------------------------- no teacher


def test_no_teacher_views_analysis_and_narration(file_session):
    from core.analysis import analysis_inputs
    from core.narration import narrate_state
    from core.phases import session_phases
    from core.session import load_session
    from core.views import function_grid, function_line, weight_vectors, why_not

    _, out = file_session
    session = load_session(out)
    problem = build_problem(session.config)
    spec, theta, teacher = session.final_spec, session.final_theta, problem.teacher
    assert function_line(spec, theta, teacher)["teacher"] is None
    grid = function_grid(spec, theta, teacher)
    assert grid["teacher"] is None and grid["diff"] is None
    assert weight_vectors(spec, theta, teacher)["teacher"] is None
    for view in ("function", "weights", "slice"):
        assert why_not(view, spec, teacher) is None
    seg = session.final_segment
    text = narrate_state(
        problem.objective, teacher, seg.t, seg.theta, seg.loss, seg.grad_norm, -1,
        history_t=seg.t, history_loss=seg.loss, phases=session_phases(session),
    )  # fmt: skip
    assert text.lines and "teacher" not in " ".join(text.lines)
    assert analysis_inputs(problem.objective).shape == (60, 2)


@sync
async def test_app_replays_a_file_data_session_with_its_views_and_inspector(
    file_session, synchronous_plots
):
    from core.session import load_session
    from explorer.app import ExplorerApp
    from explorer.widgets.views import ViewPanel

    _, out = file_session
    app = ExplorerApp(replay=load_session(out))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.problem is not None, "problem rebuilt")
        for key in ("5", "6", "8"):
            await pilot.press(key)
            await pilot.pause(0.3)
            await app.workers.wait_for_complete()
        function = next(p for p in screen.query(ViewPanel) if p.view == "function")
        await wait_for(pilot, lambda: function.result is not None, "function view")
        assert function.result.data["line"]["teacher"] is None
        note = str(function.query_one(".view-note").render())
        assert "no teacher" in note and "teacher g" not in note
        await pilot.press("i")
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        assert not [n for n in app._notifications if n.severity == "error"]


@sync
async def test_app_runs_a_file_data_config_live(tmp_path, synchronous_plots):
    from explorer.app import ExplorerApp
    from explorer.screens.run import RunScreen

    x, y = _arrays()
    _write(tmp_path, x=x, y=y)
    p = tmp_path / "c.toml"
    p.write_text(MSE_CONFIG)
    app = ExplorerApp(config=load_config(p), config_path=p, show_clock=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "run screen", 20)
        screen = app.screen
        await wait_for(pilot, lambda: screen.state == "done", "run to t_max", 120)
        assert screen.problem.teacher.kind == "none"
        assert screen.problem.config.data.path == str(tmp_path / "data.npz")
        for key in ("5", "6", "i"):
            await pilot.press(key)
            await pilot.pause(0.3)
            await app.workers.wait_for_complete()
        assert not [n for n in app._notifications if n.severity == "error"]
