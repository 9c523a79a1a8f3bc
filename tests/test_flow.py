"""Tests of core.flow against closed-form flows, resumption, stopping rules and optax."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import jax_traces
from scipy.linalg import expm

import core  # noqa: F401
from core import flow
from core.data import make_dataset
from core.flow import DynamicsSettings, driver, resolve_solver, run_dynamics, run_to_end, save_grid
from core.networks import make_spec
from core.objectives import Objective, mse_objective
from core.teachers import random_teacher

SPEC4 = make_spec(1, [1], bias=True)  # P = 4: a carrier spec for hand-built objectives


def hand_objective(loss, name: str, hessian=None) -> Objective:
    loss_j = jax.jit(loss)
    hess = jax.jit(hessian if hessian is not None else jax.hessian(loss))
    return Objective(
        SPEC4, loss_j, jax.jit(jax.grad(loss)), jax.jit(jax.value_and_grad(loss)), hess,
        None, name,
    )  # fmt: skip


# L = ¼ Σ θ_i⁴: θ_i' = −τ_i θ_i³ ⇒ θ_i(t) = θ_i0 / √(1 + 2 τ_i θ_i0² t).
QUARTIC = hand_objective(lambda th: 0.25 * jnp.sum(th**4), "quartic")
THETA0 = np.array([1.0, -0.5, 2.0, 0.3])

# L = ½ θᵀ H θ with eigenvalues over 4.7 decades: θ(t) = exp(−tH) θ0.
_Q = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))[0]
H_QUAD = _Q @ np.diag([1e-3, 0.1, 1.0, 50.0]) @ _Q.T
QUADRATIC = hand_objective(lambda th: 0.5 * th @ jnp.asarray(H_QUAD) @ th, "quadratic")


def quartic_exact(t, tauinv=1.0):
    return THETA0 / np.sqrt(1 + 2 * tauinv * THETA0**2 * np.asarray(t)[:, None])


SLOW = pytest.mark.slow  # each extra solver costs a 4-10 s compilation


@pytest.mark.parametrize(
    "solver",
    [
        "tsit5",
        "kvaerno5",
        pytest.param("dopri5", marks=SLOW),
        pytest.param("dopri8", marks=SLOW),
        pytest.param("kencarp5", marks=SLOW),
    ],
)
def test_flow_matches_closed_form(solver):
    settings = DynamicsSettings(solver=solver, t_max=1e3, n_saves=30, rtol=1e-10, atol=1e-12)
    run = run_to_end(QUARTIC, THETA0, settings)
    assert run.reason == "t_max"
    assert run.t[0] == 0 and run.t[-1] == pytest.approx(1e3)
    assert np.all(np.diff(run.t) > 0)
    on_grid = np.isin(run.t, save_grid(settings))
    assert on_grid.sum() == settings.n_saves  # every save time is hit exactly
    # Global error of an rtol = 1e-10 solve over 5 decades of t: well below 1e-7.
    np.testing.assert_allclose(run.theta, quartic_exact(run.t), rtol=0, atol=1e-7)
    np.testing.assert_allclose(run.loss, 0.25 * np.sum(run.theta**4, axis=1), rtol=1e-12)


@pytest.mark.parametrize("solver", ["kvaerno5", pytest.param("tsit5", marks=SLOW)])
def test_stiff_linear_flow_and_tauinv(solver):
    tauinv = (1.0, 2.0, 0.5, 3.0)
    settings = DynamicsSettings(
        solver=solver, t_max=100.0, n_saves=20, rtol=1e-10, atol=1e-12, tauinv=tauinv
    )
    run = run_to_end(QUADRATIC, THETA0, settings)
    assert run.reason == "t_max"
    d = np.diag(tauinv)
    ref = np.stack([expm(-t * d @ H_QUAD) @ THETA0 for t in run.t])
    np.testing.assert_allclose(run.theta, ref, rtol=0, atol=1e-8)
    # Scaling τ⁻¹ changes the answer: the unit-τ flow is far from this one.
    plain = run_to_end(QUADRATIC, THETA0, DynamicsSettings(solver=solver, t_max=100.0, n_saves=20))
    assert np.max(np.abs(plain.theta[-1] - run.theta[-1])) > 1e-2


def counted_hessian_quadratic(name: str) -> tuple[Objective, list]:
    """QUADRATIC with a Hessian that appends to the returned list each time it runs."""
    calls: list = []
    h = jnp.asarray(H_QUAD)

    def hessian(th):
        jax.debug.callback(lambda: calls.append(1))
        return h

    return hand_objective(lambda th: 0.5 * th @ h @ th, name, hessian=hessian), calls


def test_stiff_solver_uses_exact_hessian():
    """Kvaerno5's Jacobian comes from objective.hessian (counted at run time)."""
    obj, calls = counted_hessian_quadratic("counted")
    run = run_to_end(obj, THETA0, DynamicsSettings(solver="kvaerno5", t_max=10.0, n_saves=10))
    assert run.reason == "t_max"
    # One Jacobian per attempted step (first-stage linearisation), none re-derived.
    assert run.steps <= len(calls) <= 3 * run.steps + 10


