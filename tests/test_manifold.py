"""Constrained parameters (core.manifold): unit-norm first-layer weights, fixed outputs.

References, all independent of the code under test:
* the chart z ↦ N(θ + Bz) differentiated by autodiff (gradient and Hessian of L∘chart);
* L∘N differentiated by autodiff (the ambient Hessian of the flow field);
* closed forms for one neuron with correlation loss on Gaussian input and a normalised
  Hermite activation h_p (E[h_p(u) h_p(v)] = ρ^p): L(w) = −Σ_j (w·v_j)^p on the sphere,
  Euclidean g = −p Σ_j (w·v_j)^{p−1} v_j, H = −p(p−1) Σ_j (w·v_j)^{p−2} v_j v_jᵀ, so
  Hess_R = Bᵀ(H − (w·g) I)B.  At w = v (one index vector): w·g = −p, BᵀHB = 0, so
  Hess_R = p I_{d−1}.  At the average w = (v₁+v₂)/√2 of two orthogonal v_j with p = 4:
  w·v_j = 1/√2, H = −6(v₁v₁ᵀ + v₂v₂ᵀ), w·g = −2, so Hess_R has −6 + 2 = −4 along
  (v₁ − v₂)/√2 and +2 on the d − 2 directions ⊥ v₁, v₂: a saddle of index 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.analysis import analyze
from core.config import ConfigError, parse_config
from core.flow import DynamicsSettings, resolve_solver, run_to_end
from core.manifold import (
    constraint_of,
    make_constraint,
    retract,
    riemannian_gradient,
    riemannian_hessian,
    spectrum_eigh,
    spectrum_hessian,
    tangent_basis,
)
from core.networks import make_spec
from core.objectives import Dataset, mse_objective
from core.problem import build_problem
from core.refine import newton, refine


def _mse_problem(
    unit_norm=True, train_output=True, seed=0, d=3, k=3, outputs=1, deep=False, loss="mse"
):
    if deep:  # two hidden layers, biases after the first
        spec = make_spec(d, (k, 2), (("erf",) * k, ("tanh",) * 2), (False, True, True), outputs)
    else:
        spec = make_spec(d, (k,), (("erf",) * k,), (False, True), outputs)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, d))
    y = np.tanh(x @ rng.standard_normal((d, outputs)))
    if loss == "correlation":  # finite-data −mean f·y (core.correlation)
        from core.correlation import correlation_objective

        base = correlation_objective(spec, Dataset(x, y))
    else:
        base = mse_objective(spec, Dataset(x, y))
    from core.manifold import constrained_objective

    c = make_constraint(spec, unit_norm, train_output)
    theta = retract(c, rng.standard_normal(spec.n_params))
    return spec, base, constrained_objective(base, c), c, theta


def _chart(base, c, theta):
    """z ↦ L(N(θ + Bz)) (fixed coordinates not in z): the autodiff reference."""
    b = jnp.asarray(tangent_basis(c, theta))
    th = jnp.asarray(theta)

    def f(z):
        return base.loss(retract(c, th + b @ z))

    return f, jnp.zeros(b.shape[1])


@pytest.mark.parametrize(
    "unit_norm,train_output,deep,loss",
    [
        (True, True, False, "mse"),
        (True, False, False, "mse"),
        (False, False, False, "mse"),
        (True, False, True, "mse"),
        (True, False, False, "correlation"),
    ],
)
def test_gradient_and_hessian_equal_the_charts(unit_norm, train_output, deep, loss):
    spec, base, obj, c, theta = _mse_problem(unit_norm, train_output, deep=deep, loss=loss)
    f, z0 = _chart(base, c, theta)
    b = tangent_basis(c, theta)
    assert b.shape == (spec.n_params, c.n_free)
    np.testing.assert_allclose(b.T @ b, np.eye(c.n_free), atol=1e-14)
    n_spheres = spec.widths[0] if unit_norm else 0
    n_fixed = spec.output_dim * (spec.widths[-1] + 1) if not train_output else 0
    assert c.n_free == spec.n_params - n_spheres - n_fixed
    g = np.asarray(obj.grad(jnp.asarray(theta)))
    # The embedded Riemannian gradient is tangent (B Bᵀ g = g) and its coordinates are
    # the chart's gradient at z = 0.
    np.testing.assert_allclose(b @ (b.T @ g), g, atol=1e-15)
    np.testing.assert_allclose(b.T @ g, np.asarray(jax.grad(f)(z0)), rtol=1e-12, atol=1e-15)
    eg = np.asarray(base.grad(jnp.asarray(theta)))
    np.testing.assert_allclose(riemannian_gradient(c, theta, eg), g, atol=1e-15)
    assert np.all(g[c.fixed] == 0.0)
    # A non-critical point (‖grad_R‖ ~ 0.1): the chart is a second-order retraction, so
    # its Hessian is the Riemannian Hessian here too.
    assert np.max(np.abs(g)) > 1e-2
    hr = spectrum_hessian(obj, theta)
    assert hr.shape == (c.n_free, c.n_free)
    np.testing.assert_allclose(hr, np.asarray(jax.hessian(f)(z0)), rtol=1e-10, atol=1e-13)
    # ... and on M, Bᵀ ∇²(L∘N) B (the flow's Jacobian) is the same matrix.
    ambient = np.asarray(obj.hessian(jnp.asarray(theta)))
    np.testing.assert_allclose(b.T @ ambient @ b, hr, rtol=1e-10, atol=1e-13)


def test_weingarten_term_is_the_normal_gradient():
    """BᵀHB − Hess_R = Σ_i (w_i·∇_{w_i}L) BᵀI_iB: the Euclidean Hessian restricted to the
    tangent space misses the sphere's curvature term, which is not small."""
    spec, base, _obj, c, theta = _mse_problem()
    th = jnp.asarray(theta)
    g, h = np.asarray(base.grad(th)), np.asarray(base.hessian(th))
    b = tangent_basis(c, theta)
    diag = np.zeros(spec.n_params)
    for idx in c.spheres:
        diag[idx] = theta[idx] @ g[idx]
    term = b.T @ np.diag(diag) @ b
    assert np.max(np.abs(term)) > 1e-3
    np.testing.assert_allclose(
        b.T @ h @ b - riemannian_hessian(c, theta, g, h), term, rtol=1e-10, atol=1e-14
    )


