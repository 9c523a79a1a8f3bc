"""Output activations f = φ(W_L h + b_L) (``student.output = <activation>``, MSE only):
MLPGradientFlow's last layers ``(2, g, bias)`` ("loss" testset) and ``(1, sigmoid, false)``
("distributed"), and nets with no hidden layer (``TeacherNet(((1, softplus, true),))``).

References are independent of the objective's closed forms: ``jax.hessian`` / ``jax.grad``
of the loss written out here with jax.nn's functions (not :mod:`core.activations`), and
``jax.jacrev`` of that network.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core import objectives
from core.networks import forward, init_params, make_spec, unflatten
from core.objectives import Dataset, barrier, mse_objective

# The output φ written with jax.nn, independent of core.activations' e^{−|z|} forms.
PHI = {
    "g": lambda u: jax.nn.sigmoid(4.0 * u) + jax.nn.softplus(u),
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "selu": lambda u: 1.05070098 * jnp.where(u > 0, u, 1.67326324 * (jnp.exp(u) - 1.0)),
    "square": lambda u: u * u,
    "identity": lambda u: u,
}
HIDDEN = {
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda z: z,
    "g": PHI["g"],
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
}


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _reference_forward(spec, theta, x, layer_acts, phi):
    """The net written out layer by layer: one jax.nn activation per hidden layer."""
    p = unflatten(spec, theta)
    h = x
    for l in range(1, spec.n_layers + 1):
        z = h @ p[f"w{l}"].T + (p[f"b{l}"] if spec.bias[l - 1] else 0.0)
        h = HIDDEN[layer_acts[l - 1]](z) if l < spec.n_layers else PHI[phi](z)
    return h


#: (input_dim, widths, activation per hidden layer, bias per layer, output_dim, output φ).
NETS = {
    # MLPGradientFlow's "loss" testset: d = 2, ((4, sigmoid, true), (2, identity, false),
    # (2, g, true)) — the last layer is the output, with g and a bias
    "loss-testset-g-output": (2, [4, 2], ["sigmoid", "identity"], [True, False, True], 2, "g"),
    # its "distributed" testset: ((2, g, false), (1, sigmoid, false)), one hidden layer (the
    # structured Hessian)
    "distributed-sigmoid": (2, [2], ["g"], [False, False], 1, "sigmoid"),
    "1h-tanh-K3-bias": (2, [3], ["g"], [False, True], 3, "tanh"),
    "1h-selu-output": (2, [3], ["tanh"], [True, True], 2, "selu"),
    # no hidden layer: TeacherNet(((1, softplus, true),)) — u = W x + b, f = φ(u)
    "no-hidden-softplus": (3, [], [], [True], 1, "softplus"),
    "no-hidden-square-K2": (2, [], [], [False], 2, "square"),
}


def _case(name: str, n: int = 17, weighted: bool = True, seed: int = 3):
    d, widths, acts, bias, k, phi = NETS[name]
    spec = make_spec(d, widths, acts, bias, k, output=phi)
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    theta = init_params(spec, keys[0], 1.0) + 0.3 * jax.random.normal(keys[1], (spec.n_params,))
    x = jax.random.normal(keys[2], (n, d))
    y = jax.random.normal(keys[3], (n, k))
    w = jax.random.uniform(keys[4], (n,), minval=0.1, maxval=1.0) if weighted else None
    return spec, theta, Dataset(x, y, w), acts, phi


#: Cases run with the weight-norm barrier active (maxnorm), the others without.
MAXNORM = {"loss-testset-g-output": 0.4, "no-hidden-softplus": 0.4}


@pytest.mark.parametrize("name", sorted(NETS))
def test_loss_gradient_hessian_match_autodiff(name: str) -> None:
    """Value, closed-form gradient and structured Hessian of ½Σ w‖φ(u) − y‖² (+ barrier)
    against autodiff of the loss written out independently."""
    spec, theta, data, acts, phi = _case(name)
    maxnorm = MAXNORM.get(name)
    if maxnorm is not None:  # the barrier must actually be active somewhere
        assert np.any(np.abs(np.asarray(theta)) > maxnorm)
    obj = mse_objective(spec, data, maxnorm=maxnorm)

    def ref(t):
        r = _reference_forward(spec, t, data.x, acts, phi) - data.y
        return 0.5 * jnp.sum(data.weights[:, None] * r * r) + barrier(t, maxnorm)

    f_ref = _reference_forward(spec, theta, data.x, acts, phi)
    np.testing.assert_allclose(forward(spec, theta, data.x), f_ref, rtol=1e-13)
    value, g = obj.value_and_grad(theta)
    np.testing.assert_allclose(value, ref(theta), rtol=1e-13)
    np.testing.assert_allclose(obj.loss(theta), value, rtol=1e-14)
    assert _rel(g, jax.jit(jax.grad(ref))(theta)) < 1e-12
    h = obj.hessian(theta)
    assert _rel(h, jax.jit(jax.hessian(ref))(theta)) < 1e-10
    np.testing.assert_array_equal(h, h.T)


@pytest.mark.parametrize("name", ["distributed-sigmoid", "1h-tanh-K3-bias"])
def test_structured_and_autodiff_second_order_paths_agree(name: str) -> None:
    """One hidden layer: the closed-form blocks with weights w r φ′ equal the
    forward-over-reverse path on the linear-output net."""
    spec, theta, data, _, _ = _case(name)
    args = (theta, data.x, data.y, data.weights)
    hess = functools.partial(objectives._hessian, spec=spec, maxnorm=None)
    closed = jax.jit(hess)(*args)
    generic = jax.jit(functools.partial(hess, structured=False))(*args)
    assert _rel(generic, closed) < 1e-12


@pytest.mark.parametrize("name", ["loss-testset-g-output", "no-hidden-softplus"])
def test_jacobian_and_gauss_newton_extras(name: str) -> None:
    """extras["jacobian"] = ∂φ(u)/∂θ and extras["gauss_newton"] = Σ w JᵀJ (the PSD part)."""
    spec, theta, data, acts, phi = _case(name)
    obj = mse_objective(spec, data)
    jac_ref = jax.jit(jax.jacrev(lambda t: _reference_forward(spec, t, data.x, acts, phi)))(theta)
    jac_ref = jac_ref.reshape(-1, spec.n_params)
    assert _rel(obj.extras["jacobian"](theta), jac_ref) < 1e-12
    wrep = jnp.repeat(data.weights, spec.output_dim)
    assert _rel(obj.extras["gauss_newton"](theta), (jac_ref * wrep[:, None]).T @ jac_ref) < 1e-12


def test_sample_blocks_with_a_nonlinear_output(monkeypatch) -> None:
    """Large-N path (zero-weight padded blocks) with φ: the same Hessian."""
    spec, theta, data, _, _ = _case("distributed-sigmoid", n=23)
    whole = mse_objective(spec, data).hessian(theta)
    monkeypatch.setattr(objectives, "_BLOCK_BUDGET", 5 * spec.n_params)
    assert _rel(mse_objective(spec, data).hessian(theta), whole) < 1e-13


def test_hand_computed_single_neuron_output() -> None:
    """d = 1, no hidden layer, f = sigmoid(w x + b) on two samples, by hand:
    L = ¼Σ(s_n − y_n)², ∂L/∂w = ½Σ (s_n − y_n) s_n(1 − s_n) x_n."""
    spec = make_spec(1, [], [], True, 1, output="sigmoid")
    x, y = np.array([[0.5], [-2.0]]), np.array([[1.0], [0.0]])
    w, b = 0.7, -0.1
    s = 1 / (1 + np.exp(-(w * x[:, 0] + b)))
    r = s - y[:, 0]
    obj = mse_objective(spec, Dataset(jnp.asarray(x), jnp.asarray(y)))
    value, g = obj.value_and_grad(jnp.array([w, b]))
    np.testing.assert_allclose(value, 0.25 * np.sum(r * r), rtol=1e-14)
    ds = s * (1 - s)
    np.testing.assert_allclose(g, [0.5 * np.sum(r * ds * x[:, 0]), 0.5 * np.sum(r * ds)],
                               rtol=1e-13)  # fmt: skip
    # ∂²L/∂b² = ½Σ (s′² + r s″), s″ = s′(1 − 2s)
    h_bb = 0.5 * np.sum(ds * ds + r * ds * (1 - 2 * s))
    np.testing.assert_allclose(obj.hessian(jnp.array([w, b]))[1, 1], h_bb, rtol=1e-13)


def test_losses_for_a_linear_output_refuse_a_nonlinear_one() -> None:
    """Cross-entropy and correlation read the network output as logits / f: a spec with an
    output activation fails loudly there (their closed forms assume a linear output)."""
    spec, theta, data, _, _ = _case("distributed-sigmoid")
    with pytest.raises(ValueError, match=r"student\.output"):
        objectives._forward_cache(spec, theta, data.x)


# ------------------------------------------------------------------ config and runs


def _mapping(output: str, **data) -> dict:
    from core.config import config_to_dict, default_config

    m = config_to_dict(default_config())
    m["teacher"] = {"kind": "random", "input_dim": 2, "widths": [3], "activation": "tanh",
                    "bias": False, "output_dim": 2}  # fmt: skip
    m["student"] = {"widths": [2], "activation": "softplus", "output": output}
    m["data"] = {"kind": "gaussian", "samples": 20, **data}
    return m


def test_config_output_activation_round_trips_and_builds_the_objective() -> None:
    """``student.output = "sigmoid_fast"`` is stored canonically ("sigmoid"), round-trips
    through the TOML mapping and text, and the problem's objective is the MSE of
    φ(W_L h + b_L) against the teacher (by hand from the named parameters)."""
    import tomllib

    from core.config import config_to_dict, config_to_toml, parse_config
    from core.problem import build_problem

    cfg = parse_config(_mapping("sigmoid_fast"))
    assert cfg.student.output == "sigmoid" and cfg.student_spec().output == "sigmoid"
    assert parse_config(config_to_dict(cfg)) == cfg
    assert parse_config(tomllib.loads(config_to_toml(cfg))) == cfg
    problem = build_problem(cfg)
    theta, x = problem.theta0, problem.data.x
    p = unflatten(problem.spec, theta)
    f = jax.nn.sigmoid(jax.nn.softplus(x @ p["w1"].T + p["b1"]) @ p["w2"].T + p["b2"])
    ref = 0.5 * jnp.mean(jnp.sum((f - problem.data.y) ** 2, axis=1))
    np.testing.assert_allclose(problem.objective.loss(theta), ref, rtol=1e-13)


@pytest.mark.parametrize(
    ("output", "data", "field", "message"),
    [
        ("g", {"kind": "gaussian-infinite"}, "student.output",
         "an output activation \\('g'\\) needs finite data"),
        ("tanh", {"loss": "correlation"}, "student.output", "needs data.loss = 'mse'"),
        ("g", {"loss": "crossentropy"}, "student.output", "needs data.loss = 'mse', not 'cross"),
        ("swish", {}, "student.output", "unknown activation 'swish'"),
    ],
)  # fmt: skip
def test_config_output_activation_refusals_name_the_field(output, data, field, message) -> None:
    from core.config import ConfigError, parse_config

    m = _mapping(output, **data)
    if data.get("kind") == "gaussian-infinite":
        m["teacher"].update(output_dim=1)
        m["student"]["bias"] = False
    with pytest.raises(ConfigError, match=f"^cfg.toml: {field}: .*{message}") as info:
        parse_config(m, "cfg.toml")
    assert "\n" not in str(info.value)


def test_infinite_data_objectives_refuse_an_output_activation() -> None:
    """Below the config: the Gaussian-kernel objectives say which output is nonlinear."""
    from core.gaussian import gaussian_objective
    from core.linear_gaussian import is_linear
    from core.teachers import network_teacher

    linear = make_spec(2, [3], "erf", False)
    phi = make_spec(2, [3], "erf", False, output="tanh")
    teacher = network_teacher(linear, init_params(linear, jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match=r"^student\.output: gaussian-infinite"):
        gaussian_objective(phi, teacher)
    assert not is_linear(make_spec(2, [3], "identity", output="g"))


def test_run_with_an_output_activation_saves_and_loads(tmp_path) -> None:
    """A short headless run (flow, refinement, analysis) with ``output = "g"``: the session
    keeps the output activation in its segment spec and loads back with the same config;
    its final loss is the objective's at the saved θ."""
    from core.config import parse_config
    from core.problem import build_problem
    from core.runner import run_config
    from core.session import load_session

    m = _mapping("g")
    m["dynamics"] = {"t_max": 5.0, "n_saves": 5}
    m["refine"] = {"method": "none"}
    cfg = parse_config(m)
    session = load_session(run_config(cfg, tmp_path / "s"))
    assert session.config == cfg
    assert session.final_spec == cfg.student_spec() and session.final_spec.output == "g"
    theta = session.final_segment.theta[-1]
    problem = build_problem(cfg)
    assert session.analysis is not None
    np.testing.assert_allclose(session.analysis["loss"], problem.objective.loss(theta), rtol=1e-10)


