"""Parity with MLPGradientFlow.jl: its activation names, and the cases of its test suite
(``test/runtests.jl``: "loss", "gradient", "hessian", the ``maxnorm`` barrier,
"crossentropy", "standard normal input") carried over as cases, checked against autodiff.

MLPGradientFlow's conventions differ in two places, so the cases compare with autodiff of
*this* project's definitions: the MSE loss here is ½·mean‖r‖² (there mean‖r‖²), and the
barrier here is ½ Σ_p max(0, |θ_p| − maxnorm)² (there (‖θ‖ − maxnorm)³/3 on a weight norm).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.config import config_to_dict, config_to_toml, default_config, parse_config
from core.session import SCHEMA_VERSION, SessionRecorder, load_session, save_session


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ------------------------------------------------------------------ activation names


def test_configs_store_canonical_names() -> None:
    d = config_to_dict(default_config())
    d["teacher"]["activation"] = "sigmoid2"
    d["student"]["activation"] = "linear"
    cfg = parse_config(d)
    assert cfg.teacher.activation == "erf" and cfg.student.activation == "identity"
    d["student"]["activation"] = "g"
    assert parse_config(d).student_spec().activations == (("g",) * 3,)


def _session_with(tmp_path, activation: str, schema: int | None = None):
    """A saved session whose config (meta.json and config.toml) names ``activation``,
    its meta.json's schema rewritten to ``schema`` (an older program's session)."""
    d = config_to_dict(default_config())
    d["teacher"]["activation"] = "erf"
    d["student"]["activation"] = "erf"
    cfg = parse_config(d)
    spec = cfg.student_spec()
    rec = SessionRecorder(cfg, spec)
    rec.append([0.0, 1.0], np.zeros((2, spec.n_params)), [1.0, 0.5], [1.0, 0.1])
    path = save_session(tmp_path / f"s_{activation}_{schema}", rec.to_session())
    meta = json.loads((path / "meta.json").read_text())
    for table in ("teacher", "student"):
        meta["config"][table]["activation"] = activation
    if schema is not None:
        meta["schema"] = schema
    (path / "meta.json").write_text(json.dumps(meta))
    toml = (path / "config.toml").read_text()
    assert toml.count('activation = "erf"') == 2
    (path / "config.toml").write_text(toml.replace('"erf"', f'"{activation}"'))
    return path


def test_old_sessions_keep_g_meaning_erf(tmp_path) -> None:
    """Before schema 3, ``g`` was an alias of erf: such a session still computes with erf,
    and saving it again stores the canonical name."""
    assert SCHEMA_VERSION >= 3
    old = load_session(_session_with(tmp_path, "g", schema=2))
    assert old.config.teacher.activation == "erf" and old.config.student.activation == "erf"
    assert old.config.student_spec().activations == (("erf",) * 3,)
    again = save_session(tmp_path / "again", old)
    meta = json.loads((again / "meta.json").read_text())
    assert meta["schema"] == SCHEMA_VERSION
    assert meta["config"]["student"]["activation"] == "erf"
    assert 'activation = "erf"' in (again / "config.toml").read_text()
    # a current session naming g means MLPGradientFlow's g
    new = load_session(_session_with(tmp_path, "g"))
    assert new.config.student_spec().activations == (("g",) * 3,)
    assert 'activation = "g"' in config_to_toml(new.config)


# ------------------------------------------------------------- one activation per layer


def _mapping(**student) -> dict:
    d = config_to_dict(default_config())
    d["student"] = {k: v for k, v in d["student"].items() if k != "activation"} | student
    return d


def test_activations_one_per_hidden_layer() -> None:
    """MLPGradientFlow's ((4, sigmoid, bias), (2, identity, no bias), (2, g, bias), …) nets:
    ``activations`` names each hidden layer (or, as a list, each neuron of it)."""
    d = _mapping(widths=[4, 2, 3], activations=["sigmoid", "id", ["tanh", "relu", "g"]])
    d["teacher"] |= {"widths": [3, 2], "activations": ["g", "sigmoid2"]}
    d["teacher"].pop("activation")
    cfg = parse_config(d)
    assert cfg.student.activation is None
    assert cfg.student_spec().activations == (
        ("sigmoid",) * 4,
        ("identity",) * 2,
        ("tanh", "relu", "g"),
    )
    assert cfg.teacher.spec().activations == (("g",) * 3, ("erf",) * 2)
    back = config_to_dict(cfg)
    assert back["student"]["activations"] == ["sigmoid", "identity", ["tanh", "relu", "g"]]
    assert "activation" not in back["student"] and "activation" not in back["teacher"]
    assert parse_config(back) == cfg
    from core.problem import build_problem

    problem = build_problem(cfg)
    assert problem.teacher.spec.activations == cfg.teacher.spec().activations
    assert problem.spec.widths == (4, 2, 3) and problem.theta0.shape == (problem.spec.n_params,)


@pytest.mark.parametrize(
    ("student", "field", "message"),
    [
        (
            {"widths": [3, 2], "activations": ["tanh"]},
            "student.activations",
            r"one activation per hidden layer \(2 for student.widths = \[3, 2\]\), got 1 entries",
        ),
        (
            {"widths": [3], "activations": ["tanh"], "activation": "tanh"},
            "student.activations",
            "student.activation or student.activations, not both",
        ),
        (
            {"widths": [3, 2], "activations": ["tanh", ["relu"]]},
            r"student.activations\[1\]",
            "per-neuron list has 1 names for 2 neurons",
        ),
        (
            {"widths": [3, 2], "activations": ["tanh", "swish"]},
            r"student.activations\[1\]",
            "unknown activation 'swish'",
        ),
        ({"widths": [3], "activations": "tanh"}, "student.activations", "got 'tanh'"),
    ],
)
def test_activations_errors_name_the_field(student, field, message) -> None:
    from core.config import ConfigError

    with pytest.raises(ConfigError, match=f"^cfg.toml: {field}: .*{message}") as info:
        parse_config(_mapping(**student), "cfg.toml")
    assert "\n" not in str(info.value)


def test_teacher_activations_only_for_networks() -> None:
    from core.config import ConfigError

    d = config_to_dict(default_config())
    d["teacher"] = {"kind": "orthonormal", "input_dim": 3, "widths": [2], "bias": False}
    d["teacher"]["activations"] = ["erf"]
    with pytest.raises(ConfigError, match=r"teacher\.activations: only for kind"):
        parse_config(d, "cfg.toml")


# ------------------------------------------------------------------ RMSE beside the loss


def test_rmse_beside_the_loss_in_reports() -> None:
    """rmse = √(mean over samples and outputs of r²), MLPGradientFlow's RMSE; with the
    loss ½·mean‖r‖² here, rmse² = 2L/K without a barrier; the report puts it after loss."""
    from core.networks import params_to_lists
    from core.problem import build_problem
    from core.runner import make_report

    d = config_to_dict(default_config())
    d["teacher"] |= {"output_dim": 2}
    d["data"]["samples"] = 50
    d["dynamics"]["maxnorm"] = 0.3  # active at θ₀: rmse leaves the barrier out
    problem = build_problem(parse_config(d))
    theta = problem.theta0
    from core.networks import forward_jit

    out = np.asarray(forward_jit(problem.spec, theta, problem.data.x))
    rmse = float(np.sqrt(np.mean((out - np.asarray(problem.data.y)) ** 2)))
    fit = problem.fit_metrics(problem.spec, theta)
    assert fit == {"rmse": pytest.approx(rmse, rel=1e-14)}
    from core.objectives import barrier

    data_term = float(problem.objective.loss(theta) - barrier(theta, 0.3))
    assert float(barrier(theta, 0.3)) > 0
    assert fit["rmse"] ** 2 == pytest.approx(2 * data_term / 2, rel=1e-12)
    final = {"t": 0.0, "loss": 1.0, "grad_inf_norm": 2.0}
    final["params"] = params_to_lists(problem.spec, theta)
    stub = {"spectrum": {}, "classification": "saddle", "channels": [], "neurons": []}
    report = make_report(problem, final, None, stub, 1.0)
    assert list(report["final"]) == ["t", "loss", "rmse", "grad_inf_norm", "params"]
    assert report["final"]["rmse"] == pytest.approx(rmse, rel=1e-14)
    assert report["refined"] is None