def test_ambient_hessian_off_the_sphere_is_that_of_L_after_normalising():
    """∇²(L∘N) at ‖w_i‖ ≠ 1 (the flow's Jacobian between retractions) against autodiff."""
    _spec, base, obj, c, theta = _mse_problem(train_output=False, seed=3)
    rng = np.random.default_rng(1)
    off = theta.copy()
    for idx in c.spheres:
        off[idx] *= rng.uniform(0.5, 2.0)

    def lt(t):
        t = retract(c, t)
        return base.loss(t.at[c.fixed].set(jax.lax.stop_gradient(t[c.fixed])))

    ref = np.asarray(jax.hessian(lt)(jnp.asarray(off)))
    np.testing.assert_allclose(np.asarray(obj.hessian(jnp.asarray(off))), ref, atol=1e-13)
    gref = np.asarray(jax.grad(lt)(jnp.asarray(off)))
    np.testing.assert_allclose(np.asarray(obj.grad(jnp.asarray(off))), gref, atol=1e-15)
    for idx in c.spheres:  # tangent everywhere: L∘N is scale invariant
        assert abs(off[idx] @ gref[idx]) < 1e-15


# ------------------------------------------------------------------------- configs


def _config(p=2, d=4, index_vectors=None, student=None, dynamics=None, seed=0, **extra):
    """One student neuron h_p on the sphere, correlation loss, infinite Gaussian data,
    teacher Σ_j h_p(v_j·x) with the given unit index vectors (default: one random v)."""
    if index_vectors is None:
        v = np.random.default_rng(seed).standard_normal(d)
        index_vectors = [v / np.linalg.norm(v)]
    vs = np.asarray(index_vectors, dtype=float)
    act = "identity" if p == 1 else f"he{p}"
    table = {
        "seed": seed,
        "teacher": {
            "kind": "explicit", "input_dim": d, "widths": [len(vs)], "activation": act,
            "bias": False, "output_dim": 1,
            "params": {"w1": vs.tolist(), "w2": [[1.0] * len(vs)]},
        },
        "student": {"widths": [1], "activation": act, "bias": False, "unit_norm": True,
                    "train_output": False, **(student or {})},
        "data": {"kind": "gaussian-infinite", "loss": "correlation"},
        "dynamics": {"t_max": 100.0, "rtol": 1e-10, "atol": 1e-12, "grad_tol": 0.0,
                     **(dynamics or {})},
        **extra,
    }  # fmt: skip
    return parse_config(table, "<test>")