def test_teacher_output_activation() -> None:
    """``teacher.output`` (random / file / explicit): the teacher network's last layer
    applies φ (its labels by hand from the named parameters); absent when linear
    (``identity`` is stored as absent); refused for other kinds and on infinite data."""
    from core.config import ConfigError, config_to_dict, parse_config
    from core.problem import build_problem

    m = _mapping("identity")
    m["teacher"]["output"] = "tanh"
    cfg = parse_config(m)
    assert cfg.teacher.output == "tanh" and cfg.teacher.spec().output == "tanh"
    assert parse_config(config_to_dict(cfg)) == cfg
    problem = build_problem(cfg)
    p = unflatten(problem.teacher.spec, problem.teacher.theta)
    y = jnp.tanh(jnp.tanh(problem.data.x @ p["w1"].T) @ p["w2"].T)
    np.testing.assert_allclose(problem.data.y, y, rtol=1e-13)
    m["teacher"]["output"] = "identity"
    assert parse_config(m).teacher.output is None
    assert "output" not in config_to_dict(parse_config(m))["teacher"]
    m["teacher"]["output"] = "tanh"
    m["teacher"]["kind"] = "orthonormal"
    with pytest.raises(ConfigError, match=r"teacher\.output: only for kind = random"):
        parse_config(m, "cfg.toml")
    m["teacher"].update(kind="random", output_dim=1)
    m["student"]["bias"] = False
    m["data"] = {"kind": "gaussian-infinite"}
    with pytest.raises(ConfigError, match=r"^cfg.toml: teacher\.output: .*needs finite data"):
        parse_config(m, "cfg.toml")


