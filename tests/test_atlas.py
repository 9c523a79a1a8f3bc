"""The atlas of a sweep (core.sweep.atlas) and the symmetries it quotients (core.symmetry).

Independent references: the network function itself (a symmetry must leave f(x; θ)
unchanged on random inputs, evaluated by core.networks.forward), group elements applied
here by hand on the named parameters (not with core.symmetry's helpers), and a real
three-run sweep whose initial points are built to end at known critical points.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from core.activations import ACTIVATIONS
from core.networks import forward, unflatten
from core.spec import make_spec
from core.sweep.atlas import (
    ATLAS_COLUMNS,
    ATLAS_CSV,
    ATLAS_NPZ,
    LOSS_RTOL,
    POSITION_RTOL,
    EndPoint,
    build_atlas,
    load_atlas_params,
    same_point,
    write_atlas,
)
from core.symmetry import (
    EVEN,
    HOMOGENEOUS_DEGREE,
    ODD,
    SILENT_REL,
    ZERO_AT_ZERO,
    Symmetries,
    canonical_form,
    symmetric_distance,
)

# ----------------------------------------------------------------------------- tables


def test_symmetry_tables_match_the_activation_functions():
    """Every registered activation is odd/even/homogeneous/zero at 0 exactly when the
    tables say so (a new activation cannot be silently misclassified)."""
    z = np.linspace(-3.0, 3.0, 61)
    for name, act in ACTIVATIONS.items():
        f = lambda v, act=act: np.asarray(act.f(np.asarray(v)))
        scale = 1.0 + np.max(np.abs(f(z)))
        assert (np.max(np.abs(f(-z) + f(z))) < 1e-12 * scale) == (name in ODD), name
        assert (np.max(np.abs(f(-z) - f(z))) < 1e-12 * scale) == (name in EVEN), name
        assert (abs(float(f(np.array([0.0]))[0])) < 1e-15) == (name in ZERO_AT_ZERO), name
        degree = None
        for p in (1, 2, 3):
            if all(np.max(np.abs(f(c * z) - c**p * f(z))) < 1e-12 * c**p * scale
                   for c in (0.5, 2.0, 3.7)):  # fmt: skip
                degree = p
        assert degree == HOMOGENEOUS_DEGREE.get(name), name


def test_silent_threshold_is_the_analysis_dead_threshold():
    from core.analysis import DEAD_REL_A

    assert SILENT_REL == DEAD_REL_A


# ----------------------------------------------------------------------------- symmetries


def random_group_element(spec, theta, rng, sym=None):
    """θ moved by a random permutation per hidden layer, sign flips and rescalings, applied
    by hand on the named view."""
    sym = sym or Symmetries()
    p = {k: np.array(v) for k, v in unflatten(spec, np.asarray(theta)).items()}
    for l, acts in enumerate(spec.activations, start=1):
        w, b, w_next = f"w{l}", f"b{l}", f"w{l + 1}"
        for i, act in enumerate(acts):
            s_in, s_out = 1.0, 1.0
            if act in ODD and sym.flip_output and rng.random() < 0.5:
                s_in = s_out = -1.0
            elif act in EVEN and rng.random() < 0.5:
                s_in = -1.0
            if act in HOMOGENEOUS_DEGREE and sym.rescale:
                c = float(np.exp(rng.normal()))
                s_in, s_out = s_in * c, s_out / c ** HOMOGENEOUS_DEGREE[act]
            p[w][i] *= s_in
            if b in p:
                p[b][i] *= s_in
            p[w_next][:, i] *= s_out
        # permute only among neurons of one activation
        order = np.arange(len(acts))
        for name in set(acts):
            idx = np.array([i for i, a in enumerate(acts) if a == name])
            order[idx] = rng.permutation(idx)
        p[w] = p[w][order]
        if b in p:
            p[b] = p[b][order]
        p[w_next] = p[w_next][:, order]
    return np.concatenate([p[k].reshape(-1) for k in spec.shapes])


SPECS = [
    ("tanh", [4], True, 1),
    ("erf", [3], False, 2),
    ("relu", [3], True, 1),
    ("relu", [3, 4], False, 1),
    ("softplus", [5], True, 1),
    ("square", [3], True, 1),
    ("cube", [2, 3], True, 2),
    (("tanh", "softplus", "tanh"), [3], True, 1),
    ("identity", [2], False, 1),
]


@pytest.mark.parametrize(("act", "widths", "bias", "k"), SPECS)
def test_orbit_points_are_one_point_and_compute_one_function(act, widths, bias, k):
    rng = np.random.default_rng(len(widths) * 10 + k)
    spec = make_spec(3, widths, act, bias, k)
    x = rng.normal(size=(50, 3))
    for _ in range(3):
        theta = rng.normal(size=spec.n_params)
        moved = random_group_element(spec, theta, rng)
        f0 = np.asarray(forward(spec, theta, x))
        tol = 1e-12 * (1 + np.max(np.abs(f0)))
        # the hand-made group element is a symmetry (checks the test itself) …
        assert np.max(np.abs(np.asarray(forward(spec, moved, x)) - f0)) < tol
        # … and so is the canonical form: same function, same canonical form for the orbit
        canon = canonical_form(spec, theta)
        assert np.max(np.abs(np.asarray(forward(spec, canon, x)) - f0)) < tol
        c = symmetric_distance(spec, theta, moved)
        assert c.distance <= 1e-12 * (1 + c.scale) * c.stretch
        assert np.max(np.abs(canonical_form(spec, moved) - canon)) <= 1e-12 * (1 + c.scale)
        # a genuinely different point is far, a slightly perturbed one is near
        other = rng.normal(size=spec.n_params)
        assert symmetric_distance(spec, theta, other).distance > 1e-2
        noise = 1e-7 * rng.normal(size=spec.n_params)
        near = symmetric_distance(spec, theta, theta + noise)
        assert near.distance <= 10 * near.stretch * np.max(np.abs(noise))


def test_no_symmetry_across_activations_or_with_fixed_output_weights():
    spec = make_spec(2, [2], ("tanh", "softplus"), False, 1)
    th = np.array([1.0, 0.5, -0.3, 1.2, 0.8, -0.6])  # w1 (2, 2), w2 (1, 2)
    swapped = np.array([-0.3, 1.2, 1.0, 0.5, -0.6, 0.8])  # a permutation of unlike neurons
    assert symmetric_distance(spec, th, swapped).distance > 0.1
    tanh = make_spec(2, [2], "tanh", False, 1)
    flipped = th.copy()
    flipped[[0, 1, 4]] *= -1  # neuron 0: (w, a) → (−w, −a)
    assert symmetric_distance(tanh, th, flipped).distance < 1e-15
    fixed = Symmetries(flip_output=False, rescale=False)  # student.train_output = false
    assert symmetric_distance(tanh, th, flipped, fixed).distance > 0.1


def test_silent_neurons_are_compared_as_zero():
    spec = make_spec(2, [3], "tanh", False, 1)
    live = [1.0, 0.5, -0.3, 1.2]
    a = np.array([*live, 0.7, -0.2, 1.0, -0.7, 0.0])  # neuron 2: a = 0, w free
    b = np.array([*live, -0.1, 0.9, 1.0, -0.7, 0.0])
    c = np.array([*live, 0.0, 0.0, 1.0, -0.7, 0.4])  # neuron 2: w = 0 (tanh(0) = 0), a free
    assert symmetric_distance(spec, a, b).distance == 0.0
    assert symmetric_distance(spec, a, c).distance == 0.0
    d = np.array([*live, 0.7, -0.2, 1.0, -0.7, 1e-3])  # not silent
    assert symmetric_distance(spec, a, d).distance > 1e-4


# ----------------------------------------------------------------------------- atlas


SPEC = make_spec(2, [2], "tanh", False, 1)
THETA = np.array([1.0, 0.5, -0.3, 1.2, 1.0, -0.7])
#: THETA with the neurons swapped and the (new) first one sign-flipped
MOVED = np.array([0.3, -1.2, 1.0, 0.5, 0.7, 1.0])


def point(run, theta=THETA, loss=0.25, cls="minimum", index=0, problem="p", spec=SPEC, **kw):
    return EndPoint(run, problem, spec, np.asarray(theta, float), loss, index, cls, 1e-16, **kw)


def test_atlas_merges_symmetric_end_points_and_keeps_different_ones_apart():
    pts = [
        point("r1"),
        point("r2", MOVED),  # permutation + sign flip of r1: merged
        point("r3", MOVED, loss=0.25 * (1 + 1e-13)),  # loss equal to round-off: merged
        point("r4", THETA, cls="saddle", index=1),  # same place, another kind: apart
        point("r5", THETA + 1e-3, loss=0.25 * (1 + 1e-6)),  # another minimum: apart
        point("r6", MOVED, loss=0.25 * (1 + 1e-6)),  # same place, other loss: apart
        point("r7", problem="q"),  # another landscape: apart
        point("r8", MOVED + 1e-9),  # within the position tolerance: merged
        point("r9", MOVED + 1e-9, loss=0.1, cls="saddle", index=1),  # lowest loss, alone
    ]
    atlas = build_atlas(pts)
    groups = [(e.id, e.runs) for e in atlas]
    assert groups == [
        (1, ["r9"]),
        (2, ["r1", "r2", "r3", "r8"]),
        (3, ["r4"]),
        (4, ["r5"]),
        (5, ["r6"]),
        (6, ["r7"]),
    ]
    assert sum(e.count for e in atlas) == len(pts)
    # the rules, pairwise
    assert same_point(pts[0], pts[1]) and not same_point(pts[0], pts[3])
    assert not same_point(point("a"), point("b", THETA + 10 * POSITION_RTOL * 3))
    assert same_point(point("a"), point("b", loss=0.25 * (1 + LOSS_RTOL / 2)))
    assert not same_point(point("a"), point("b", loss=0.25 * (1 + LOSS_RTOL * 10)))
    other_spec = make_spec(2, [2], "erf", False, 1)
    assert not same_point(point("a"), point("b", spec=other_spec))


def test_position_uncertainty_widens_the_tolerance_for_loosely_converged_points():
    far = MOVED + 1e-4
    assert not same_point(point("a"), point("b", far))
    assert same_point(point("a", delta=1e-5), point("b", far, delta=1e-5))
    # but never across losses beyond round-off plus the second-order variation
    assert not same_point(point("a", delta=1e-5), point("b", far, loss=0.3, delta=1e-5))


def test_atlas_csv_is_well_formed_and_round_trips(tmp_path):
    pts = [point("r1"), point("r2", MOVED), point("s", THETA * 0.5, 0.125, "saddle", 1)]
    entries = write_atlas(tmp_path, pts)
    with open(tmp_path / ATLAS_CSV, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header, *lines = list(reader)
    assert tuple(header) == ATLAS_COLUMNS and len(lines) == len(entries) == 2
    rows = [dict(zip(header, line, strict=True)) for line in lines]
    for row, e in zip(rows, entries, strict=True):
        r = e.representative
        assert int(row["id"]) == e.id and int(row["count"]) == e.count
        assert float(row["loss"]) == r.loss  # exact: floats are written with repr
        assert int(row["index"]) == r.index and row["classification"] == r.classification
        assert row["runs"].split(";") == e.runs and row["representative"] == e.runs[0]
        assert row["widths"] == "[2]"
        params = load_atlas_params(tmp_path, e.id)
        assert set(params) == set(SPEC.shapes)
        flat = np.concatenate([params[k].reshape(-1) for k in SPEC.shapes])
        assert np.array_equal(flat, canonical_form(SPEC, r.theta))
    assert rows[0]["runs"] == "s" and rows[1]["runs"] == "r1;r2"
    assert (tmp_path / ATLAS_NPZ).is_file()
    assert {p.name for p in tmp_path.iterdir()} == {ATLAS_CSV, ATLAS_NPZ}
    # an empty sweep writes a header-only CSV
    write_atlas(tmp_path, [])
    assert (tmp_path / ATLAS_CSV).read_text() == ",".join(ATLAS_COLUMNS) + "\n"


# ----------------------------------------------------------------------------- a real sweep

BASE = """\
[teacher]
kind = "explicit"
input_dim = 2
widths = [2]
activation = "tanh"
bias = false
params = { w1 = [[1.0, 0.5], [-0.3, 1.2]], w2 = [[1.0, -0.7]] }
[student]
widths = [2]
activation = "tanh"
bias = false
[data]
kind = "gaussian"
samples = 100
seed = 7
[dynamics]
method = "flow"
solver = "tsit5"
t_max = 100.0
n_saves = 20
max_seconds = 120
[refine]
method = "newton"
"""
#: θ₀ = A; A with the neurons swapped and one sign-flipped (the flow's image of A's: the
#: same minimum); two equal neurons (the flow keeps them equal: a symmetric saddle).
SWEEP = """\
base = "base.toml"
[grid]
"student.params" = [
  { w1 = [[0.5, 0.1], [-0.2, 0.6]], w2 = [[0.3, -0.4]] },
  { w1 = [[0.2, -0.6], [0.5, 0.1]], w2 = [[0.4, 0.3]] },
  { w1 = [[0.4, 0.3], [0.4, 0.3]], w2 = [[0.2, 0.2]] },
]
"""


def test_a_real_sweep_writes_its_atlas(tmp_path):
    from core.session import load_session
    from core.sweep import read_summary_csv, run_sweep

    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "sweep.toml").write_text(SWEEP)
    out = tmp_path / "out"
    result = run_sweep(tmp_path / "sweep.toml", out, serial=True)
    names = [r.name for r in result.sweep.runs]
    summary = {r["run"]: r for r in read_summary_csv(out / "summary.csv")}
    assert [summary[n]["outcome"] for n in names] == ["zero-loss", "zero-loss", "saddle"]
    atlas = read_summary_csv(out / ATLAS_CSV)
    assert [(r["classification"], r["index"], r["runs"]) for r in atlas] == [
        ("minimum", "0", f"{names[0]};{names[1]}"),
        ("saddle", "1", names[2]),
    ]
    assert [int(r["count"]) for r in atlas] == [2, 1]
    assert len({r["problem"] for r in atlas}) == 1
    assert [e.runs for e in result.atlas] == [r["runs"].split(";") for r in atlas]
    # Each representative computes the function of its run's analysed end point.
    x = np.random.default_rng(0).normal(size=(20, 2))
    for row in atlas:
        session = load_session(out / row["representative"])
        refined = session.refined_theta
        assert float(row["loss"]) == session.analysis["loss"]
        params = load_atlas_params(out, row["id"])
        theta = np.concatenate([params[k].reshape(-1) for k in SPEC.shapes])
        f_run = np.asarray(forward(SPEC, refined, x))
        assert np.max(np.abs(np.asarray(forward(SPEC, theta, x)) - f_run)) < 1e-12
    # The two minima really are different parameter vectors, one symmetry apart.
    a, b = (load_session(out / n).refined_theta for n in names[:2])
    assert np.max(np.abs(a - b)) > 0.1
    assert symmetric_distance(SPEC, a, b).distance < 1e-8
    assert math.isclose(float(atlas[1]["loss"]), float(summary[names[2]]["analysed_loss"]))
    # A rerun (every run skipped) writes the same atlas.
    before = (out / ATLAS_CSV).read_bytes()
    again = run_sweep(tmp_path / "sweep.toml", out, serial=True)
    assert again.skipped == 3 and (out / ATLAS_CSV).read_bytes() == before


def test_problem_key_is_the_landscape_not_the_dynamics():
    from core.config import parse_config
    from core.sweep.atlas import problem_key

    params = {"w1": [[1.0, 0.5], [-0.3, 1.2]], "w2": [[1.0, -0.7]]}
    base = {
        "teacher": {"kind": "explicit", "input_dim": 2, "widths": [2], "activation": "tanh",
                    "bias": False, "params": params},
        "student": {"widths": [2], "activation": "tanh", "bias": False},
        "data": {"kind": "gaussian", "samples": 100, "seed": 7},
    }  # fmt: skip

    def key(seed=1, teacher=None, **tables):
        m = {**base, "seed": seed, **tables}
        return problem_key(parse_config(m, "k"), teacher)

    same = key()
    assert key(seed=2) == same  # θ₀ only: the teacher is explicit and the data seed fixed
    assert key(dynamics={"method": "gd", "lr": 0.5}, refine={"method": "none"}) == same
    assert key(student={**base["student"], "init_scale": 0.1}) == same
    assert key(student={**base["student"], "seed": 9}) == same  # the init's own seed
    # fixed output weights come from student.params: then params are the landscape
    fixed = {**base["student"], "train_output": False}
    p1 = {"w1": [[1.0, 0.0], [0.0, 1.0]], "w2": [[1.0, 1.0]]}
    p2 = {"w1": [[1.0, 0.0], [0.0, 1.0]], "w2": [[1.0, -1.0]]}
    assert key(student={**fixed, "params": p1}) != key(student={**fixed, "params": p2})
    assert key(student={**base["student"], "widths": [3]}) != same
    assert key(data={"kind": "gaussian", "samples": 100}) != key(
        seed=2, data={"kind": "gaussian", "samples": 100}
    )  # the seed draws the sample
    assert key(data={**base["data"], "seed": 8}) != same
    assert key(dynamics={"maxnorm": 10.0}) != same
    # A seed-drawn teacher enters through its actual weights (the report's).
    t1 = {"kind": "random", "params": {"w1": [[1.0]]}}
    t2 = {"kind": "random", "params": {"w1": [[2.0]]}}
    assert key(teacher=t1) == key(seed=2, teacher=t1) != key(teacher=t2)