@pytest.mark.parametrize(
    "student,field",
    [
        ({"bias": True}, "student.unit_norm"),
        ({"unit_norm": "yes"}, "student.unit_norm"),
        ({"train_output": 1}, "student.train_output"),
        ({"init_scale": 0.0}, "student.init_scale"),
        ({"params": {"w1": [[0.0, 0.0, 0.0, 0.0]], "w2": [[1.0]]}}, "student.params"),
    ],
)
def test_config_errors_name_the_field(student, field):
    with pytest.raises(ConfigError) as err:
        _config(student=student)
    assert err.value.field == field
    assert field in str(err.value)


def test_initial_state_is_on_the_manifold_and_outputs_default_to_one():
    problem = build_problem(_config(d=4, student={"widths": [3], "activation": "he2"}))
    c = problem.constraint
    assert c is not None and c is constraint_of(problem.objective)
    w = problem.theta0[c.spheres]
    assert np.max(np.abs(np.linalg.norm(w, axis=1) - 1.0)) <= 1e-15
    assert np.all(problem.theta0[c.fixed] == 1.0)
    given = {"w1": [[3.0, 0.0, 0.0, 4.0]], "w2": [[-0.5]]}
    problem = build_problem(_config(d=4, student={"params": given}))
    np.testing.assert_array_equal(problem.theta0, [0.6, 0.0, 0.0, 0.8, -0.5])
    # Unconstrained configs are untouched.
    plain = _config(student={"unit_norm": False, "train_output": True})
    assert build_problem(plain).constraint is None


# ------------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("p", [1, 2])
def test_flow_converges_to_the_index_vector_with_the_closed_form_spectrum(p):
    """One neuron, L(w) = −(w·v)^p: the flow from a random unit w ends at v (or −v for
    even p, whose landscape is symmetric) with Hess_R = p I_{d−1}."""
    d = 4
    problem = build_problem(_config(p=p, d=d, seed=2))
    v = np.asarray(problem.teacher.theta)[:d]
    chunk = run_to_end(problem.objective, problem.theta0, DynamicsSettings(
        t_max=60.0, rtol=1e-10, atol=1e-12, grad_tol=0.0))  # fmt: skip
    w = chunk.theta[-1][:d]
    sign = 1.0 if p == 1 else np.sign(w @ v)
    np.testing.assert_allclose(w, sign * v, atol=1e-9)
    assert chunk.loss[-1] == pytest.approx(-1.0, abs=1e-12)
    a = analyze(problem.objective, chunk.theta[-1])
    assert a.spectrum.eigenvalues.shape == (d - 1,)  # P − 1 sphere − 1 fixed output
    np.testing.assert_allclose(a.spectrum.eigenvalues, p * np.ones(d - 1), atol=1e-8)
    assert a.classification == "minimum"
    if p == 1:  # −v is the maximum: Hess_R = −I
        lam, _ = spectrum_eigh(problem.objective, np.append(-v, 1.0))
        np.testing.assert_allclose(lam, -np.ones(d - 1), atol=1e-12)
    else:  # w ⊥ v is critical (g = 0) with Hess_R = BᵀHB = −2 (Bᵀv)(Bᵀv)ᵀ: λ = −2, 0, 0
        u = np.linalg.svd(v[None])[2][-1]
        lam, _ = spectrum_eigh(problem.objective, np.append(u, 1.0))
        np.testing.assert_allclose(lam, [-2.0, 0.0, 0.0], atol=1e-12)