# ------------------------------------------------------------ no hidden layer (widths = [])


def _no_hidden_mapping() -> dict:
    """MLPGradientFlow's ``TeacherNet(((1, softplus, true),))``: d = 2 straight to one
    softplus output with a bias, teacher and student alike."""
    m = _mapping("softplus")
    m["teacher"] = {"kind": "random", "input_dim": 2, "widths": [], "bias": True,
                    "output": "softplus"}  # fmt: skip
    m["student"] = {"widths": [], "bias": True, "output": "softplus"}
    m["data"] = {"kind": "gaussian", "samples": 30}
    return m


def test_no_hidden_layer_config_and_refusals() -> None:
    """``widths = []`` parses (one layer: w1 (K, d), b1), round-trips; unit_norm and a fixed
    output layer need a hidden layer; surgery and the weight view say why they do not apply."""
    from core.config import ConfigError, config_to_dict, parse_config
    from core.surgery import split_neuron
    from core.views import why_not

    cfg = parse_config(_no_hidden_mapping())
    spec = cfg.student_spec()
    assert spec.widths == () and spec.shapes == {"w1": (1, 2), "b1": (1,)}
    assert cfg.teacher.spec().output == "softplus"
    assert parse_config(config_to_dict(cfg)) == cfg
    assert why_not("weights", spec) == (
        "weight view needs one hidden layer (this net has no hidden neurons)"
    )
    assert why_not("singular", spec) is not None  # softplus output: not a linear map
    with pytest.raises(ValueError, match="exactly one hidden layer, got widths \\[\\]"):
        split_neuron(spec, jnp.zeros(spec.n_params), 0, 0.5)
    for key, value in (("unit_norm", True), ("train_output", False)):
        m = _no_hidden_mapping()
        m["student"].update({key: value, "bias": False})
        with pytest.raises(ConfigError, match=f"^cfg.toml: student.{key}: needs a hidden layer"):
            parse_config(m, "cfg.toml")