def assert_resume_matches(whole, first, rest, n_saves: int) -> None:
    """A run paused after chunk ``first`` and resumed from its last state (``rest``) holds
    the uninterrupted run's states on all n_saves + 1 grid times, no row twice."""
    assert rest.t[0] > first.t[-1]  # no duplicate row on resume
    t = np.concatenate([first.t, rest.t])
    theta = np.concatenate([first.theta, rest.theta])
    common, i, j = np.intersect1d(t, whole.t, return_indices=True)
    assert len(common) == n_saves + 1
    np.testing.assert_allclose(theta[i], whole.theta[j], rtol=0, atol=1e-9)


def test_resume_equals_uninterrupted_and_no_recompilation():
    """Pausing and resuming gives the uninterrupted trajectory, and with the same
    (objective, settings) nothing is traced again: counted by JAX's own monitoring events
    (tests/helpers.jax_traces), which see any jitted function being traced, whether or not
    the flow's chunk program itself comes from the export cache (core.traces)."""
    settings = DynamicsSettings(solver="tsit5", t_max=1e3, n_saves=40, rtol=1e-10, atol=1e-12)
    whole = run_to_end(QUARTIC, THETA0, settings)
    with jax_traces() as traced:
        gen = run_dynamics(QUARTIC, THETA0, settings)
        first = next(gen)
        gen.close()  # pause
        rest = run_to_end(QUARTIC, first.theta[-1], settings, t0=float(first.t[-1]))
    assert traced == []  # same (objective, settings): no retrace, no recompilation
    assert not first.done and len(first.t) >= 2
    assert_resume_matches(whole, first, rest, settings.n_saves)


def test_trace_counter_sees_a_rebuilt_flow_program():
    """The counter of the test above can fail: a new objective (the in-memory cache of
    compiled chunk functions misses) is traced again, export cache or not."""
    settings = DynamicsSettings(solver="tsit5", t_max=10.0, n_saves=10)
    run_to_end(QUARTIC, THETA0, settings)
    again = hand_objective(lambda th: 0.25 * jnp.sum(th**4), "quartic")
    with jax_traces() as traced:
        run_to_end(again, THETA0, settings)
    assert traced, "rebuilding the chunk functions traced nothing"


def test_nonfinite_stops_with_last_finite_state():
    # L = Σ −θ + 0·√(c − θ): θ' = 1 while θ < c; ∇L is NaN from θ = c on, reached at t = c.
    c = 1.0
    obj = hand_objective(lambda th: jnp.sum(-th + 0.0 * jnp.sqrt(c - th)), "cliff")
    run = run_to_end(obj, np.zeros(4), DynamicsSettings(solver="tsit5", t_max=10.0, n_saves=20))
    assert run.reason == "nonfinite", run.message
    assert "NaN" in run.message
    assert np.all(np.isfinite(run.theta)) and np.all(np.isfinite(run.loss))
    assert np.all(np.isfinite(run.grad_norm))
    # The last finite state sits just before the cliff, on the exact path θ = t.
    assert 0.99 < run.t[-1] <= c
    np.testing.assert_allclose(run.theta[-1], run.t[-1], atol=1e-10)


def test_max_seconds_and_max_steps_honoured():
    settings = DynamicsSettings(solver="tsit5", t_max=1e10, n_saves=400, max_seconds=0.5)
    # Warm the compile cache so the clock measures stepping.
    next(run_dynamics(QUADRATIC, THETA0, settings)).steps  # noqa: B018
    tic = time.perf_counter()
    run = run_to_end(QUADRATIC, THETA0, settings)
    elapsed = time.perf_counter() - tic
    assert run.reason == "max_seconds"
    assert elapsed < 0.5 + 0.8  # one chunk (~0.2 s target) past the budget at most
    capped = run_to_end(QUADRATIC, THETA0, DynamicsSettings(solver="tsit5", max_steps=50))
    assert capped.reason == "max_steps" and capped.steps == 50
    assert np.all(np.isfinite(capped.theta[-1]))


