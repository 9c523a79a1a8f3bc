"""What the explorer's inspector shows (core.analysis.inspect_point and its helpers),
checked against direct computations; the inspector and the report use one stand-in sample."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.special

from core.analysis import (
    DEFAULT_GAUSSIAN_SAMPLES,
    analysis_inputs,
    analyze,
    closest_pair_distance,
    gaussian_sample,
    inspect_point,
    neuron_weights,
)
from core.config import parse_config
from core.networks import flatten, unflatten
from core.problem import build_problem


def _problem(data: dict, bias: bool = True):
    teacher = {"kind": "random", "input_dim": 2, "widths": [2], "activation": "erf"}
    return build_problem(
        parse_config(
            {
                "seed": 2,
                "teacher": teacher | {"bias": bias},
                "student": {"widths": [3], "activation": "erf", "bias": bias},
                "data": data,
            },
            "inspect",
        )
    )


def _channel_theta(spec, eps=1e-3, c=0.2, big_a=0.9, seed=0):
    """Neurons 0, 1 at w ± εΔ with output weights c/2 ± A/(2ε) (a channel), neuron 2 random."""
    rng = np.random.default_rng(seed)
    m = spec.input_dim + (1 if spec.bias[0] else 0)
    w, delta = rng.standard_normal(m), rng.standard_normal(m)
    delta /= np.linalg.norm(delta)
    wt = np.stack([w + eps * delta, w - eps * delta, rng.standard_normal(m)])
    a = np.array([c / 2 + big_a / (2 * eps), c / 2 - big_a / (2 * eps), 0.8])
    params = {"w1": wt[:, : spec.input_dim], "w2": a[None, :]}
    if spec.bias[0]:
        params |= {"b1": wt[:, spec.input_dim], "b2": np.array([0.1])}
    return np.asarray(flatten(spec, params))


def test_neuron_weights_and_closest_pair_match_direct_computation() -> None:
    problem = _problem({"kind": "gaussian", "samples": 30})
    spec, theta = problem.spec, np.asarray(problem.theta0)
    p = unflatten(spec, theta)
    w, a = neuron_weights(spec, theta)
    np.testing.assert_array_equal(w[:, :2], np.asarray(p["w1"]))
    np.testing.assert_array_equal(w[:, 2], np.asarray(p["b1"]))
    np.testing.assert_allclose(a, np.abs(np.asarray(p["w2"])[0]), rtol=1e-15)
    brute = min(np.linalg.norm(w[i] - w[j]) for i, j in itertools.combinations(range(3), 2))
    assert closest_pair_distance(w) == pytest.approx(brute, rel=1e-14)
    assert np.isnan(closest_pair_distance(w[:1]))


def test_inspector_and_report_share_the_stand_in_sample() -> None:
    """Infinite data: both analyse the same Gaussian sample, so they agree about channels."""
    problem = _problem({"kind": "gaussian-infinite"}, bias=False)
    objective = problem.objective
    assert objective.data is None
    x = analysis_inputs(objective)
    assert x.shape == (DEFAULT_GAUSSIAN_SAMPLES, 2)
    np.testing.assert_array_equal(x, gaussian_sample(2))
    theta = _channel_theta(problem.spec)
    shown = inspect_point(objective, theta, problem.teacher, 5.0)
    report = analyze(objective, theta, problem.teacher)
    assert [ch.neurons for ch in shown.channels] == [(0, 1)]
    assert shown.channels == report.channels
    assert [n.role for n in shown.neurons] == [n.role for n in report.neurons]
    assert shown.note == "t=5: 3 neurons, 1 channel"
    # Finite data: the data set itself.
    finite = _problem({"kind": "gaussian", "samples": 40})
    np.testing.assert_array_equal(analysis_inputs(finite.objective), finite.data.x)


def test_inspect_point_responses_on_the_grid() -> None:
    """d = 2: response i at grid row r, column c is a_i σ(w_i·(g_c, g_r) + b_i), with
    σ(z) = erf(z/√2) (core's erf)."""
    problem = _problem({"kind": "gaussian", "samples": 30})
    spec, theta = problem.spec, np.asarray(problem.theta0)
    got = inspect_point(problem.objective, theta, problem.teacher, 0.0)
    g = got.grid
    assert g[0] == -3.0 and g[-1] == 3.0 and len(got.responses) == 3
    p = unflatten(spec, theta)
    w1, b1, w2 = (np.asarray(p[k]) for k in ("w1", "b1", "w2"))
    for i, r in enumerate(got.responses):
        assert r.shape == (g.size, g.size)
        for row, col in [(0, 0), (5, 30), (40, 12)]:
            z = w1[i] @ np.array([g[col], g[row]]) + b1[i]
            assert r[row, col] == pytest.approx(
                w2[0, i] * scipy.special.erf(z / np.sqrt(2)), rel=1e-12
            )
    assert got.response_note == ""