def test_no_hidden_layer_run_reaches_the_teacher(tmp_path) -> None:
    """A headless run of the one-layer softplus net: refinement finds the teacher's
    parameters (the loss is 0 there), the analysis has no neurons or channels, and the
    inspection says there are no hidden neurons."""
    from core.analysis import inspect_point
    from core.config import parse_config
    from core.problem import build_problem
    from core.runner import run_config
    from core.session import load_session

    m = _no_hidden_mapping()
    m["dynamics"] = {"t_max": 5.0, "n_saves": 5}
    cfg = parse_config(m)
    session = load_session(run_config(cfg, tmp_path / "s"))
    assert session.final_spec.widths == ()
    assert session.analysis["neurons"] == [] and session.analysis["channels"] == []
    assert session.analysis["classification"] == "minimum"
    problem = build_problem(cfg)
    np.testing.assert_allclose(session.refined_theta, problem.teacher.theta, atol=1e-8)
    note = inspect_point(problem.objective, session.refined_theta, problem.teacher, 5.0).note
    assert "no hidden neurons" in note


# ------------------------------------------------------- per-sample weights in a data file


def _weighted_problem(folder, loss: str = "mse", output: str = "identity", **arrays):
    from core.config import parse_config
    from core.problem import build_problem

    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data.npz", **arrays)
    student = {"widths": [2], "activation": "tanh", "output": output}
    m = {"seed": 1, "student": student, "data": {"kind": "file", "path": "data.npz", "loss": loss}}
    return build_problem(parse_config(m, str(folder / "c.toml"), base_dir=folder))