def test_converged_stop():
    # Same compiled code as test_stiff_linear_flow_and_tauinv (same static settings).
    settings = DynamicsSettings(
        solver="kvaerno5", t_max=1e10, grad_tol=1e-9, rtol=1e-10, atol=1e-12
    )
    run = run_to_end(QUADRATIC, THETA0, settings)
    assert run.reason == "converged"
    assert run.grad_norm[-1] < 1e-9 and run.grad_norm[-2] >= 1e-9


def test_auto_solver_choice():
    # auto: scipy's LSODA up to AUTO_SCIPY_MAX_PARAMS (measurements beside the constant).
    assert resolve_solver(DynamicsSettings(), 9) == "lsoda"
    assert resolve_solver(DynamicsSettings(), flow.AUTO_SCIPY_MAX_PARAMS) == "lsoda"
    assert resolve_solver(DynamicsSettings(), flow.AUTO_SCIPY_MAX_PARAMS + 1) == "tsit5"
    assert resolve_solver(DynamicsSettings(solver="dopri8"), 9) == "dopri8"
    # Where a jitted solver is needed (ensembles): the diffrax rule.
    assert resolve_solver(DynamicsSettings(), 9, jax_only=True) == "kvaerno5"
    assert resolve_solver(DynamicsSettings(), 160, jax_only=True) == "kvaerno5"
    assert resolve_solver(DynamicsSettings(), 161, jax_only=True) == "tsit5"
    with pytest.raises(ValueError, match=r"dynamics\.solver"):
        resolve_solver(DynamicsSettings(solver="lsoda"), 9, jax_only=True)


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match=r"dynamics\.solver"):
        DynamicsSettings(solver="euler")
    with pytest.raises(ValueError, match=r"dynamics\.rtol"):
        DynamicsSettings(rtol=-1.0)
    with pytest.raises(ValueError, match=r"dynamics\.n_saves"):
        DynamicsSettings(n_saves=1)
    with pytest.raises(ValueError, match=r"dynamics\.tauinv"):
        run_dynamics(QUARTIC, THETA0, DynamicsSettings(tauinv=(1.0, 2.0)))
    with pytest.raises(ValueError, match=r"dynamics\.method: sgd needs a finite data set"):
        next(run_dynamics(QUARTIC, THETA0, DynamicsSettings(method="sgd")))
    with pytest.raises(ValueError, match="theta0"):
        run_dynamics(QUARTIC, np.zeros(3), DynamicsSettings())


@pytest.fixture(scope="module")
def small_problem():
    spec = make_spec(2, [3], "softplus", bias=False)
    teacher = random_teacher(spec, jax.random.PRNGKey(1))
    obj = mse_objective(spec, make_dataset(teacher, "gaussian", 500, 0))
    theta0 = np.asarray(teacher.theta) + 0.3 * np.random.default_rng(3).normal(size=9)
    return obj, theta0


@pytest.mark.slow
def test_gd_tracks_flow_and_optimizers_decrease(small_problem):
    obj, theta0 = small_problem
    t_max = 2.0
    ref = run_to_end(obj, theta0, DynamicsSettings(solver="tsit5", t_max=t_max, n_saves=10))
    gd = run_to_end(obj, theta0, DynamicsSettings(method="gd", lr=1e-3, t_max=t_max, n_saves=10))
    assert gd.reason == "t_max" and gd.steps == 2000
    assert gd.t[-1] == pytest.approx(t_max)
    # Euler's global error is O(lr): ~1e-3 relative, far below the distance travelled.
    travelled = np.max(np.abs(ref.theta[-1] - theta0))
    assert np.max(np.abs(gd.theta[-1] - ref.theta[-1])) < 1e-2 * travelled
    for method, lr in (("sgd", 1e-2), ("adam", 1e-3)):
        run = run_to_end(obj, theta0, DynamicsSettings(method=method, lr=lr, t_max=5.0))
        assert run.reason == "t_max"
        assert run.loss[-1] < 0.5 * run.loss[0], method
    # sgd is seeded: same seed, same path; another seed, another path.
    s = DynamicsSettings(method="sgd", lr=1e-2, t_max=0.5, n_saves=5)
    a, b = run_to_end(obj, theta0, s, seed=1), run_to_end(obj, theta0, s, seed=1)
    c = run_to_end(obj, theta0, s, seed=2)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert np.max(np.abs(a.theta[-1] - c.theta[-1])) > 0


