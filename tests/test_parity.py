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
