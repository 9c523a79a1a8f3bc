"""The teaching presets (explorer/presets/*.toml) and the shipped demo sessions (sessions/).

Fast checks: every preset parses, builds and carries a header saying what to watch; every
preset has a shipped session made from exactly that config; each session's report shows
the phenomenon its preset promises — re-derived here from the stored parameters with
independent references (the objective re-evaluated, closed forms of the teacher, fresh
samples), never by trusting the stored numbers alone.

Slow check (``-m slow``): re-running each preset reproduces its shipped session.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.activations import get_activation
from core.analysis import hessian_spectrum
from core.config import config_to_dict, load_config, params_dict
from core.networks import unflatten
from core.problem import build_problem, make_objective
from core.runner import run_config, session_report
from core.session import load_session
from core.surgery import merge_neurons

ROOT = Path(__file__).resolve().parents[1]
PRESET_DIR = ROOT / "explorer" / "presets"
SESSION_DIR = ROOT / "sessions"
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
PROMISED = {
    "teacher_recovery",
    "channel_to_infinity",
    "copy_or_average",
    "symmetry_saddle",
    "saddle_to_saddle",
    "deep_linear_infinite",
    "multi_index_below",
    "multi_index_above",
}
MAX_SESSIONS_BYTES = 2 * 1024 * 1024


def _session(name: str):
    return load_session(SESSION_DIR / name)


def _refined_theta(session) -> np.ndarray:
    assert session.refined_theta is not None, "session has no refined point"
    return np.asarray(session.refined_theta)


def _grad_inf(objective, theta) -> float:
    return float(jnp.max(jnp.abs(objective.grad(jnp.asarray(theta)))))


def _make_demo_module():
    spec = importlib.util.spec_from_file_location(
        "make_demo_sessions", ROOT / "scripts" / "make_demo_sessions.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- presets


def test_the_promised_presets_exist():
    assert set(PRESETS) >= PROMISED, f"missing presets: {sorted(PROMISED - set(PRESETS))}"


@pytest.mark.parametrize("name", PRESETS)
def test_preset_parses_builds_and_has_a_header(name):
    path = PRESET_DIR / f"{name}.toml"
    text = path.read_text(encoding="utf-8")
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 3, f"{name}: needs a header comment of a few lines"
    assert "watch" in " ".join(header).lower(), f"{name}: header should say what to watch"

    cfg = load_config(path)
    problem = build_problem(cfg)
    assert problem.theta0.shape == (problem.spec.n_params,)
    loss = float(problem.objective.loss(jnp.asarray(problem.theta0)))
    assert np.isfinite(loss) and (loss > 0 or cfg.data.loss == "correlation")  # −E[f f*] < 0
    # a demo must fit in a classroom: the wall-clock cap is the safety net, not the plan
    assert cfg.dynamics.max_seconds <= 120


# ----------------------------------------------------------------------------- sessions


def test_every_preset_has_a_shipped_session_and_nothing_else():
    shipped = sorted(p.name for p in SESSION_DIR.iterdir() if p.is_dir())
    assert shipped == PRESETS


def test_shipped_sessions_are_small():
    total = sum(f.stat().st_size for f in SESSION_DIR.rglob("*") if f.is_file())
    assert total < MAX_SESSIONS_BYTES, f"sessions/ holds {total} bytes"


@pytest.mark.parametrize("name", PRESETS)
def test_session_was_made_from_its_preset(name):
    session = _session(name)
    preset = load_config(PRESET_DIR / f"{name}.toml")
    assert config_to_dict(session.config) == config_to_dict(preset), (
        f"sessions/{name} is stale: rerun python scripts/make_demo_sessions.py {name}"
    )
    report = session_report(session)
    assert report["stop_reason"] in ("t_max", "converged", "refined"), report["stop_reason"]
    assert "partial" not in report


@pytest.mark.parametrize("name", PRESETS)
def test_session_report_passes_the_generator_checks(name):
    session = _session(name)
    loss = [float(v) for seg in session.segments for v in seg.loss]
    problems = _make_demo_module().check_report(name, session_report(session), loss)
    assert problems == []


def test_teacher_recovery_reaches_the_global_minimum():
    session = _session("teacher_recovery")
    report = session_report(session)
    problem = build_problem(session.config)
    assert session.config.student.widths == session.config.teacher.widths
    theta = _refined_theta(session)
    obj = problem.objective
    loss = float(obj.loss(jnp.asarray(theta)))
    assert loss < 1e-20 and report["refined"]["loss"] < 1e-20
    assert _grad_inf(obj, theta) < 1e-10
    assert report["classification"] == "minimum"
    # zero loss with as many neurons as the teacher: the student is the teacher up to a
    # permutation — each student neuron's (w, b, a) equals one teacher neuron's
    s = unflatten(problem.spec, theta)
    t = unflatten(problem.teacher.spec, np.asarray(problem.teacher.theta))
    sv = np.column_stack([s["w1"], s["b1"], s["w2"][0]])
    tv = np.column_stack([t["w1"], t["b1"], t["w2"][0]])
    dist = np.linalg.norm(sv[:, None, :] - tv[None, :, :], axis=2)
    match = dist.argmin(axis=1)
    assert sorted(match) == list(range(tv.shape[0]))
    assert dist.min(axis=1).max() < 1e-6
    assert [n["role"] for n in report["neurons"]] == ["copy"] * tv.shape[0]
    # a strict minimum of the exact Hessian (finite data, no symmetry left at zero loss)
    assert hessian_spectrum(np.asarray(obj.hessian(jnp.asarray(theta)))).eigenvalues[0] > 0


def test_channel_to_infinity_forms_the_teachers_gated_linear_unit():
    session = _session("channel_to_infinity")
    report = session_report(session)
    cfg = session.config
    assert report["classification"] == "channel"
    (ch,) = report["channels"]
    assert ch["neurons"] == [0, 1]
    u, v = np.asarray(cfg.teacher.u), np.asarray(cfg.teacher.v)
    # the target is the GLU (v·x) σ'(u·x): the channel's limit must be that very function,
    # c σ(w·x) + A (Δ·x) σ'(w·x) with c → 0, w → u, A Δ → v
    assert abs(ch["c"]) < 1e-2 * abs(ch["A"])
    np.testing.assert_allclose(ch["w"], u, rtol=0, atol=1e-2 * np.linalg.norm(u))
    np.testing.assert_allclose(ch["A"] * np.asarray(ch["delta"]), v, atol=1e-2)
    assert ch["epsilon"] < 0.1 * np.linalg.norm(u)

    # independently: the pair's output on fresh inputs is close to the GLU target
    p = unflatten(session.final_spec, session.final_theta)
    w1, a = np.asarray(p["w1"]), np.asarray(p["w2"])[0]
    assert a[0] * a[1] < 0 and min(abs(a)) > 5, f"output weights {a} have not diverged"
    eps = 0.5 * np.linalg.norm(w1[0] - w1[1])
    assert eps == pytest.approx(ch["epsilon"], rel=0.05)  # report is at the refined point
    x = np.random.default_rng(0).standard_normal((4000, 2))
    act = get_activation("softplus")
    pair = np.asarray(act.f(jnp.asarray(x @ w1.T))) @ a
    target = (x @ v) * np.asarray(act.df(jnp.asarray(x @ u)))
    rel = np.sqrt(np.mean((pair - target) ** 2) / np.mean(target**2))
    assert rel < 1e-2

    # λmax grows like 1/ε² along the recorded flow: fit log λmax against log ε over the
    # asymptotic stretch ε < 0.15 (at larger ε the O(1) curvature of the rest still shows)
    seg = session.final_segment
    obj = build_problem(cfg).objective
    late = np.unique(np.linspace(len(seg.t) // 2, len(seg.t) - 1, 8).astype(int))
    eps_t, lam_t = [], []
    for k in late:
        q = unflatten(seg.spec, seg.theta[k])
        eps_t.append(0.5 * np.linalg.norm(np.asarray(q["w1"][0]) - np.asarray(q["w1"][1])))
        lam_t.append(np.linalg.eigvalsh(np.asarray(obj.hessian(jnp.asarray(seg.theta[k]))))[-1])
    eps_t, lam_t = np.asarray(eps_t), np.asarray(lam_t)
    keep = eps_t < 0.15
    assert keep.sum() >= 3 and eps_t[keep].max() / eps_t[keep].min() > 1.5
    slope = np.polyfit(np.log(eps_t[keep]), np.log(lam_t[keep]), 1)[0]
    assert -2.2 < slope < -1.8, f"λmax ∝ ε^{slope:.2f}, expected ε^-2"
    # the loss keeps falling all the way (no plateau, no critical point reached)
    assert np.all(np.diff(seg.loss[late]) < 0)


def test_copy_or_average_roles_match_the_teacher():
    session = _session("copy_or_average")
    report = session_report(session)
    problem = build_problem(session.config)
    theta = _refined_theta(session)
    assert _grad_inf(problem.objective, theta) < 1e-10
    assert report["classification"] == "minimum"
    assert hessian_spectrum(np.asarray(problem.objective.hessian(jnp.asarray(theta)))).index == 0

    tw = np.asarray(unflatten(problem.teacher.spec, np.asarray(problem.teacher.theta))["w1"])
    p = unflatten(problem.spec, theta)
    sw, a = np.asarray(p["w1"]), np.asarray(p["w2"])[0]
    roles = [n["role"] for n in report["neurons"]]
    assert sorted(roles) == ["average", "copy"]
    i_copy, i_avg = roles.index("copy"), roles.index("average")
    cos = sw @ tw.T / np.outer(np.linalg.norm(sw, axis=1), np.linalg.norm(tw, axis=1))
    j = int(np.argmax(np.abs(cos[i_copy])))
    # the copy is a teacher neuron (erf is odd: ±(w, a) is the same neuron) ...
    assert abs(cos[i_copy, j]) > 1 - 1e-8
    np.testing.assert_allclose(np.sign(cos[i_copy, j]) * sw[i_copy], tw[j], atol=1e-6)
    assert np.sign(cos[i_copy, j]) * a[i_copy] == pytest.approx(1.0, abs=1e-6)
    # ... and the other neuron points along the sum of the remaining teacher neurons
    rest = tw[[k for k in range(tw.shape[0]) if k != j]].sum(axis=0)
    c = sw[i_avg] @ rest / (np.linalg.norm(sw[i_avg]) * np.linalg.norm(rest))
    assert abs(c) > 1 - 1e-8


def test_symmetry_saddle_starts_at_a_split_saddle_and_escapes():
    cfg = load_config(PRESET_DIR / "symmetry_saddle.toml")
    problem = build_problem(cfg)
    obj, theta0 = problem.objective, problem.theta0
    k = cfg.student.widths[0]
    p0 = unflatten(problem.spec, theta0)
    # two neurons share their input weights (to the size of the nudge) ...
    w_diff = np.linalg.norm(np.asarray(p0["w1"][0]) - np.asarray(p0["w1"][k - 1]))
    assert w_diff < 1e-2
    # ... the start is (nearly) critical with a direction of negative curvature ...
    spec0 = hessian_spectrum(np.asarray(obj.hessian(jnp.asarray(theta0))))
    assert spec0.index >= 1
    assert _grad_inf(obj, theta0) < 1e-4  # vs O(1) at a random start
    # ... and merging the pair gives a critical point of the narrower net (what was split)
    small_spec, small_theta = merge_neurons(problem.spec, theta0, 0, k - 1)
    small_obj = make_objective(cfg, small_spec, problem.teacher, problem.data)
    assert _grad_inf(small_obj, small_theta) < 1e-4
    assert float(small_obj.loss(jnp.asarray(small_theta))) == pytest.approx(
        float(obj.loss(jnp.asarray(theta0))), rel=1e-4
    )

    session = _session("symmetry_saddle")
    report = session_report(session)
    seg = session.final_segment
    np.testing.assert_allclose(seg.theta[0], theta0, rtol=0, atol=0)
    assert seg.loss[-1] < 1e-6 * seg.loss[0]
    assert report["classification"] == "minimum"
    theta = _refined_theta(session)
    assert float(obj.loss(jnp.asarray(theta))) < 1e-15
    # the escape is a plateau then a drop: the first third of the (log-spaced) saves is flat
    n = len(seg.loss)
    assert np.all(np.abs(seg.loss[: n // 3] / seg.loss[0] - 1) < 1e-2)


def test_deep_linear_infinite_visits_the_eckart_young_losses_in_turn():
    """Infinite data: the plateaus are exactly ½ Σ_{i>r} s_i² (s from numpy's SVD of the
    teacher's product), the stored losses are ½‖W3 W2 W1 − M‖²_F recomputed here with
    numpy, each plateau's end-to-end map has rank r, and the run ends at the minimum."""
    session = _session("deep_linear_infinite")
    cfg = session.config
    assert cfg.data.kind == "gaussian-infinite" and len(cfg.student.widths) >= 2
    tp = params_dict(cfg.teacher.params)
    M = tp["w2"] @ tp["w1"]
    s = np.linalg.svd(M, compute_uv=False)
    levels = [0.5 * float(np.sum(s[r:] ** 2)) for r in range(len(s))]
    seg = session.final_segment
    spec = seg.spec

    def product(theta) -> np.ndarray:
        q = unflatten(spec, np.asarray(theta))
        a = np.asarray(q["w1"])
        for layer in range(2, len(spec.widths) + 2):
            a = np.asarray(q[f"w{layer}"]) @ a
        return a

    for i in np.linspace(0, len(seg.loss) - 1, 9).astype(int):
        value = 0.5 * np.sum((product(seg.theta[i]) - M) ** 2)
        np.testing.assert_allclose(seg.loss[i], value, rtol=1e-10, atol=1e-25)
    times = []
    for r, value in enumerate(levels):
        on = np.flatnonzero(np.abs(seg.loss / value - 1) < 1e-4)
        assert on.size >= 3, f"no plateau at the rank-{r} loss {value:.4g}"
        sv = np.linalg.svd(product(seg.theta[on[on.size // 2]]), compute_uv=False)
        assert int(np.sum(sv > 0.5 * s[-1])) == r
        times.append(seg.t[on[0]])
    assert times == sorted(times)
    theta = _refined_theta(session)
    assert 0.5 * np.sum((product(theta) - M) ** 2) < 1e-20
    assert session_report(session)["classification"] == "minimum"


def test_saddle_to_saddle_visits_the_best_rank_r_fits_in_turn():
    session = _session("saddle_to_saddle")
    cfg = session.config
    problem = build_problem(cfg)
    assert len(cfg.student.widths) >= 2 and cfg.student.activation == "identity"
    tp = params_dict(cfg.teacher.params)
    T = tp["w2"] @ tp["w1"]
    x = np.asarray(problem.data.x)
    C = x.T @ x / x.shape[0]  # the loss is ½ tr((T − M) C (T − M)ᵀ) for an end-to-end M
    lam = np.sort(np.linalg.eigvalsh(T @ C @ T.T))[::-1]
    # best rank-r fit of a noiseless linear target (reduced-rank regression)
    plateaus = [0.5 * lam[r:].sum() for r in range(len(lam))]

    seg = session.final_segment
    spec = seg.spec

    def rank(theta) -> int:
        q = unflatten(spec, theta)
        m = np.asarray(q["w1"])
        for layer in range(2, len(spec.widths) + 2):
            m = np.asarray(q[f"w{layer}"]) @ m
        s = np.linalg.svd(m, compute_uv=False)
        return int(np.sum(s > 0.5 * np.sqrt(lam[-1])))

    times = []
    for r, value in enumerate(plateaus):
        on = np.flatnonzero(np.abs(seg.loss / value - 1) < 1e-4)
        assert on.size >= 3, f"no plateau at the rank-{r} loss {value:.4g}"
        assert rank(seg.theta[on[on.size // 2]]) == r
        times.append(seg.t[on[0]])
    assert times == sorted(times)
    # plateaus are spread out on the log-time axis (visible steps on a log-log plot)
    assert np.all(np.diff(np.log10(times[1:])) > 0.3)
    # a plateau point is near a saddle: negative curvature there
    mid = np.flatnonzero(np.abs(seg.loss / plateaus[1] - 1) < 1e-4)
    h = np.asarray(problem.objective.hessian(jnp.asarray(seg.theta[mid[mid.size // 2]])))
    assert hessian_spectrum(h).index >= 1
    # and the run ends at the global minimum
    assert seg.loss[-1] < 1e-20
    assert session_report(session)["classification"] == "minimum"


def _sphere_reference(v: np.ndarray, p: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Riemannian gradient (d−1,) and chart Hessian eigenvalues (d−1,) of L(w) = −Σ_j (w·v_j)^p
    on the unit sphere at w, by jax autodiff of z ↦ L((w + Bz)/‖w + Bz‖), B ⊥ w orthonormal
    (independent of the project's objective and manifold code)."""
    import jax

    d = v.shape[1]
    q, _ = np.linalg.qr(np.column_stack([w, np.random.default_rng(0).normal(size=(d, d - 1))]))
    basis, vj, wj = jnp.asarray(q[:, 1:]), jnp.asarray(v), jnp.asarray(w)

    def chart(z):
        u = wj + basis @ z
        return -jnp.sum((vj @ (u / jnp.linalg.norm(u))) ** p)

    z0 = jnp.zeros(d - 1)
    return np.asarray(jax.grad(chart)(z0)), np.linalg.eigvalsh(np.asarray(jax.hessian(chart)(z0)))


@pytest.mark.parametrize("name", ["multi_index_below", "multi_index_above"])
def test_multi_index_presets_straddle_the_threshold(name):
    """The index vectors have equal overlaps β on the promised side of β_c = (p−2)/(k+p−2);
    the start is 0.01 rad from the average direction w̄, a saddle of index k − 1 (below) or
    a minimum (above) by the autodiff reference; the shipped flow stays on the sphere to
    1e-12 and ends at a strict minimum of the reference loss on the sphere: back at w̄
    (above), or near the index vector the start leaned to (below)."""
    cfg = load_config(PRESET_DIR / f"{name}.toml")
    p = int(cfg.teacher.activation.removeprefix("he"))
    v = np.asarray(params_dict(cfg.teacher.params)["w1"])
    k = v.shape[0]
    gram = v @ v.T
    beta = gram[0, 1]
    np.testing.assert_allclose(gram, (1 - beta) * np.eye(k) + beta, atol=1e-14)
    beta_c = (p - 2) / (k + p - 2)
    below = name == "multi_index_below"
    assert (beta < beta_c) if below else (beta > beta_c)
    assert abs(beta - beta_c) <= 0.1  # "just" below/above
    wbar = v.sum(axis=0) / np.linalg.norm(v.sum(axis=0))
    grad, eig = _sphere_reference(v, p, wbar)
    assert np.max(np.abs(grad)) < 1e-14
    assert int(np.sum(eig < -1e-9)) == (k - 1 if below else 0)
    loss_bar = -k * ((1 + (k - 1) * beta) / k) ** (p / 2)

    problem = build_problem(cfg)
    w0 = np.asarray(unflatten(problem.spec, problem.theta0)["w1"])[0]
    assert 0.005 < np.arccos(min(w0 @ wbar, 1.0)) < 0.02

    session = _session(name)
    seg = session.final_segment
    for theta in seg.theta:
        w = np.asarray(unflatten(seg.spec, theta)["w1"])
        assert abs(np.linalg.norm(w) - 1) < 1e-12
    w_end = np.asarray(unflatten(seg.spec, _refined_theta(session))["w1"])[0]
    grad, eig = _sphere_reference(v, p, w_end)
    assert np.max(np.abs(grad)) < 1e-10
    assert eig[0] > 0  # a strict minimum on the sphere
    report = session_report(session)
    assert report["classification"] == "minimum"
    if below:
        j = int(np.argmax(w0 @ v.T))
        assert np.argmax(w_end @ v.T) == j and w_end @ v[j] > 0.9
        assert w_end @ wbar < 0.95  # it left the average
        assert report["refined"]["loss"] < loss_bar - 0.05
    else:
        assert w_end @ wbar > 1 - 1e-12
        assert report["refined"]["loss"] == pytest.approx(loss_bar, rel=1e-12)


# ----------------------------------------------------------------------------- slow


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_rerunning_a_preset_reproduces_its_session(name, tmp_path):
    cfg = load_config(PRESET_DIR / f"{name}.toml")
    out = run_config(cfg, tmp_path / name)
    new, old = session_report(load_session(out)), session_report(_session(name))
    assert new["classification"] == old["classification"]
    np.testing.assert_allclose(new["final"]["t"], old["final"]["t"], rtol=1e-6)
    a, b = new["final"]["loss"], old["final"]["loss"]
    if cfg.data.loss == "correlation":  # −E[f f*] < 0, O(1) at every critical point
        assert a == pytest.approx(b, rel=1e-6), (a, b)
    else:
        assert abs(np.log10(a) - np.log10(b)) < 0.5, (a, b)
