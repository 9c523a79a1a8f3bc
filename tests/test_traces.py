"""Tests of core.traces: the flow's traced chunk program cached on disk with jax.export."""

from __future__ import annotations

import logging

import jax
import numpy as np
import pytest
from helpers import jax_traces

import core  # noqa: F401
from core import traces
from core.data import make_dataset
from core.flow import DynamicsSettings, run_to_end
from core.networks import init_params, make_spec
from core.objectives import mse_objective
from core.teachers import random_teacher

SETTINGS = DynamicsSettings(solver="tsit5", t_max=50.0, n_saves=12)


def _problem(activation: str = "softplus"):
    """A fresh objective (a new object: core.flow's in-memory cache does not apply)."""
    spec = make_spec(2, [3], activation, bias=True)
    teacher = random_teacher(spec, jax.random.PRNGKey(3))
    obj = mse_objective(spec, make_dataset(teacher, "gaussian", 64, 0))
    return obj, np.asarray(init_params(spec, jax.random.PRNGKey(4)))


@pytest.fixture
def folder(tmp_path, monkeypatch):
    target = tmp_path / "exported"
    monkeypatch.setattr(traces, "cache_folder", lambda: target)
    OUTCOMES.clear()
    return target


#: How each :func:`_run` got the flow's chunk program, seen from outside (JAX's tracing
#: events): "miss" (``advance`` traced, exported and the export called), "hit" (only the
#: deserialized export's ``call`` traced: nothing of diffrax), "off" (``advance`` traced
#: and jitted as is, no export).
OUTCOMES: list[str] = []


def _run(activation="softplus", settings=SETTINGS):
    obj, theta0 = _problem(activation)
    with jax_traces() as traced:
        run = run_to_end(obj, theta0, settings)
    if "advance" in traced:
        OUTCOMES.append("miss" if "call" in traced else "off")
    else:
        OUTCOMES.append("hit" if "call" in traced else "not traced")
    return run


def test_second_launch_loads_the_exported_program_and_matches(folder, monkeypatch):
    first = _run()
    assert OUTCOMES == ["miss"]
    assert len(list(folder.glob("*.jaxexport"))) == 1
    second = _run()
    assert OUTCOMES == ["miss", "hit"]
    np.testing.assert_array_equal(first.theta, second.theta)
    np.testing.assert_array_equal(first.t, second.t)
    # The plain jitted program (cache off) integrates the same trajectory.
    monkeypatch.setattr(traces, "cache_folder", lambda: None)
    plain = _run()
    assert OUTCOMES[-1] == "off"
    np.testing.assert_allclose(plain.theta, first.theta, rtol=0, atol=1e-13)


def test_key_changes_with_what_the_program_computes(folder):
    _run()
    _run(settings=DynamicsSettings(solver="tsit5", t_max=50.0, n_saves=12, rtol=1e-6))
    _run(activation="tanh")
    _run(settings=DynamicsSettings(solver="dopri5", t_max=50.0, n_saves=12))
    # t_max and n_saves are runtime arguments: the same program serves them.
    _run(settings=DynamicsSettings(solver="tsit5", t_max=80.0, n_saves=20))
    assert OUTCOMES == ["miss", "miss", "miss", "miss", "hit"]
    assert len(list(folder.glob("*.jaxexport"))) == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupted_file_is_replaced_not_trusted(folder, damage):
    first = _run()
    (path,) = folder.glob("*.jaxexport")
    data = path.read_bytes()
    path.write_bytes(
        {"garbage": b"\x00" * len(data), "truncated": data[: len(data) // 2], "empty": b""}[damage]
    )
    again = _run()
    assert OUTCOMES == ["miss", "miss"]
    np.testing.assert_array_equal(first.theta, again.theta)
    assert traces._load(path) is not None  # rewritten with a valid program
    _run()
    assert OUTCOMES[-1] == "hit"


def test_exported_program_compiles_once_per_run(folder, caplog):
    """Feeding a chunk's returned carry (committed to the device) back in must not lower
    and compile the program again (it did before the shardings were made explicit)."""
    from core import flow

    obj, theta0 = _problem()
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        run = run_to_end(obj, theta0, SETTINGS)
    assert len(run.t) > flow.SAVES_PER_CHUNK + 1  # at least two chunks
    compiles = [r for r in caplog.records if "Compiling jit(call)" in r.getMessage()]
    assert len(compiles) == 1, [r.getMessage()[:200] for r in compiles]