def test_sgd_minibatch_gradient_carries_the_objectives_barrier(small_problem):
    """With dynamics.maxnorm, sgd's stochastic gradient is the data term's plus ∇B(θ)
    (core.objectives.barrier_grad, written independently): the same minibatch (same key)
    with and without the barrier differs by exactly that, outside the box and inside."""
    from core.flow.discrete import _minibatch_grad
    from core.objectives import barrier_grad

    obj, theta0 = small_problem
    boxed = mse_objective(obj.spec, obj.data, maxnorm=0.5)
    key = jax.random.PRNGKey(0)
    plain, barred = _minibatch_grad(obj, 16), _minibatch_grad(boxed, 16)
    theta = jnp.asarray(theta0) * 3.0
    assert np.max(np.abs(theta)) > 0.5  # some weights outside the box
    diff = np.asarray(barred(theta, key) - plain(theta, key))
    np.testing.assert_allclose(diff, np.asarray(barrier_grad(theta, 0.5)), rtol=0, atol=1e-12)
    assert np.max(np.abs(diff)) > 0.1
    inside = jnp.clip(theta, -0.4, 0.4)
    np.testing.assert_array_equal(barred(inside, key), plain(inside, key))


def test_gd_decreases_and_nonfinite_keeps_last_finite(small_problem):
    obj, theta0 = small_problem
    run = run_to_end(obj, theta0, DynamicsSettings(method="gd", lr=1e-2, t_max=5.0))
    assert run.reason == "t_max" and run.steps == 500
    assert run.loss[-1] < 0.5 * run.loss[0]
    run = run_to_end(obj, theta0 * 10, DynamicsSettings(method="gd", lr=1e3, t_max=1e6))
    assert run.reason == "nonfinite"
    assert np.all(np.isfinite(run.theta)) and np.all(np.isfinite(run.loss))


# ------------------------------------------------------------------ scipy solvers


@pytest.mark.parametrize("solver", ["lsoda", "bdf"])
def test_scipy_solvers_match_closed_form_on_the_grid(solver):
    settings = DynamicsSettings(solver=solver, t_max=1e3, n_saves=30, rtol=1e-10, atol=1e-12)
    run = run_to_end(QUARTIC, THETA0, settings)
    assert run.reason == "t_max"
    assert run.t[0] == 0 and run.t[-1] == 1e3
    np.testing.assert_array_equal(run.t[1:], save_grid(settings))  # dense output: every save
    np.testing.assert_allclose(run.theta, quartic_exact(run.t), rtol=0, atol=1e-7)
    np.testing.assert_allclose(run.loss, 0.25 * np.sum(run.theta**4, axis=1), rtol=1e-12)
    np.testing.assert_allclose(run.grad_norm, np.max(np.abs(run.theta) ** 3, axis=1), rtol=1e-12)


def test_lsoda_stiff_linear_flow_and_tauinv():
    """λ over 4.7 decades: the stiff regime where LSODA uses BDF with the exact Jacobian."""
    tauinv = (1.0, 2.0, 0.5, 3.0)
    settings = DynamicsSettings(
        solver="lsoda", t_max=100.0, n_saves=20, rtol=1e-10, atol=1e-12, tauinv=tauinv
    )
    run = run_to_end(QUADRATIC, THETA0, settings)
    assert run.reason == "t_max"
    ref = np.stack([expm(-t * np.diag(tauinv) @ H_QUAD) @ THETA0 for t in run.t])
    np.testing.assert_allclose(run.theta, ref, rtol=0, atol=1e-8)


def test_lsoda_uses_the_exact_hessian():
    obj, calls = counted_hessian_quadratic("counted-lsoda")
    settings = DynamicsSettings(solver="lsoda", t_max=1e4, n_saves=10, rtol=1e-8, atol=1e-10)
    run = run_to_end(obj, THETA0, settings)
    assert run.reason == "t_max"
    assert 1 <= len(calls) < run.steps  # Jacobians are reused over many steps
    ref = expm(-1e4 * H_QUAD) @ THETA0
    np.testing.assert_allclose(run.theta[-1], ref, rtol=0, atol=1e-8)