@pytest.mark.parametrize(("loss", "output"), [("mse", "identity"), ("mse", "sigmoid"),
                                              ("crossentropy", "softmax")])  # fmt: skip
def test_sample_weights_equal_repeated_samples(tmp_path, loss: str, output: str) -> None:
    """Integer weights w = (3, 1, 2, 1, …) give the same loss, gradient and Hessian as the
    data set with each row repeated w_n times (weights normalised to sum 1 = the mean over
    the repeated set); the weights are stored normalised."""
    rng = np.random.default_rng(4)
    n = 12
    x = rng.normal(size=(n, 2))
    y = rng.integers(0, 2, size=n).astype(float) if loss == "crossentropy" else rng.normal(size=n)
    counts = rng.integers(1, 4, size=n).astype(float)
    counts[5] = 0.0  # a zero weight drops the sample
    weighted = _weighted_problem(tmp_path / "w", loss, output, x=x, y=y, w=counts)
    reps = np.repeat(np.arange(n), counts.astype(int))
    repeated = _weighted_problem(tmp_path / "r", loss, output, x=x[reps], y=y[reps])
    np.testing.assert_allclose(weighted.data.weights, counts / counts.sum(), rtol=1e-15)
    assert repeated.data.weights is None
    theta = repeated.theta0
    a, b = weighted.objective, repeated.objective
    np.testing.assert_allclose(a.loss(theta), b.loss(theta), rtol=1e-12)
    assert _rel(a.grad(theta), b.grad(theta)) < 1e-12
    assert _rel(a.hessian(theta), b.hessian(theta)) < 1e-11
    fa, fb = weighted.fit_metrics(weighted.spec, theta), repeated.fit_metrics(repeated.spec, theta)
    assert fa.keys() == fb.keys() and all(fa[k] == pytest.approx(fb[k], rel=1e-12) for k in fa)


@pytest.mark.parametrize(
    ("w", "message"),
    [
        (-np.ones(12), "negative weights"),
        (np.zeros(12), "all zeros"),
        (np.ones(11), r"array 'w' has shape \[11\], expected \(12,\)"),
        (np.full(12, np.nan), "NaN or inf"),
    ],
)
def test_sample_weight_errors_name_the_field(tmp_path, w, message) -> None:
    from core.config import ConfigError

    x, y = np.ones((12, 2)), np.ones(12)
    with pytest.raises(ConfigError, match=f"^.*c.toml: data.path: data.npz: .*{message}") as e:
        _weighted_problem(tmp_path, x=x, y=y, w=w)
    assert "\n" not in str(e.value)