def test_refine_lands_on_the_saddle_the_flow_approaches():
    """Two orthogonal index vectors, h₄: from near their average direction the flow heads
    for the average (index-1 saddle, Hess_R eigenvalues −4, 2, 2); Newton refinement on
    the manifold converges there to ‖grad_R‖∞ ≤ 1e-10 with the outputs untouched."""
    d = 4
    v1, v2 = np.eye(d)[0], np.eye(d)[1]
    w0 = v1 + v2 + 0.4 * np.eye(d)[2] + 0.3 * np.eye(d)[3]
    cfg = _config(p=4, d=d, index_vectors=[v1, v2],
                  student={"params": {"w1": [w0.tolist()], "w2": [[1.0]]}})  # fmt: skip
    problem = build_problem(cfg)
    chunk = run_to_end(problem.objective, problem.theta0, DynamicsSettings(
        t_max=2.0, rtol=1e-10, atol=1e-12, grad_tol=0.0))  # fmt: skip
    flow_end = chunk.theta[-1]
    assert 1e-10 < chunk.grad_norm[-1] < 1e-1  # near the saddle, not on it
    res = newton(problem.objective, flow_end, gtol=1e-10)
    assert res.converged and res.grad_inf_norm <= 1e-10
    np.testing.assert_allclose(res.theta[:d], (v1 + v2) / np.sqrt(2), atol=1e-10)
    assert res.theta[d] == problem.theta0[d]  # bit for bit
    a = analyze(problem.objective, res.theta)
    np.testing.assert_allclose(a.spectrum.eigenvalues, [-4.0, 2.0, 2.0], atol=1e-8)
    # At the critical point the chart's autodiff Hessian is the Riemannian one as well.
    c = problem.constraint
    f, z0 = _chart(problem.objective.extras["base"], c, res.theta)
    np.testing.assert_allclose(
        np.asarray(jax.hessian(f)(z0)), spectrum_hessian(problem.objective, res.theta),
        atol=1e-12,
    )  # fmt: skip
    assert a.spectrum.index == 1 and a.classification == "saddle"
    # refine's default (trust region, which descends) leaves the saddle for a minimum.
    res = refine(problem.objective, flow_end)
    assert res.converged
    w = res.theta[:d]
    assert (
        np.max(np.abs(np.abs(w) - np.abs(v1))) < 1e-9
        or np.max(np.abs(np.abs(w) - np.abs(v2))) < 1e-9
    )
    assert abs(np.linalg.norm(w) - 1.0) <= 1e-12 and res.theta[d] == problem.theta0[d]


# --------------------------------------------------------------------- along a flow


def _auto_choices(n_params: int) -> list[str]:
    settings = DynamicsSettings()
    return sorted(
        {resolve_solver(settings, n_params), resolve_solver(settings, n_params, jax_only=True)}
    )


@pytest.mark.parametrize("solver", ["lsoda", "bdf", "tsit5", "kvaerno5"])
def test_unit_norm_and_fixed_outputs_hold_along_a_flow(solver):
    """Every saved state has ‖w_i‖ = 1 to 1e-12 and the fixed output weights bit for bit,
    for each solver auto can pick (lsoda / tsit5; kvaerno5 where a jitted one is needed)."""
    spec, _base, obj, c, theta = _mse_problem(train_output=False, seed=5, k=3, outputs=2)
    if solver == "lsoda":
        assert set(_auto_choices(spec.n_params)) == {"lsoda", "kvaerno5"}
    settings = DynamicsSettings(solver=solver, t_max=30.0, rtol=1e-6, atol=1e-9, n_saves=40)
    chunk = run_to_end(obj, theta, settings)
    assert chunk.reason == "t_max" and len(chunk.t) == 41
    norms = np.linalg.norm(chunk.theta[:, c.spheres], axis=2)
    assert np.max(np.abs(norms - 1.0)) <= 1e-12
    assert np.all(chunk.theta[:, c.fixed] == theta[c.fixed])
    assert chunk.loss[-1] < chunk.loss[0]
    again = run_to_end(obj, theta, settings)  # deterministic: the same states bit for bit
    np.testing.assert_array_equal(again.theta, chunk.theta)


@pytest.mark.parametrize("method", ["gd", "adam", "sgd"])
def test_discrete_methods_are_projected(method):
    _spec, _base, obj, c, theta = _mse_problem(train_output=False, seed=6)
    settings = DynamicsSettings(method=method, t_max=5.0, lr=0.05, batch_size=16, n_saves=20)
    chunk = run_to_end(obj, theta, settings)
    norms = np.linalg.norm(chunk.theta[:, c.spheres], axis=2)
    assert np.max(np.abs(norms - 1.0)) <= 1e-12
    assert np.all(chunk.theta[:, c.fixed] == theta[c.fixed])
    assert chunk.loss[-1] < chunk.loss[0]


def test_surgery_keeps_or_refuses_the_constraint():
    from core import surgery

    spec, _base, obj, c, theta = _mse_problem(seed=7)
    new_spec, split = surgery.split_neuron(spec, theta, 1, 0.3, constraint=c)
    w = split[: new_spec.shapes["w1"][0] * 3].reshape(-1, 3)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-15)
    new_spec, merged = surgery.merge_neurons(spec, theta, 0, 2, constraint=c)
    w = merged[:6].reshape(2, 3)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-15)
    perturbed = surgery.perturb_along_eigenvector(obj, theta, 1e-2)
    np.testing.assert_allclose(
        np.linalg.norm(perturbed[c.spheres], axis=1), 1.0, rtol=0, atol=1e-15
    )
    fixed = make_constraint(spec, True, False)
    with pytest.raises(ValueError, match="train_output"):
        surgery.split_neuron(spec, theta, 1, 0.3, constraint=fixed)
    with pytest.raises(ValueError, match="train_output"):
        surgery.merge_neurons(spec, theta, 0, 1, constraint=fixed)


