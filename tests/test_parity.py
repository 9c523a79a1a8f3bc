"""Parity with MLPGradientFlow.jl: its activation names, and the cases of its test suite
(``test/runtests.jl``: "loss", "gradient", "hessian", the ``maxnorm`` barrier,
"crossentropy", "standard normal input") carried over as cases, checked against autodiff.

MLPGradientFlow's conventions differ in two places, so the cases compare with autodiff of
*this* project's definitions: the MSE loss here is ½·mean‖r‖² (there mean‖r‖²), and the
barrier here is ½ Σ_p max(0, |θ_p| − maxnorm)² (there (‖θ‖ − maxnorm)³/3 on a weight norm).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.config import config_to_dict, config_to_toml, default_config, parse_config
from core.networks import forward, make_spec
from core.objectives import Dataset, mse_objective
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


# ------------------------------------------- the cases of MLPGradientFlow's test suite

# Reference activations, written independently of core.activations.
REF_ACT = {
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda z: z,
    "g": lambda z: jax.nn.sigmoid(4 * z) + jax.nn.softplus(z),
    "tanh": jnp.tanh,
    "relu": lambda z: jnp.maximum(z, 0),
    "square": lambda z: z**2,
    "softplus": jax.nn.softplus,
    "gelu": lambda z: z * 0.5 * (1 + jax.scipy.special.erf(z / jnp.sqrt(2.0))),
}


def _layers(spec):
    """[(name of W, name of b or None, per-neuron names or None for the output)] per layer."""
    out = []
    for l in range(1, spec.n_layers + 1):
        acts = spec.activations[l - 1] if l < spec.n_layers else None
        out.append((f"w{l}", f"b{l}" if spec.bias[l - 1] else None, acts))
    return out


def reference_forward(spec, theta, x):
    """MLPGradientFlow's fw_forward, h ← σ.(W h .+ b) layer by layer, with the flat θ split by
    hand (w1, b1, w2, …, each W row-major) — shares no code with core.networks."""
    offset, h = 0, x.T  # columns are samples, as in Julia
    sizes = spec.layer_sizes
    for l, (_, b_name, acts) in enumerate(_layers(spec), start=1):
        n_out, n_in = sizes[l], sizes[l - 1]
        w = theta[offset : offset + n_out * n_in].reshape(n_out, n_in)
        offset += n_out * n_in
        z = w @ h
        if b_name is not None:
            z = z + theta[offset : offset + n_out][:, None]
            offset += n_out
        if acts is not None:
            z = jnp.stack([REF_ACT[a](z[i]) for i, a in enumerate(acts)])
        h = z
    assert offset == theta.shape[0]
    return h.T


def _mlpgf_net(layers, d, seed):
    """A spec from MLPGradientFlow-style ((width, activation(s), bias), …) hidden layers plus
    an identity output layer (width, "identity", bias), and θ ~ N(0, 1) as its randn."""
    *hidden, (k_out, out_act, out_bias) = layers
    assert out_act == "identity"
    spec = make_spec(
        d,
        [w for w, _, _ in hidden],
        [(a,) * w if isinstance(a, str) else a for w, a, _ in hidden],
        [b for _, _, b in hidden] + [out_bias],
        k_out,
    )
    theta = jax.random.normal(jax.random.PRNGKey(seed), (spec.n_params,))
    return spec, theta


def _check_against_autodiff(spec, theta, x, y, maxnorm=None, tol=1e-11):
    obj = mse_objective(spec, Dataset(x, y), maxnorm=maxnorm)

    def ref(t):
        value = 0.5 * jnp.mean(jnp.sum((reference_forward(spec, t, x) - y) ** 2, axis=1))
        if maxnorm is not None:
            value = value + 0.5 * jnp.sum(jnp.maximum(jnp.abs(t) - maxnorm, 0.0) ** 2)
        return value

    np.testing.assert_allclose(forward(spec, theta, x), reference_forward(spec, theta, x))
    assert float(obj.loss(theta)) == pytest.approx(float(ref(theta)), rel=1e-13)
    assert _rel(obj.grad(theta), jax.jit(jax.grad(ref))(theta)) < tol  # jit: compile once,
    h = np.asarray(obj.hessian(theta))  # not hundreds of eager dispatches
    assert _rel(h, jax.jit(jax.hessian(ref))(theta)) < tol
    return obj, h


def test_mlpgf_gradient_case() -> None:
    """Its "gradient" testset: ((4, sigmoid, bias), (2, identity, no bias), (2, g, bias),
    (2, identity, no bias)) on 2×5 inputs and targets.  MLPGradientFlow's loss is
    mean‖r‖² (twice the ½·mean‖r‖² here): that relation is checked too."""
    layers = ((4, "sigmoid", True), (2, "identity", False), (2, "g", True), (2, "identity", False))
    spec, theta = _mlpgf_net(layers, 2, 0)
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    x, y = jax.random.normal(kx, (5, 2)), jax.random.normal(ky, (5, 2))
    obj, _ = _check_against_autodiff(spec, theta, x, y)
    mlpgf_loss = jnp.sum((reference_forward(spec, theta, x) - y) ** 2) / 5
    assert 2 * float(obj.loss(theta)) == pytest.approx(float(mlpgf_loss), rel=1e-13)


def test_mlpgf_hessian_case() -> None:
    """Its "hessian" testset: ((3, sigmoid, bias), (2, identity, no bias), (2, g, bias),
    (5, identity, no bias)) on 2×3 inputs, 5×3 targets: P = 31 and a 31×31 spectrum."""
    layers = ((3, "sigmoid", True), (2, "identity", False), (2, "g", True), (5, "identity", False))
    spec, theta = _mlpgf_net(layers, 2, 2)
    assert spec.n_params == 31
    kx, ky = jax.random.split(jax.random.PRNGKey(3))
    x, y = jax.random.normal(kx, (3, 2)), jax.random.normal(ky, (3, 5))
    _, h = _check_against_autodiff(spec, theta, x, y)
    from core.analysis import hessian_spectrum

    assert hessian_spectrum(h).eigenvalues.shape == (31,)


def test_mlpgf_barrier_case() -> None:
    """Its maxnorm checks (value, gradient and Hessian with the barrier active), for this
    project's barrier ½ Σ max(0, |θ_p| − maxnorm)², at maxnorm = half the largest |θ_p|."""
    layers = ((4, "sigmoid", True), (2, "identity", False), (2, "g", True), (2, "identity", False))
    spec, theta = _mlpgf_net(layers, 2, 4)
    maxnorm = 0.5 * float(jnp.max(jnp.abs(theta)))
    assert int(jnp.sum(jnp.abs(theta) > maxnorm)) >= 3
    kx, ky = jax.random.split(jax.random.PRNGKey(5))
    x, y = jax.random.normal(kx, (5, 2)), jax.random.normal(ky, (5, 2))
    obj, _ = _check_against_autodiff(spec, theta, x, y, maxnorm=maxnorm)
    plain = mse_objective(spec, Dataset(x, y))
    assert float(obj.loss(theta)) > float(plain.loss(theta))  # the barrier adds something
    inside = jnp.clip(theta, -maxnorm, maxnorm)
    assert float(obj.loss(inside)) == float(plain.loss(inside))  # and nothing inside the box