def test_lsoda_nonfinite_keeps_last_finite_state():
    obj = hand_objective(lambda th: jnp.sum(-th + 0.0 * jnp.sqrt(1.0 - th)), "cliff-lsoda")
    run = run_to_end(obj, np.zeros(4), DynamicsSettings(solver="lsoda", t_max=10.0, n_saves=20))
    assert run.reason == "nonfinite", run.message
    assert np.all(np.isfinite(run.theta)) and np.all(np.isfinite(run.loss))
    assert 0.9 < run.t[-1] <= 1.0
    np.testing.assert_allclose(run.theta[-1], run.t[-1], atol=1e-8)


def test_lsoda_resume_and_interleaved_runs():
    """Two paused LSODA runs stepped alternately (the solver object lives in each
    generator; scipy ≥ 1.17's C LSODA keeps no global state, scipy PR 23914) equal
    uninterrupted runs; a resumed run saves on the same grid and stays within tolerance."""
    settings = DynamicsSettings(solver="lsoda", t_max=1e3, n_saves=40, rtol=1e-10, atol=1e-12)
    whole_q = run_to_end(QUARTIC, THETA0, settings)
    whole_h = run_to_end(QUADRATIC, THETA0, settings)
    gens = [run_dynamics(QUARTIC, THETA0, settings), run_dynamics(QUADRATIC, THETA0, settings)]
    parts: list[list] = [[], []]
    while not all(part and part[-1].done for part in parts):
        for gen, part in zip(gens, parts, strict=True):
            if not (part and part[-1].done):
                part.append(next(gen))
    for part, whole in zip(parts, (whole_q, whole_h), strict=True):
        np.testing.assert_array_equal(np.concatenate([c.theta for c in part]), whole.theta)
    first = next(run_dynamics(QUARTIC, THETA0, settings))
    rest = run_to_end(QUARTIC, first.theta[-1], settings, t0=float(first.t[-1]))
    assert_resume_matches(whole_q, first, rest, settings.n_saves)


def test_deep_linear_small_init_finishes_with_auto():
    """The saddle-to-saddle preset (three-layer linear net from init scale 1e-3, P = 27):
    Kvaerno5 crawled to t ≈ 0.07 in 130 s; auto (LSODA) passes all three plateaus."""
    from pathlib import Path

    from core.config import load_config
    from core.problem import build_problem

    root = Path(__file__).resolve().parents[1]
    problem = build_problem(load_config(root / "explorer/presets/saddle_to_saddle.toml"))
    settings = DynamicsSettings(t_max=1e5, rtol=1e-8, atol=1e-10, max_seconds=60)
    assert resolve_solver(settings, problem.objective.n_params) == "lsoda"
    tic = time.perf_counter()
    run = run_to_end(problem.objective, problem.theta0, settings)
    assert time.perf_counter() - tic < 30
    assert run.reason in ("t_max", "converged"), run.message
    # The plateaus at the best rank-r fits (preset docstring) are all visited.
    for level in (4.95, 0.595, 0.0485):
        assert np.any(np.abs(run.loss / level - 1) < 0.01), level
    assert run.loss[-1] < 1e-20


# --------------------------------------------------- determinism and wall budget


def _slow_clock(factor: float):
    """A wall clock running ``factor`` × faster than the real one (a loaded machine)."""
    t0 = time.perf_counter()
    return lambda: t0 + factor * (time.perf_counter() - t0)


def _grid_states(run, settings):
    on = np.isin(run.t, save_grid(settings))
    return run.t[on], run.theta[on]


@pytest.mark.parametrize("solver", ["lsoda", "tsit5"])
def test_same_grid_states_whatever_the_clock_and_chunking(monkeypatch, solver):
    """The same run with chunks of ~0.1 ms, 0.2 s on a 30× clock, and 10 s: the states on
    the save grid are bit-identical (the clock decides where chunks end, not the steps)."""
    settings = DynamicsSettings(solver=solver, t_max=100.0, n_saves=30, rtol=1e-9, atol=1e-11)
    t_ref, y_ref = _grid_states(run_to_end(QUADRATIC, THETA0, settings), settings)
    assert len(t_ref) == settings.n_saves
    for chunk_seconds, factor in ((1e-4, 1.0), (0.2, 30.0), (10.0, 1.0)):
        monkeypatch.setattr(driver, "CHUNK_SECONDS", chunk_seconds)
        monkeypatch.setattr(driver, "_clock", _slow_clock(factor))
        run = run_to_end(QUADRATIC, THETA0, settings)
        assert run.reason == "t_max"
        t, y = _grid_states(run, settings)
        np.testing.assert_array_equal(t, t_ref)
        np.testing.assert_array_equal(y, y_ref)  # bit-identical