def test_a_constrained_run_saves_reports_and_replays(tmp_path):
    """explorer run's pipeline: the session keeps the keys, its report's spectrum is the
    Riemannian one (d − 1 values), the spectra along the run too, and the session's config
    rebuilds the same constrained objective."""
    from core.runner import run_config, session_report
    from core.session import load_session

    d = 4
    cfg = _config(p=2, d=d, seed=4, dynamics={"t_max": 1e3, "rtol": 1e-8, "atol": 1e-10})
    out = run_config(cfg, tmp_path / "s")
    session = load_session(out)
    assert session.config.student.unit_norm and not session.config.student.train_output
    report = session_report(session)
    lam = np.asarray(report["spectrum"]["eigenvalues"])
    np.testing.assert_allclose(lam, 2.0 * np.ones(d - 1), atol=1e-8)
    assert report["classification"] == "minimum"
    assert all(np.asarray(s.eigenvalues).shape == (d - 1,) for s in session.spectra)
    seg = session.final_segment
    assert np.max(np.abs(np.linalg.norm(seg.theta[:, :d], axis=1) - 1.0)) <= 1e-12
    assert np.all(seg.theta[:, d] == 1.0)
    problem = build_problem(session.config)
    assert problem.constraint is not None
    np.testing.assert_allclose(
        problem.objective.loss(jnp.asarray(seg.theta[-1])), seg.loss[-1], rtol=1e-14
    )


def test_loss_slice_follows_the_manifold_with_the_riemannian_curvature():
    """The loss-slice view on a constrained objective: its eigenvectors are tangent, and
    s ↦ L(N(θ + s v)) has second derivative λ at s = 0 (second-order retraction)."""
    from core.views import loss_slice

    _spec, _base, obj, c, theta = _mse_problem(train_output=False, seed=8)
    out = loss_slice(obj, theta, n=5, radius=1e-3)
    lam, _ = spectrum_eigh(obj, theta)
    assert out["lam_min"] == pytest.approx(lam[0]) and out["lam_max"] == pytest.approx(lam[-1])
    for key in ("min", "max"):
        v = out[f"v_{key}"]
        assert np.all(v[c.fixed] == 0.0)
        assert np.max(np.abs(np.sum(theta[c.spheres] * v[c.spheres], axis=1))) < 1e-14
        vals, s = out[key], out[f"s_{key}"]
        h = s[3] - s[2]
        second = (vals[1] - 2 * vals[2] + vals[3]) / h**2
        assert second == pytest.approx(out[f"lam_{key}"], rel=1e-4, abs=1e-6)


def test_live_run_in_the_app_shows_the_riemannian_spectrum():
    """The explorer's live run of a unit-norm preset: the flow stays on the sphere, the
    output weight stays at 1, and the spectra it plots are the Riemannian Hessian's
    (d − 1 = 3 values), ending at the report's minimum."""
    import asyncio
    from pathlib import Path

    from helpers import wait_for

    from core.config import load_config
    from explorer.app import ExplorerApp
    from explorer.screens.run import RunScreen

    preset = Path(__file__).parents[1] / "explorer" / "presets" / "multi_index_below.toml"
    app = ExplorerApp(config=load_config(preset), show_clock=False)
    seen: dict = {}

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "run screen", 10)
            screen = app.screen
            await wait_for(pilot, lambda: screen.state == "done", "run to the end", 240)
            seen["theta"] = np.asarray(screen.run.theta)
            seen["spectrum"] = screen.run.spectrum
            seen["min"] = list(screen.run.spec_min)

    asyncio.run(scenario())
    theta, spectrum = seen["theta"], seen["spectrum"]
    assert abs(np.linalg.norm(theta[:4]) - 1.0) <= 1e-12 and theta[4] == 1.0
    assert spectrum.eigenvalues.shape == (3,) and spectrum.index == 0
    assert min(seen["min"]) < -0.5 < 0 < seen["min"][-1]  # left the index-2 saddle w̄
