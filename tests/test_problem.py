"""core.problem.build_problem for every teacher and data kind, checked against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import ConfigError, parse_config
from core.networks import unflatten
from core.problem import build_problem


def np_forward(params: dict, x: np.ndarray, act) -> np.ndarray:
    """Independent one-hidden-layer forward pass in NumPy: W2 σ(W1 x + b1) + b2."""
    z = x @ np.asarray(params["w1"]).T + np.asarray(params.get("b1", 0.0))
    return act(z) @ np.asarray(params["w2"]).T + np.asarray(params.get("b2", 0.0))


def softplus(z):
    return np.logaddexp(z, 0.0)


def base(**tables):
    m = {
        "seed": 5,
        "teacher": {"input_dim": 2, "widths": [3]},
        "student": {"widths": [2]},
        "data": {"samples": 40},
    }
    for k, v in tables.items():
        m[k] = {**m.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_config(m, "p.toml")


def check_loss(problem):
    """L(θ₀) equals ½ mean ‖f − y‖² with f, y computed independently in NumPy."""
    data = problem.data
    x, y = np.asarray(data.x), np.asarray(data.y)
    np.testing.assert_allclose(y, np.asarray(problem.teacher(x)), rtol=1e-12)
    f = np_forward(unflatten(problem.spec, problem.theta0), x, softplus)
    expected = 0.5 * np.mean(np.sum((f - y) ** 2, axis=1))
    np.testing.assert_allclose(float(problem.objective.loss(problem.theta0)), expected, rtol=1e-12)


@pytest.mark.parametrize("kind", ["gaussian", "uniform", "sobol"])
def test_random_teacher_each_finite_data_kind(kind):
    p = build_problem(base(data={"kind": kind}))
    assert p.data.x.shape == (40, 2) and p.data.y.shape == (40, 1)
    assert p.theta0.shape == (p.spec.n_params,) == (9,)
    # teacher is the network with its own named parameters
    tp = unflatten(p.teacher.spec, np.asarray(p.teacher.theta))
    np.testing.assert_allclose(
        np.asarray(p.data.y), np_forward(tp, np.asarray(p.data.x), softplus), rtol=1e-12
    )
    check_loss(p)
    if kind == "uniform":
        assert np.all(np.abs(np.asarray(p.data.x)) <= np.sqrt(3))


def test_seed_reproducible_and_data_seed_separate():
    a, b = build_problem(base()), build_problem(base())
    np.testing.assert_array_equal(a.theta0, b.theta0)
    np.testing.assert_array_equal(np.asarray(a.data.x), np.asarray(b.data.x))
    c = build_problem(base(seed=6))
    assert not np.allclose(a.theta0, c.theta0)
    d = build_problem(base(data={"seed": 99}))
    np.testing.assert_array_equal(a.theta0, d.theta0)  # same student init …
    assert not np.allclose(np.asarray(a.data.x), np.asarray(d.data.x))  # … other inputs


def test_student_and_teacher_seeds_vary_one_draw_and_default_to_the_seed():
    from core.config import config_to_dict

    a = build_problem(base())
    same = build_problem(base(student={"seed": 5}, teacher={"seed": 5}))
    np.testing.assert_array_equal(a.theta0, same.theta0)  # seed = 5 is the default of both
    np.testing.assert_array_equal(np.asarray(a.teacher.theta), np.asarray(same.teacher.theta))
    other = build_problem(base(student={"seed": 6}))  # another init, the same teacher and data
    assert not np.allclose(a.theta0, other.theta0)
    np.testing.assert_array_equal(np.asarray(a.teacher.theta), np.asarray(other.teacher.theta))
    np.testing.assert_array_equal(np.asarray(a.data.y), np.asarray(other.data.y))
    # seed = 6 with the student's seed pinned to 5: the teacher moves, θ₀ does not
    pinned = build_problem(base(seed=6, student={"seed": 5}))
    np.testing.assert_array_equal(a.theta0, pinned.theta0)
    assert not np.allclose(np.asarray(a.teacher.theta), np.asarray(pinned.teacher.theta))
    t = build_problem(base(teacher={"seed": 7}))
    assert not np.allclose(np.asarray(a.teacher.theta), np.asarray(t.teacher.theta))
    assert config_to_dict(other.config)["student"]["seed"] == 6
    assert "seed" not in config_to_dict(a.config)["student"]  # absent stays absent
    with pytest.raises(ConfigError, match=r"student.seed"):
        base(student={"seed": -1})
    with pytest.raises(ConfigError, match=r"teacher.seed"):
        base(teacher={"seed": "x"})
    with pytest.raises(ConfigError, match=r"teacher.seed: only for kind = random or orthonormal"):
        base(teacher={"kind": "rosenbrock", "seed": 3})
    with pytest.raises(ConfigError, match=r"student.seed: draws θ₀"):
        base(student={"seed": 3, "params": {"w1": [[1, 0], [0, 1]], "b1": [0, 0],
                                            "w2": [[1, 1]], "b2": [0]}})  # fmt: skip


def test_explicit_teacher_and_student_params():
    tparams = {"w1": [[1.0, -1.0]], "b1": [0.5], "w2": [[2.0]], "b2": [0.1]}
    sparams = {"w1": [[0.3, 0.2], [-0.1, 0.4]], "b1": [0.0, 0.1], "w2": [[1.0, -1.0]], "b2": [0.0]}
    cfg = base(
        teacher={"kind": "explicit", "widths": [1], "params": tparams},
        student={"params": sparams},
    )
    p = build_problem(cfg)
    assert p.teacher.kind == "explicit"
    x = np.asarray(p.data.x)
    np.testing.assert_allclose(np.asarray(p.data.y), np_forward(tparams, x, softplus), rtol=1e-12)
    named = unflatten(p.spec, p.theta0)
    for k, v in sparams.items():
        np.testing.assert_array_equal(named[k], np.asarray(v))
    check_loss(p)


def test_file_teacher_matches_explicit(tmp_path):
    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(size=(3, 2)), "b1": rng.normal(size=3)}
    params |= {"w2": rng.normal(size=(1, 3)), "b2": rng.normal(size=1)}
    np.savez(tmp_path / "teacher.npz", **params)
    cfg = parse_config(
        {
            "teacher": {"kind": "file", "path": "teacher.npz", "widths": [3]},
            "data": {"samples": 20},
        },
        str(tmp_path / "c.toml"),
    )
    p = build_problem(cfg)
    x = np.asarray(p.data.x)
    np.testing.assert_allclose(np.asarray(p.data.y), np_forward(params, x, softplus), rtol=1e-12)
    # A file whose shapes disagree with the configured widths is a config error (at parse).
    np.savez(tmp_path / "bad.npz", w1=np.ones((2, 2)), b1=np.ones(2), w2=np.ones((1, 2)), b2=[0.0])
    with pytest.raises(ConfigError, match=r"c\.toml: teacher\.path: .*bad\.npz"):
        parse_config(
            {"teacher": {"kind": "file", "path": "bad.npz", "widths": [3]}},
            str(tmp_path / "c.toml"),
        )


def test_orthonormal_glu_rosenbrock_targets():
    p = build_problem(
        base(teacher={"kind": "orthonormal", "input_dim": 3, "widths": [2], "activation": "erf"})
    )
    v = np.asarray(unflatten(p.teacher.spec, np.asarray(p.teacher.theta))["w1"])
    np.testing.assert_allclose(v @ v.T, np.eye(2), atol=1e-12)

    u, w = [1.0, 0.5], [-0.5, 2.0]
    p = build_problem(base(teacher={"kind": "glu", "u": u, "v": w, "activation": "softplus"}))
    x = np.asarray(p.data.x)
    sig = 1 / (1 + np.exp(-(x @ np.array(u))))  # softplus′ = logistic sigmoid
    np.testing.assert_allclose(np.asarray(p.data.y)[:, 0], (x @ np.array(w)) * sig, rtol=1e-12)
    check_loss(p)

    p = build_problem(base(teacher={"kind": "rosenbrock", "input_dim": 3}, data={"samples": 20}))
    x = np.asarray(p.data.x)
    g = np.sum(100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2, axis=1)
    y = np.asarray(p.data.y)[:, 0]
    # standardized: an affine function of g with positive slope
    slope, icpt = np.polyfit(g, y, 1)
    np.testing.assert_allclose(y, slope * g + icpt, atol=1e-10)
    assert slope > 0


def test_objective_for_other_width_uses_same_data():
    p = build_problem(base())
    from core.networks import make_spec

    spec3 = make_spec(2, [3], "softplus", True)
    obj = p.objective_for(spec3)
    assert obj.n_params == spec3.n_params
    np.testing.assert_array_equal(np.asarray(obj.data.x), np.asarray(p.data.x))
    assert p.objective_for(p.spec) is p.objective


def test_gaussian_infinite_matches_large_sample():
    cfg = base(
        teacher={"kind": "orthonormal", "input_dim": 2, "widths": [2], "activation": "erf"},
        student={"widths": [2], "activation": "erf", "bias": False},
        data={"kind": "gaussian-infinite"},
    )
    p = build_problem(cfg)
    assert p.data is None and p.objective.data is None
    mc = build_problem(
        parse_config(
            {
                **{k: v for k, v in _dict(cfg).items()},
                "data": {"kind": "gaussian", "samples": 100000},
            },
            "p.toml",
        )
    )
    exact = float(p.objective.loss(p.theta0))
    approx = float(mc.objective.loss(mc.theta0))
    assert abs(exact - approx) < 0.02 * exact + 1e-3


def _dict(cfg):
    from core.config import config_to_dict

    return config_to_dict(cfg)