@pytest.mark.parametrize(
    "mix",
    [
        ("identity", "relu", "square", "softplus", "tanh"),
        ("square", "square", "identity", "identity", "relu"),
        ("tanh", "identity", "gelu", "relu", "g"),
        ("relu", "square", "relu", "square", "relu"),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_mlpgf_mixed_activations_case(mix, bias) -> None:
    """Its "mixed activations vs finite differences" nets (5 mixed neurons, 3-d inputs, 64
    samples), here against autodiff (relu's kink is hit with probability 0)."""
    spec, theta = _mlpgf_net(((5, mix, bias), (1, "identity", True)), 3, 6)
    theta = 0.4 * theta
    kx, ky = jax.random.split(jax.random.PRNGKey(7))
    x, y = jax.random.normal(kx, (64, 3)), jax.random.normal(ky, (64, 1))
    _, h = _check_against_autodiff(spec, theta, x, y)
    assert not np.any(np.isnan(h))


def test_mlpgf_mixed_two_hidden_layers_case() -> None:
    """Its "mixed activations in a 2-hidden-layer net", as a config: ``activations`` with a
    per-neuron list for each layer."""
    d = config_to_dict(default_config())
    d["teacher"] |= {"input_dim": 3, "output_dim": 2}
    d["student"] = {
        "widths": [4, 3],
        "activations": [["tanh", "tanh", "relu", "identity"], ["softplus", "square", "gelu"]],
        "bias": True,
    }
    spec = parse_config(d).student_spec()
    assert spec.activations[1] == ("softplus", "square", "gelu")
    theta = 0.4 * jax.random.normal(jax.random.PRNGKey(8), (spec.n_params,))
    kx, ky = jax.random.split(jax.random.PRNGKey(9))
    x, y = jax.random.normal(kx, (64, 3)), jax.random.normal(ky, (64, 2))
    _check_against_autodiff(spec, theta, x, y)


def test_mlpgf_uniform_tuple_is_the_scalar_net() -> None:
    """Its "uniform tuple == scalar": the same spec, hence bit-for-bit the same numbers; and
    its "Net" testset's ((2, sigmoid, no bias), (4, identity, bias)) has 16 parameters."""
    for name in ("softplus", "tanh", "relu", "gelu", "sigmoid", "g", "square", "identity"):
        assert make_spec(3, [4], (name,) * 4) == make_spec(3, [4], name)
    assert make_spec(2, [2], "sigmoid", [False, True], 4).n_params == 16


def test_mlpgf_infinite_data_case() -> None:
    """Its "standard normal input" testset, bias-free (infinite data here needs no biases):
    a softplus teacher of width 2 (θ ~ N(0, 1)), a tanh student of width 2, finite data
    N = 10⁵ vs the exact Gaussian expectation.  Loss, gradient and Hessian agree within
    5 standard errors of their sample means (per-sample terms' std / √N)."""
    from core.gaussian import gaussian_objective
    from core.teachers import network_teacher

    d, n = 2, 100_000
    t_spec, t_theta = _mlpgf_net(((2, "softplus", False), (1, "identity", False)), d, 10)
    s_spec, theta = _mlpgf_net(((2, "tanh", False), (1, "identity", False)), d, 11)
    teacher = network_teacher(t_spec, t_theta)
    x = jax.random.normal(jax.random.PRNGKey(12), (n, d))
    finite = mse_objective(s_spec, Dataset(x, teacher(x)))
    infinite = gaussian_objective(s_spec, teacher)

    def per_sample(t, xn, yn):
        return 0.5 * jnp.sum((forward(s_spec, t, xn[None]) - yn) ** 2)

    y = teacher(x)
    losses = jax.jit(jax.vmap(per_sample, (None, 0, 0)))(theta, x, y)
    grads = jax.jit(jax.vmap(jax.grad(per_sample), (None, 0, 0)))(theta, x, y)
    hessians = jax.jit(jax.vmap(jax.hessian(per_sample), (None, 0, 0)))(theta, x, y)
    for value, terms, exact in (
        (finite.loss(theta), losses, infinite.loss(theta)),
        (finite.grad(theta), grads, infinite.grad(theta)),
        (finite.hessian(theta), hessians, infinite.hessian(theta)),
    ):
        np.testing.assert_allclose(value, jnp.mean(terms, axis=0), rtol=1e-10, atol=1e-13)
        se = np.asarray(jnp.std(terms, axis=0)) / np.sqrt(n)
        err = np.abs(np.asarray(value) - np.asarray(exact))
        assert np.all(err <= 5 * se + 1e-12), (err / se).max()
    # and the sampling error is small: the two objectives are the same landscape
    assert abs(float(finite.loss(theta)) / float(infinite.loss(theta)) - 1) < 0.02


def test_rmse_and_accuracy_in_the_sweep_summary() -> None:
    """summary.csv rows carry the report's rmse / accuracy at the analysed (refined) point."""
    from types import SimpleNamespace

    from core.sweep import RUN_COLUMNS, SweepRun, run_row

    run = SweepRun("r0", (("seed", 1),), default_config())
    report = {
        "final": {"loss": 0.5, "rmse": 1.0},
        "refined": {"loss": 0.02, "rmse": 0.2},
        "classification": "minimum",
        "spectrum": {"index": 0},
    }
    session = SimpleNamespace(report=report, analysis={"loss": 0.02}, config=run.config)
    row = run_row(run, session)
    assert {"rmse", "accuracy"} <= set(RUN_COLUMNS)
    assert row["rmse"] == 0.2 and row["accuracy"] is None
    report["refined"] = None
    report["final"] = {"loss": 0.3, "accuracy": 0.75}
    row = run_row(run, session)
    assert row["rmse"] is None and row["accuracy"] == 0.75


def test_setup_screen_keeps_per_layer_activations() -> None:
    """A config naming ``activations`` opens in the explorer's setup form valid, and the form
    hands it back unchanged (the one-name activation select does not override it)."""
    cfg = parse_config(_mapping(widths=[3, 2], activations=["g", ["tanh", "relu"]]))

    async def check(pilot, screen) -> None:
        assert screen.config.student_spec() == cfg.student_spec()
        assert not screen.query_one("#run").disabled

    in_setup_form(cfg, check)


def in_setup_form(cfg, check) -> None:
    """Open ``cfg`` in the explorer's setup form, which must find it valid, then
    ``await check(pilot, screen)``."""
    import asyncio

    from explorer.app import ExplorerApp
    from explorer.screens.setup import SetupScreen

    app = ExplorerApp(cfg, autostart=False)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SetupScreen)
            assert screen.error is None
            await check(pilot, screen)

    asyncio.run(scenario())


def test_rmse_for_infinite_data_matches_samples() -> None:
    """Infinite data: rmse = √(2(L − B)/K) from the exact expectation; against √mean r² over
    10⁵ fresh Gaussian samples (within 5 standard errors of the mean square)."""
    from pathlib import Path

    from core.config import load_config
    from core.networks import forward_jit
    from core.problem import build_problem

    root = Path(__file__).resolve().parents[1]
    problem = build_problem(load_config(root / "explorer" / "presets" / "copy_or_average.toml"))
    assert problem.data is None
    theta = problem.theta0
    rmse = problem.fit_metrics(problem.spec, theta)["rmse"]
    x = jax.random.normal(jax.random.PRNGKey(21), (100_000, problem.spec.input_dim))
    r2 = np.asarray((forward_jit(problem.spec, theta, x) - problem.teacher(x)) ** 2)[:, 0]
    se = r2.std() / np.sqrt(len(r2))
    assert abs(rmse**2 - r2.mean()) < 5 * se


# ------------------------------------------------------------ one bias flag per layer

#: MLPGradientFlow's nets with a bias flag per layer, as (input_dim, hidden widths,
#: activations per hidden layer, bias per layer (hidden layers, then the output), outputs).
PER_LAYER_BIAS_NETS = [
    # ((4, sigmoid, true), (2, identity, false), (2, g, true), (5, identity, false))
    (2, [4, 2, 2], ["sigmoid", "identity", "g"], [True, False, True, False], 5),
    # ((2, sigmoid, false), (4, identity, true))
    (2, [2], ["sigmoid"], [False, True], 4),
]


def _per_layer_bias_mapping(d, widths, acts, bias, k) -> dict:
    """Teacher and student both of the net's shape (the student's own seed and init)."""
    m = config_to_dict(default_config())
    net = {"widths": widths, "activations": acts, "bias": bias}
    m["teacher"] = {"kind": "random", "input_dim": d, "output_dim": k, **net}
    m["student"] = {**net, "init_scale": 1.0}
    m["data"] = {"kind": "gaussian", "samples": 12}
    return m


@pytest.mark.parametrize("net", PER_LAYER_BIAS_NETS)
def test_per_layer_bias_config_round_trip(net) -> None:
    """``bias = [true, false, …]``: one flag per layer, hidden layers then the output layer
    (make_spec's convention), for the student and a network teacher; it round-trips through
    the TOML mapping and text, and a list of equal flags is the one flag."""
    import tomllib

    d, widths, acts, bias, k = net
    cfg = parse_config(_per_layer_bias_mapping(*net))
    assert cfg.student.bias == tuple(bias) and cfg.teacher.bias == tuple(bias)
    assert cfg.student_spec().bias == tuple(bias) and cfg.teacher.spec().bias == tuple(bias)
    back = config_to_dict(cfg)
    assert back["student"]["bias"] == bias and back["teacher"]["bias"] == bias
    assert parse_config(back) == cfg
    assert parse_config(tomllib.loads(config_to_toml(cfg))) == cfg
    same = _per_layer_bias_mapping(d, widths, acts, [False] * len(bias), k)
    assert parse_config(same).student.bias is False


@pytest.mark.parametrize("net", PER_LAYER_BIAS_NETS)
def test_per_layer_bias_nets_against_autodiff(net) -> None:
    """The problem built from the config: its loss, gradient and Hessian equal autodiff of
    the independent reference forward pass (½·mean‖r‖²) on its data, and the teacher's
    targets are the reference forward pass of the teacher's θ."""
    from core.problem import build_problem

    problem = build_problem(parse_config(_per_layer_bias_mapping(*net)))
    spec, teacher = problem.spec, problem.teacher
    assert spec.bias == tuple(net[3]) and teacher.spec.bias == tuple(net[3])
    x, y = jnp.asarray(problem.data.x), jnp.asarray(problem.data.y)
    np.testing.assert_allclose(y, reference_forward(teacher.spec, teacher.theta, x), rtol=1e-12)

    def ref(t):
        return 0.5 * jnp.mean(jnp.sum((reference_forward(spec, t, x) - y) ** 2, axis=1))

    theta = problem.theta0
    obj = problem.objective
    assert float(obj.loss(theta)) == pytest.approx(float(ref(theta)), rel=1e-13)
    assert _rel(obj.grad(theta), jax.jit(jax.grad(ref))(theta)) < 1e-11
    assert _rel(obj.hessian(theta), jax.jit(jax.hessian(ref))(theta)) < 1e-11


@pytest.mark.parametrize("net", PER_LAYER_BIAS_NETS)
def test_per_layer_bias_sessions_save_and_load(tmp_path, net) -> None:
    """A short headless run of each net saves a session (with its analysis) that loads
    back with the same config and per-layer flags."""
    from core.runner import run_config

    m = _per_layer_bias_mapping(*net)
    m["dynamics"] = {"t_max": 1.0, "n_saves": 5}
    m["refine"] = {"method": "none"}
    cfg = parse_config(m)
    session = load_session(run_config(cfg, tmp_path / "s"))
    assert session.config == cfg
    assert session.final_spec.bias == tuple(net[3])
    assert session.final_segment.theta.shape[1] == cfg.student_spec().n_params
    assert session.analysis is not None and np.isfinite(session.analysis["loss"])


@pytest.mark.parametrize(
    ("table", "bias", "field", "message"),
    [
        ("student", [True, False], "student.bias", r"one flag per layer.*\(3 for widths = "
         r"\[4, 2\]\), got 2"),
        ("teacher", [True], "teacher.bias", r"\(2 for widths = \[3\]\), got 1"),
        ("student", [True, 1, False], r"student.bias\[1\]", "must be true or false, got 1"),
        ("student", "yes", "student.bias", "must be true or false"),
    ],
)  # fmt: skip
def test_per_layer_bias_errors_name_the_field(table, bias, field, message) -> None:
    from core.config import ConfigError

    m = config_to_dict(default_config())
    m["student"]["widths"] = [4, 2]
    m["teacher"]["widths"] = [3]
    m[table]["bias"] = bias
    with pytest.raises(ConfigError, match=f"^cfg.toml: {field}: .*{message}") as info:
        parse_config(m, "cfg.toml")
    assert "\n" not in str(info.value)


def test_per_layer_bias_refusals() -> None:
    """Per-layer flags only for MLP teachers; unit_norm reads the first layer's flag and
    infinite Gaussian data any flag."""
    from core.config import ConfigError

    m = config_to_dict(default_config())
    m["teacher"] = {"kind": "glu", "input_dim": 2, "u": [1.0, 0.0], "v": [0.0, 1.0]}
    m["teacher"] |= {"bias": [True, False]}
    with pytest.raises(ConfigError, match=r"teacher\.bias: one flag per layer only for kind"):
        parse_config(m)
    m = config_to_dict(default_config())
    m["student"] |= {"bias": [False, True], "unit_norm": True}
    assert parse_config(m).student.unit_norm  # first layer bias-free: fine
    m["student"]["bias"] = [True, False]
    with pytest.raises(ConfigError, match=r"student\.unit_norm: needs a bias-free first"):
        parse_config(m)
    m = config_to_dict(default_config())
    m["teacher"] |= {"bias": False}
    m["student"] |= {"bias": [False, True]}
    m["data"] = {"kind": "gaussian-infinite"}
    with pytest.raises(ConfigError, match=r"data\.kind: .*bias-free one-hidden-layer student"):
        parse_config(m)


def test_setup_screen_keeps_per_layer_bias() -> None:
    """Per-layer bias flags open in the setup form valid and kept, their checkbox labelled
    with the loaded flags; ticking the box replaces them by one flag for every layer."""
    from explorer.screens.setup import widget_id

    cfg = parse_config(_per_layer_bias_mapping(*PER_LAYER_BIAS_NETS[0]))

    async def check(pilot, screen) -> None:
        assert screen.config == cfg
        box = screen.query_one("#" + widget_id("student.bias"))
        assert str(box.label) == "per layer: on | off | on | off"
        teacher_box = screen.query_one("#" + widget_id("teacher.bias"))
        assert str(teacher_box.label) == "per layer: on | off | on | off"
        box.value = True
        await pilot.pause()
        assert screen.error is None
        assert screen.config.student.bias is True
        assert screen.config.teacher.bias == cfg.teacher.bias
        assert str(box.label) == "on"

    in_setup_form(cfg, check)


def test_square_differs_from_mlpgf_and_the_docs_say_so() -> None:
    """``square`` is z² here (MLPGradientFlow's is z²/2): the meaning stays (saved sessions
    use it) and docs/DESIGN.md's differences table says so plainly."""
    from pathlib import Path

    from core.activations import get_activation

    act = get_activation("square")
    z = jnp.asarray([-1.5, 0.5, 3.0])
    np.testing.assert_allclose(act(z), z**2)
    np.testing.assert_allclose(act.df(z), 2 * z)
    design = (Path(__file__).resolve().parents[1] / "docs" / "DESIGN.md").read_text()
    table = design.split("Differences from MLPGradientFlow.jl", 1)[1].split("\n\n", 2)[1]
    row = next(line for line in table.splitlines() if line.startswith("| `square`"))
    assert "z²" in row and "z²/2" in row


# ------------------------------------------------ selu and sigmoid_fast (MLPGradientFlow)


def test_selu_by_hand_with_mlpgradientflow_constants() -> None:
    """selu(z) = λz (z > 0), λα(eᶻ − 1) (z ≤ 0), λ = 1.05070098, α = 1.67326324 as in
    MLPGradientFlow.jl (not the exact self-normalising constants); σ′, σ″ written out in
    NumPy, including its one-sided values at the kink z = 0 (σ′(0) = λα, σ″(0) = λα)."""
    from core.activations import get_activation

    lam, alpha = 1.05070098, 1.67326324
    z = np.array([-30.0, -2.5, -0.2, 0.0, 0.7, 3.0, 800.0])
    neg = z <= 0
    selu = get_activation("selu")
    zj = jnp.asarray(z)
    f = np.where(neg, lam * alpha * (np.exp(np.minimum(z, 0)) - 1), lam * z)
    np.testing.assert_allclose(selu.f(zj), f, rtol=1e-15, atol=1e-16)
    df = np.where(neg, lam * alpha * np.exp(np.minimum(z, 0)), lam)
    np.testing.assert_allclose(selu.df(zj), df, rtol=1e-15)
    np.testing.assert_allclose(selu.d2f(zj), np.where(neg, df, 0.0), rtol=1e-15)
    assert float(selu.df(jnp.zeros(()))) == pytest.approx(lam * alpha, rel=1e-15)
    # no overflow in the unused branch: finite values and autodiff gradients far out
    assert np.all(np.isfinite(np.asarray(jax.vmap(jax.grad(selu.f))(zj))))
    # selu is neither odd nor even, and its z > 0 branch is linear
    assert not np.allclose(selu.f(-zj), -selu.f(zj)) and not np.allclose(selu.f(-zj), selu.f(zj))


def test_sigmoid_fast_is_the_logistic_sigmoid() -> None:
    """MLPGradientFlow's ``sigmoid`` is ``sigmoid_fast`` (a faster evaluation of the logistic
    function): here an alias of ``sigmoid``, stored by its canonical name."""
    from core.activations import get_activation

    z = np.linspace(-20, 20, 81)
    assert get_activation("sigmoid_fast").name == "sigmoid"
    np.testing.assert_allclose(
        get_activation("sigmoid_fast").f(jnp.asarray(z)), 1 / (1 + np.exp(-z)), rtol=1e-14
    )
    d = config_to_dict(default_config())
    d["student"]["activation"] = "sigmoid_fast"
    assert parse_config(d).student.activation == "sigmoid"


def test_selu_on_infinite_data() -> None:
    """selu has no closed-form Gaussian pair kernel: its quadrature kernel E[σ(u)σ(v)] (the
    infinite-data loss's building block) matches 4·10⁵ Monte Carlo samples (5 standard
    errors), but σ′ jumps at 0 (λα → λ), so σ″ holds a Dirac delta that the kernel's
    Price's-theorem derivatives would miss (the gradient was 3 % off): gaussian-infinite data
    refuses selu with a message saying so."""
    from core.activations import get_activation
    from core.config import ConfigError
    from core.gaussian import _CLOSED, pair_kernel
    from core.problem import build_problem

    assert not any("selu" in pair for pair in _CLOSED)
    c11, c22, c12 = 1.7, 0.6, -0.5
    kernel = float(pair_kernel("selu", "selu")(c11, c22, c12))
    cov = np.array([[c11, c12], [c12, c22]])
    uv = jax.random.normal(jax.random.PRNGKey(5), (400_000, 2)) @ np.linalg.cholesky(cov).T
    selu = get_activation("selu")
    prod = np.asarray(selu(uv[:, 0]) * selu(uv[:, 1]))
    assert abs(kernel - prod.mean()) < 5 * prod.std() / np.sqrt(len(prod))
    m = config_to_dict(default_config())
    teacher = {"kind": "random", "input_dim": 3, "widths": [2], "activation": "selu"}
    m["teacher"] = {**teacher, "bias": False}
    m["student"] = {"widths": [3], "activation": "selu", "bias": False}
    m["data"] = {"kind": "gaussian-infinite"}
    with pytest.raises(ConfigError, match=r"data.kind: .*selu pairs only with nothing.*Dirac"):
        build_problem(parse_config(m))