def test_max_seconds_honoured_including_compilation():
    """A fresh objective (its ∇L and H compile inside the run) and a budget far shorter
    than the run: real wall time within 10 % of max_seconds, and the result says so."""
    spec = make_spec(2, [5], "softplus", bias=True)
    teacher = random_teacher(spec, jax.random.PRNGKey(1))
    obj = mse_objective(spec, make_dataset(teacher, "gaussian", 10_000, 0))
    theta0 = np.asarray(random_teacher(spec, jax.random.PRNGKey(2)).theta)
    settings = DynamicsSettings(t_max=1e10, rtol=1e-10, atol=1e-12, grad_tol=0, max_seconds=5)
    tic = time.perf_counter()
    run = run_to_end(obj, theta0, settings)
    elapsed = time.perf_counter() - tic
    assert run.reason == "max_seconds" and run.message == "stopped after 5 s"
    assert elapsed < 1.1 * settings.max_seconds
    assert 0 < run.t[-1] < 1e10


def test_jitted_chunks_stop_within_budget_on_a_slow_clock(monkeypatch):
    """Jitted chunks (Tsit5 on a stiff problem: it never reaches t_max) with a clock 5×
    faster than real (a loaded machine): the chunks' step budgets shrink to the
    remaining time, so the run stops within 10 % of max_seconds as the driver measures it."""
    settings = DynamicsSettings(solver="tsit5", t_max=1e10, grad_tol=0, max_seconds=2.0)
    next(run_dynamics(QUADRATIC, THETA0, settings))  # compiled (as in the test above)
    clock = _slow_clock(5.0)
    monkeypatch.setattr(driver, "_clock", clock)
    start = clock()
    run = run_to_end(QUADRATIC, THETA0, settings)
    elapsed = clock() - start
    assert run.reason == "max_seconds", run.reason
    assert elapsed < 1.1 * settings.max_seconds
    assert run.t[-1] < 1e10


def test_stop_reasons_are_one_enum_with_the_stored_strings():
    import json

    from core.flow import RUNNING, StopReason

    stored = (
        "t_max", "converged", "max_seconds", "max_steps", "nonfinite", "solver_error", "refined"
    )  # fmt: skip
    assert tuple(StopReason) == stored  # sessions store these strings: never rename
    for reason in StopReason:
        assert StopReason(str(reason)) is reason and f"{reason}" == reason.value
        assert json.dumps({"r": reason}) == json.dumps({"r": reason.value})
        assert StopReason.from_code(reason.code) is reason and reason.code != RUNNING
        assert reason.description
    assert StopReason.from_code(RUNNING) is None
    run = run_to_end(QUARTIC, THETA0, DynamicsSettings(solver="lsoda", t_max=1.0, max_steps=3))
    assert run.reason is StopReason.MAX_STEPS and run.steps == 3
    assert run.message == StopReason.MAX_STEPS.message(run.t[-1], 3, DynamicsSettings(max_steps=3))


def test_teacher_student_flow_is_bit_identical_under_a_slow_clock(monkeypatch):
    """A softplus teacher-student flow to t = 1e10 (auto: LSODA), once as is and once with
    chunks of ~0.1 ms on a clock 50× fast: the same steps and bit-identical save-grid
    states, so hand-over and end point (decided on these states) cannot depend on load."""
    spec = make_spec(2, [3], "softplus", bias=True)
    teacher = random_teacher(spec, jax.random.PRNGKey(5))
    obj = mse_objective(spec, make_dataset(teacher, "gaussian", 500, 1))
    theta0 = np.asarray(random_teacher(spec, jax.random.PRNGKey(6)).theta)
    settings = DynamicsSettings(t_max=1e10, rtol=1e-3, atol=1e-6, max_seconds=600)
    calm = run_to_end(obj, theta0, settings)
    monkeypatch.setattr(driver, "CHUNK_SECONDS", 1e-4)
    monkeypatch.setattr(driver, "_clock", _slow_clock(50.0))
    busy = run_to_end(obj, theta0, settings)
    assert calm.reason == busy.reason and calm.steps == busy.steps
    t_calm, y_calm = _grid_states(calm, settings)
    t_busy, y_busy = _grid_states(busy, settings)
    assert len(t_calm) > settings.n_saves // 2
    np.testing.assert_array_equal(t_busy, t_calm)
    np.testing.assert_array_equal(y_busy, y_calm)
