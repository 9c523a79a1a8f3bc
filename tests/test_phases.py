"""core.phases: plateaus, descents, channels and convergence against cases with known answers.

* a deep (two-layer) linear net from small initialisation: plateaus, in order, at the best
  rank-r fits ½ Σ_{i>r} σ_i(Y/√N)², computed here by NumPy SVD of the targets;
* the shipped symmetry-saddle and channel sessions (stored claims re-derived);
* smooth convergences (closed-form convex flow, teacher recovery from near the teacher):
  no plateau;
* synthetic loss curves made of sigmoids in log t with known levels, and edge cases;
* the report: ``phases`` in time order with the contract's keys (CLI and headless run).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from core.config import parse_config
from core.networks import make_spec
from core.phases import (
    CHANNEL_LMAX_TAIL_GROWTH,
    CONVERGED_GRAD_TOL,
    PLATEAU_FLAT_REL,
    Phase,
    _pair_onset,
    detect_phases,
    session_phases,
)
from core.problem import build_problem
from core.runner import run_config
from core.session import Segment, Session, SpectrumSnapshot, load_session
from explorer.cli import main

SESSIONS = Path(__file__).resolve().parent.parent / "sessions"
CONTRACT_KEYS = {"kind", "t_start", "t_end", "loss", "index", "note"}


def kinds(phases: list[Phase]) -> list[str]:
    return [p.kind for p in phases]


def assert_time_ordered(phases) -> None:
    """Contract keys; t_start ≤ t_end; each phase starts where the last ended or later."""
    rows = [p if isinstance(p, dict) else p.to_json() for p in phases]
    for p in rows:
        assert set(p) == CONTRACT_KEYS
        assert p["kind"] in ("plateau", "descent", "channel", "converged")
        assert p["t_start"] <= p["t_end"]
        assert isinstance(p["note"], str) and p["note"]
        assert p["index"] is None or (isinstance(p["index"], int) and p["index"] >= 0)
    for a, b in itertools.pairwise(rows):
        assert b["t_start"] >= a["t_end"]


# ---------------------------------------------------------------------------------------
# Synthetic curves


def sigmoid_curve(u, drops, levels_floor=0.0, width=0.05):
    """L(u) = floor + Σ_k h_k (1 − s((u − u_k)/w)), s the logistic, u = log₁₀ t.

    Gradient-flow-like ‖∇L‖ = sqrt(−dL/dt) (dL/dt = −‖∇L‖₂²), which has a local minimum on
    each plateau and a peak at each drop.  ``drops``: [(u_k, h_k)].
    """
    t = 10.0**u
    loss = np.full_like(u, levels_floor)
    dldt = np.zeros_like(u)
    for uk, hk in drops:
        z = (u - uk) / width
        s = 1.0 / (1.0 + np.exp(-z))
        loss += hk * (1.0 - s)
        dldt -= hk * s * (1.0 - s) / (width * t * np.log(10.0))
    return t, loss, np.sqrt(np.abs(dldt))


U = np.linspace(-2.0, 5.0, 281)  # 40 saves per decade
DROPS = [(0.5, 10.0), (2.0, 1.0), (3.5, 0.1)]
FLOOR = 1e-3


def test_sigmoid_plateaus_levels_and_boundaries():
    t, loss, g = sigmoid_curve(U, DROPS, FLOOR)
    phases = detect_phases(t, loss, g)
    assert kinds(phases) == ["plateau", "descent"] * 3 + ["converged"]
    plateaus = [p for p in phases if p.kind == "plateau"]
    # levels: the floor plus the heights of the drops still to come
    expected = [FLOOR + sum(h for _, h in DROPS[k:]) for k in range(len(DROPS))]
    assert [p.loss for p in plateaus] == pytest.approx(expected, rel=PLATEAU_FLAT_REL)
    for p, (uk, _) in zip(plateaus, DROPS, strict=True):
        inside = (t >= p.t_start) & (t <= p.t_end)
        lo, hi = loss[inside].min(), loss[inside].max()
        assert hi - lo <= PLATEAU_FLAT_REL * hi  # flat...
        i0, i1 = np.flatnonzero(inside)[[0, -1]]
        after = loss[i1 + 1]
        assert not max(hi, after) - min(lo, after) <= PLATEAU_FLAT_REL * max(hi, after)
        if i0 > 0:  # ...and maximal: one more save on either side is not flat
            before = loss[i0 - 1]
            assert not max(hi, before) - min(lo, before) <= PLATEAU_FLAT_REL * max(hi, before)
        assert p.t_end < 10.0**uk  # the drop comes after the plateau
    for p, (uk, _) in zip(plateaus[1:], DROPS, strict=False):
        assert p.t_start > 10.0**uk  # ...and before the next one
    assert phases[0].t_start == t[0] and phases[-1].t_end == t[-1]
    assert all(p.index is None for p in phases)  # no spectra given
    assert_time_ordered(phases)


def test_sigmoid_curve_ends_converged_when_gradient_vanishes():
    u = np.linspace(-2.0, 7.0, 361)
    t, loss, g = sigmoid_curve(u, [(0.5, 1.0)], 0.0, width=0.05)
    g = np.maximum(g, 1e-300)
    phases = detect_phases(t, loss, g)
    assert kinds(phases) == ["plateau", "descent", "converged"]
    conv = phases[-1]
    assert conv.t_end == t[-1]
    # converged from the save after which ‖∇L‖∞ stays ≤ CONVERGED_GRAD_TOL (the loss → 0
    # keeps falling by orders of magnitude, so it is never flat in relative terms).  On the
    # plateau ‖∇L‖∞ is below that tolerance too: it is a plateau because the flow leaves it.
    assert g[0] <= CONVERGED_GRAD_TOL
    first = t[np.flatnonzero(g > CONVERGED_GRAD_TOL)[-1] + 1]
    assert conv.t_start == pytest.approx(first)


def test_t0_row_nan_rows_and_duplicates_do_not_change_the_plateaus():
    t, loss, g = sigmoid_curve(U, DROPS, FLOOR)
    base = detect_phases(t, loss, g)
    # a t = 0 row on the first plateau: the first plateau starts at 0, nothing else moves
    t0 = np.concatenate([[0.0], t])
    l0 = np.concatenate([[loss[0]], loss])
    g0 = np.concatenate([[g[0]], g])
    with_zero = detect_phases(t0, l0, g0)
    assert with_zero[0].t_start == 0.0
    assert [(p.kind, p.t_end, p.loss) for p in with_zero] == [
        (p.kind, p.t_end, p.loss) for p in base
    ]
    # a t = 0 row well above the first plateau: a descent from t = 0 comes first
    l_hi = l0.copy()
    l_hi[0] = 2 * loss[0]
    hi = detect_phases(t0, l_hi, g0)
    assert hi[0].kind == "descent" and hi[0].t_start == 0.0 and hi[0].t_end == t[0]
    assert [(p.kind, p.loss) for p in hi[1:]] == [(p.kind, p.loss) for p in base]
    # NaN rows (a blown-up step) and a duplicated time are ignored
    tn, ln, gn = t.copy(), loss.copy(), g.copy()
    ln[50] = np.nan
    gn[120] = np.inf
    tn = np.insert(tn, 200, tn[200])
    ln = np.insert(ln, 200, ln[200] * 7)  # the first of equal times is dropped
    gn = np.insert(gn, 200, gn[200])
    assert [(p.kind, p.loss) for p in detect_phases(tn, ln, gn)] == [(p.kind, p.loss) for p in base]


def test_edge_cases():
    assert detect_phases([], [], []) == []
    assert detect_phases([np.nan], [1.0], [1.0]) == []
    assert detect_phases([0.0], [1.0], [0.5]) == []  # one row, not critical: nothing to say
    (only,) = detect_phases([3.0], [0.25], [1e-13])
    assert (only.kind, only.t_start, only.t_end, only.loss) == ("converged", 3.0, 3.0, 0.25)
    assert detect_phases([0.0, 1.0], [1.0, 1.0], [0.5, 0.5]) == []  # flat, too short
    assert kinds(detect_phases([0.0, 1.0], [1.0, 0.5], [0.5, 0.5])) == ["descent"]
    with pytest.raises(ValueError, match="t, loss and grad_norm must have one length"):
        detect_phases([0.0, 1.0], [1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="loss must be 1-D"):
        detect_phases([0.0], [[1.0]], [1.0])
    with pytest.raises(ValueError, match="t must be non-decreasing"):
        detect_phases([1.0, 0.5], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="t must be ≥ 0"):
        detect_phases([-1.0, 0.5], [1.0, 1.0], [1.0, 1.0])
    spec = make_spec(2, (2,), "softplus")
    with pytest.raises(ValueError, match=rf"theta must have shape \(2, {spec.n_params}\)"):
        detect_phases([0.0, 1.0], [1.0, 0.5], [1.0, 1.0], theta=np.zeros((3, 9)), spec=spec)


def test_plateau_index_from_a_spectrum_inside_with_the_analysis_tolerance():
    t, loss, g = sigmoid_curve(U, DROPS, FLOOR)
    # a spectrum on plateau 1 with two descent directions and one -1e-12 that is zero at
    # the analysis tolerance (1e-9 · max|λ|), one on plateau 2 with one, one after the runs
    spectra = [
        (10.0**0.0, np.array([-2e-3, -1e-3, -1e-12, 1.0])),
        (10.0**1.2, np.array([-1e-3, 1e-12, 2.0, 3.0])),
        (10.0**6.0, np.array([1.0, 2.0, 3.0, 4.0])),
    ]
    plateaus = [p for p in detect_phases(t, loss, g, spectra) if p.kind == "plateau"]
    assert [p.index for p in plateaus] == [2, 1, None]
    assert "index 2" in plateaus[0].note and "index 1" in plateaus[1].note


def test_convex_flow_in_closed_form_has_no_plateau():
    """L = ½ Σ λ_i c_i² e^(−2λ_i t), λ from 1e-3 to 1: flat for t ≲ 1e-3, yet no plateau."""
    lam = np.geomspace(1e-3, 1.0, 4)
    c = np.ones(4)
    t = np.concatenate([[0.0], np.geomspace(1e-5, 3e4, 300)])
    e = np.exp(-np.outer(t, lam))
    loss = 0.5 * (e**2 * lam * c**2).sum(axis=1)
    g = np.max(np.abs(e * lam * c), axis=1)  # ‖∇L‖∞ of the quadratic, ∇L_i = λ_i θ_i
    phases = detect_phases(t, loss, g)
    assert "plateau" not in kinds(phases)
    assert kinds(phases) == ["descent", "converged"]
    assert phases[-1].t_start == pytest.approx(t[np.flatnonzero(g <= CONVERGED_GRAD_TOL)[0]])


def test_converged_phase_starts_where_the_loss_stopped_changing():
    """L → L* > 0 (a minimum with a positive loss): converged from where L is flat to the end."""
    t = np.geomspace(1e-2, 1e4, 121)
    loss = 0.02 + 0.3 * np.exp(-t / 5.0)
    g = 0.3 / 5.0 * np.exp(-t / 5.0) + 1e-14
    phases = detect_phases(t, loss, g)
    assert kinds(phases) == ["descent", "converged"]
    start = phases[-1].t_start
    flat_from = t[np.flatnonzero(loss - 0.02 <= PLATEAU_FLAT_REL * 0.02 * (1 + 1e-9))[0]]
    assert start == pytest.approx(flat_from)
    assert phases[-1].loss == pytest.approx(0.02)


def test_channel_from_spectra_needs_a_growing_lambda_max():
    """A power-law tail L ∝ t^(−0.7) after a drop: a channel only while λmax still grows."""
    t, loss, g = sigmoid_curve(np.linspace(-2, 8, 401), [(1.0, 1.0)], 0.0)
    tail = t > 10.0**1.5
    loss = loss + np.where(tail, 1e-3 * (t / 10.0**1.5) ** -0.7, 1e-3)
    g = g + np.where(tail, 1e-3 * (t / 10.0**1.5) ** -0.85, 1e-3) * 1e-2
    growing = [(ts, np.array([0.1, ts**0.25])) for ts in np.geomspace(10.0**1.6, 1e8, 30)]
    phases = detect_phases(t, loss, g, growing)
    assert kinds(phases)[-1] == "channel"
    ch = phases[-1]
    assert ch.t_end == t[-1] and 10.0**1.0 < ch.t_start < 10.0**2.0
    assert "λmax grows" in ch.note
    settled = [(ts, np.array([0.1, 5.0])) for ts, _ in growing]
    assert "channel" not in kinds(detect_phases(t, loss, g, settled))
    assert "channel" not in kinds(detect_phases(t, loss, g))  # no evidence, no channel


# The default problem with a student of width 2 (explorer's built-in config with
# student.widths = [2]; t_max = 1e6), measured: every 5th save (t, L, ‖∇L‖∞) and λmax of
# every other recorded spectrum.  The loss falls at most 2.2 e-folds per decade anywhere
# (0.46 → 0.06 by t ≈ 9, a second drop to 0.011 by t ≈ 240, then L − L∞ ∝ 1/t towards
# 0.00582), so no fast fall separates a descent from the slow tail; λmax dips 3.32 → 3.02
# (t ≈ 1) and then grows 1.7–2.6× per decade to the end, while neuron 1's bias grows like
# log t; no neuron pair ever passes the channel test.
DEFAULT_W2_TRAJ = [
    (0, 0.4646, 0.6911), (0.01448, 0.4473, 0.6571), (0.023, 0.4377, 0.6379),
    (0.03654, 0.4236, 0.6087), (0.05805, 0.4034, 0.5649), (0.09222, 0.3761, 0.5019),
    (0.1465, 0.3424, 0.416), (0.2327, 0.3058, 0.3084), (0.3697, 0.2718, 0.2788),
    (0.5873, 0.2443, 0.2506), (0.9329, 0.2211, 0.2249), (1.482, 0.1956, 0.2018),
    (2.354, 0.1627, 0.178), (3.74, 0.12, 0.1414), (5.941, 0.07962, 0.07561),
    (9.438, 0.06133, 0.02583), (14.99, 0.05475, 0.0176), (23.82, 0.0485, 0.0154),
    (37.83, 0.04205, 0.01227), (60.1, 0.03597, 0.01012), (95.48, 0.02936, 0.008328),
    (151.7, 0.01925, 0.009096), (240.9, 0.01105, 0.003303), (382.7, 0.009342, 0.001773),
    (608, 0.008424, 0.001165), (965.9, 0.007675, 0.0008618), (1534, 0.007085, 0.000625),
    (2437, 0.006645, 0.000434), (3872, 0.006341, 0.0002896), (6151, 0.006143, 0.0001879),
    (9771, 0.006019, 0.00012), (1.552e4, 0.005942, 7.596e-05), (2.466e4, 0.005895, 4.79e-05),
    (3.917e4, 0.005866, 3.015e-05), (6.223e4, 0.005848, 1.898e-05),
    (9.885e4, 0.005838, 1.195e-05), (1.57e5, 0.005831, 7.536e-06),
    (2.495e5, 0.005827, 4.759e-06), (3.963e5, 0.005824, 3.005e-06),
    (6.295e5, 0.005823, 1.894e-06), (1e6, 0.005822, 1.189e-06),
]  # fmt: skip
DEFAULT_W2_LMAX = [
    (0, 3.317), (0.0132, 3.298), (0.023, 3.285), (0.04009, 3.264), (0.06986, 3.232),
    (0.1217, 3.187), (0.2121, 3.133), (0.3697, 3.08), (0.6442, 3.041), (1.123, 3.021),
    (1.956, 3.025), (3.409, 3.089), (5.941, 3.282), (10.35, 3.547), (18.04, 3.81),
    (31.44, 4.204), (54.79, 4.808), (95.48, 5.723), (166.4, 7.363), (289.9, 8.979),
    (505.3, 10.2), (880.5, 11.9), (1534, 14.43), (2674, 18.05), (4660, 22.88), (8120, 28.85),
    (1.415e4, 35.86), (2.466e4, 43.83), (4.297e4, 52.7), (7.488e4, 62.44), (1.305e5, 72.99),
    (2.274e5, 84.32), (3.963e5, 96.45), (6.906e5, 109.4), (1e6, 118.5),
]  # fmt: skip


def test_a_loss_slow_from_the_start_is_a_descent_before_an_unsure_channel():
    """Slow from the start, the loss marks no channel onset: the spectra date it, where λmax
    has grown by CHANNEL_LMAX_TAIL_GROWTH over the decade before (as the tail test would
    say had the run stopped there) and keeps doing so; before that it is a descent.  With
    only λmax as evidence the phase says it is unsure."""
    t, loss, g = np.array(DEFAULT_W2_TRAJ, dtype=float).T
    spectra = [(ts, np.array([0.0, lm])) for ts, lm in DEFAULT_W2_LMAX]
    phases = detect_phases(t, loss, g, spectra)
    assert kinds(phases) == ["descent", "channel"]
    descent, ch = phases
    assert descent.t_start == 0.0 and descent.t_end == ch.t_start
    # λmax has grown 1.25× over the preceding decade from t ≈ 20 on (3.02 → 3.81 by 18)
    assert 10.0 <= ch.t_start <= 1e2
    grown = [
        (a, b)
        for a, b in DEFAULT_W2_LMAX
        if a > 0 and a <= ch.t_start and math.log10(a) >= math.log10(ch.t_start) - 1
    ]
    growth = grown[-1][1] / grown[0][1]
    assert growth ** (1 / math.log10(grown[-1][0] / grown[0][0])) >= CHANNEL_LMAX_TAIL_GROWTH
    assert ch.t_end == 1e6 and ch.loss == pytest.approx(0.005822)
    assert not ch.sure and descent.sure
    assert ch.note.startswith("possibly a channel to infinity")
    assert "but no neuron pair passes the channel test" in ch.note
    assert_time_ordered(phases)


@pytest.mark.slow
def test_the_default_problem_with_width_two_descends_before_its_possible_channel(tmp_path):
    """The measured case above, run: explorer's default config with student.widths = [2]
    (to t = 1e3; the same onset as the run to 1e6, t ≈ 17-24)."""
    from core.config import config_to_dict, default_config

    table = config_to_dict(default_config())
    table["student"]["widths"] = [2]
    table["dynamics"].update(t_max=1e3, n_saves=60)
    table["refine"]["method"] = "none"
    session = load_session(run_config(parse_config(table, "default_w2"), tmp_path / "s"))
    phases = session_phases(session)
    assert kinds(phases) == ["descent", "channel"]
    assert 10.0 <= phases[-1].t_start <= 1e2 and not phases[-1].sure
    assert "no neuron pair passes the channel test" in phases[-1].note


def test_a_pair_dates_its_channel_where_it_converges_while_its_output_weights_diverge():
    """The shipped channel: its pair's ε = ½‖w̃₀ − w̃₁‖ shrinks and |a₀ − a₁| grows from the
    main drop on (t ≈ 100, before the loss's slow tail from t ≈ 264); cut the run after the
    drop, so that the loss is slow from its start, and the pair's own motion dates it."""
    session = load_session(SESSIONS / "channel_to_infinity")
    seg = session.final_segment
    t = np.asarray(seg.t)
    x = np.asarray(build_problem(session.config).data.x)
    keep = t >= 300.0
    cut = detect_phases(
        t[keep], seg.loss[keep], seg.grad_norm[keep], theta=seg.theta[keep], spec=seg.spec, x=x
    )
    assert kinds(cut) == ["channel"] and cut[0].sure
    assert cut[0].t_start == t[keep][0]
    assert "neurons 0 and 1" in cut[0].note
    # and the pair does diverge from there: ε falls, |a₀ − a₁| grows, row by row
    onset = _pair_onset(seg.theta, np.arange(t.size), seg.spec, (0, 1), t)
    assert 50.0 < onset < 264.0
    w = np.asarray(seg.theta)[t >= onset]
    eps = 0.5 * np.linalg.norm(w[:, 0:2] - w[:, 2:4], axis=1)
    da = np.abs(w[:, 4] - w[:, 5])
    assert eps[-1] < 0.2 * eps[0] and da[-1] > 5 * da[0]


# ---------------------------------------------------------------------------------------
# Real runs


def deep_linear_config(singular_values, samples: int, t_max: float = 1e3) -> dict:
    """A two-layer linear net W2 W1 (3 → 3 → 3) from init scale 1e-3 on y = T x."""
    return {
        "seed": 2,
        "teacher": {
            "kind": "explicit",
            "input_dim": 3,
            "widths": [3],
            "activation": "identity",
            "bias": False,
            "output_dim": 3,
            "params": {"w1": np.diag(singular_values).tolist(), "w2": np.eye(3).tolist()},
        },
        "student": {"widths": [3], "activation": "identity", "bias": False, "init_scale": 1e-3},
        "data": {"kind": "gaussian", "samples": samples},
        "dynamics": {"method": "flow", "t_max": t_max, "n_saves": 100, "max_seconds": 120},
        "refine": {"method": "none"},
    }


@pytest.fixture(
    scope="module",
    # singular values a decade apart; and (5, 1, 0.2), whose rank-1 plateau is flat to 1 %
    # for only 0.2 decade of t
    params=[((10.0, 1.0, 0.1), 50), ((5.0, 1.0, 0.2), 80)],
    ids=["sv-10-1-0.1", "sv-5-1-0.2"],
)
def deep_linear_session(request, tmp_path_factory):
    cfg = parse_config(deep_linear_config(*request.param), "deep_linear")
    out = run_config(cfg, tmp_path_factory.mktemp("phases") / "deep_linear")
    return cfg, load_session(out)


def test_deep_linear_plateaus_at_best_rank_r_fits(deep_linear_session):
    """Saddle-to-saddle: plateaus in order at the losses of the best rank-r fits.

    With targets Y = X Tᵀ (N × 3) and L(W) = (1/2N)‖X Wᵀ − Y‖²_F, the best rank-r W leaves
    (1/2N) Σ_{i>r} σ_i(Y)² (Eckart–Young; Y lies in the column space of X), i.e.
    ½ Σ_{i>r} λ_i(T Σ_x Tᵀ) with Σ_x = XᵀX/N.  The flow from small weights passes the
    rank-0, 1, 2 critical points one after another (Saxe et al. 2014; Jacot et al. 2021).
    """
    cfg, session = deep_linear_session
    problem = build_problem(cfg)
    y = np.asarray(problem.data.y)
    sv = np.linalg.svd(y / np.sqrt(y.shape[0]), compute_uv=False)
    best = [0.5 * float(np.sum(sv[r:] ** 2)) for r in range(3)]

    phases = session_phases(session)
    assert_time_ordered(phases)
    plateaus = [p for p in phases if p.kind == "plateau"]
    # The flow passes each saddle at a distance ~ the init scale, so its loss there differs
    # from the saddle's by O(1e-4) relative (observed ≤ 1e-4); 2e-3 is five times tighter
    # than the plateau's own flatness, so a level from the wrong rank fails.
    assert [p.loss for p in plateaus] == pytest.approx(best, rel=2e-3)
    assert kinds(phases) == ["plateau", "descent"] * 3 + ["converged"]
    assert phases[0].t_start == 0.0
    for p in plateaus:
        assert p.index is None or p.index >= 1  # saddles
    assert phases[-1].index in (None, 0)
    # and the report carries them
    report_phases = session.report["phases"]
    assert report_phases == [p.to_json() for p in phases]


def test_teacher_recovery_near_the_teacher_has_no_plateau(tmp_path):
    """Started 0.03 from the teacher's weights, the flow converges smoothly: no plateau."""
    w1 = [[1.0, 0.5], [-0.7, 1.2]]
    b1, w2, b2 = [0.1, -0.3], [[1.0, -0.8]], [0.2]
    rng = np.random.default_rng(0)

    def near(a):
        return (np.asarray(a) + 0.03 * rng.standard_normal(np.shape(a))).tolist()

    cfg = parse_config(
        {
            "seed": 1,
            "teacher": {
                "kind": "explicit",
                "input_dim": 2,
                "widths": [2],
                "activation": "softplus",
                "bias": True,
                "params": {"w1": w1, "b1": b1, "w2": w2, "b2": b2},
            },
            "student": {
                "widths": [2],
                "activation": "softplus",
                "bias": True,
                "params": {"w1": near(w1), "b1": near(b1), "w2": near(w2), "b2": near(b2)},
            },
            "data": {"kind": "gaussian", "samples": 100},
            "dynamics": {"method": "flow", "t_max": 1e5, "n_saves": 100, "max_seconds": 120},
            "refine": {"method": "none"},
        },
        "near_teacher",
    )
    session = load_session(run_config(cfg, tmp_path / "near"))
    phases = session_phases(session)
    assert "plateau" not in kinds(phases)
    assert kinds(phases)[-1] == "converged" and phases[-1].index in (None, 0)
    assert_time_ordered(phases)


def test_symmetry_saddle_session_plateau_then_descent_then_convergence():
    session = load_session(SESSIONS / "symmetry_saddle")
    phases = session_phases(session)
    assert kinds(phases) == ["plateau", "descent", "converged"]
    plateau = phases[0]
    # the start is 1e-3 from the split-neuron saddle: the plateau's level is the loss there
    assert plateau.loss == pytest.approx(float(session.segments[0].loss[0]), rel=1e-3)
    assert plateau.t_start == 0.0 and 1e2 < plateau.t_end < 1e3  # README: "until t ≈ 300"
    assert plateau.index is not None and plateau.index >= 1
    assert phases[-1].index == 0 and phases[-1].t_end == session.final_t
    assert_time_ordered(phases)


def test_channel_session_ends_in_a_channel():
    session = load_session(SESSIONS / "channel_to_infinity")
    phases = session_phases(session)
    assert kinds(phases) == ["descent", "channel"]
    ch = phases[-1]
    neurons = session.report["channels"][0]["neurons"]
    assert f"neurons {neurons[0]} and {neurons[1]}" in ch.note
    assert ch.t_end == session.final_t and ch.loss == pytest.approx(session.final_loss)
    # the channel is entered after the main drop (t ≈ 100-250), long before the end
    assert 1e2 < ch.t_start < 1e3
    # cut the run short.  detect_channels sees the pair from t ≈ 2.8e7 on (its ratio test);
    # before that only the spectra's growing λmax can tell, and without them it is a descent
    seg = session.final_segment
    x = np.asarray(build_problem(session.config).data.x)
    spectra = [(sp.t, sp.eigenvalues) for sp in session.spectra]
    for t_cut, with_spectra, expect in (
        (1e8, False, "channel"),
        (1e7, False, "descent"),
        (1e7, True, "channel"),
    ):
        m = int(np.searchsorted(seg.t, t_cut))
        cut = detect_phases(
            seg.t[:m],
            seg.loss[:m],
            seg.grad_norm[:m],
            [sp for sp in spectra if sp[0] <= seg.t[m - 1]] if with_spectra else (),
            theta=seg.theta[:m],
            spec=seg.spec,
            x=x,
        )
        assert kinds(cut) == (["descent", "channel"] if expect == "channel" else ["descent"])
        if expect == "channel":
            assert ("neurons 0 and 1" in cut[-1].note) != with_spectra
            assert cut[-1].t_start == pytest.approx(ch.t_start)


def test_session_phases_runs_over_every_segment():
    """Two segments, as after surgery at t₀ = 100: the second is analysed in log(t − t₀).

    Its plateau (t − t₀ from 0.01 to ~20) spans three decades of t − t₀ but only 0.08
    decade of t, so on the session's own log t axis it would be too short to see.
    """
    spec = make_spec(2, (2,), "softplus")
    t1, l1, g1 = sigmoid_curve(np.linspace(-2, 2, 161), [(1.0, 1.0)], 0.1)
    s2, l2, g2 = sigmoid_curve(np.linspace(-2, 4, 241), [(1.5, 0.05)], 0.01)
    t0 = float(t1[-1])
    t2 = np.concatenate([[t0], t0 + s2])  # the state at the surgery, then the flow
    l2, g2 = np.concatenate([[l2[0]], l2]), np.concatenate([[g2[0]], g2])
    theta = np.zeros((1, spec.n_params))
    segs = [
        Segment(spec, t, np.repeat(theta, t.size, axis=0), loss, g)
        for t, loss, g in ((t1, l1, g1), (t2, l2, g2))
    ]
    eig = np.concatenate([[-1.0], np.ones(spec.n_params - 1)])
    spectra = [SpectrumSnapshot(10.0**0.5, 0, eig), SpectrumSnapshot(t0 + 1.0, 1, eig)]
    session = Session(config=parse_config({}, "defaults"), segments=segs, spectra=spectra)
    phases = session_phases(session)
    assert_time_ordered(phases)
    first = detect_phases(t1, l1, g1, [(10.0**0.5, eig)])
    assert phases[: len(first)] == first
    second = phases[len(first) :]
    assert kinds(second) == ["plateau", "descent", "converged"]
    assert second[0].t_start == t0 and second[0].index == 1
    assert second[0].loss == pytest.approx(0.06, rel=PLATEAU_FLAT_REL)
    assert t0 + 10.0**1.0 < second[0].t_end < t0 + 10.0**1.5  # session times, not t − t₀
    assert all(t1[-1] <= p.t_start and p.t_end <= t2[-1] for p in second)
    assert {p.t_start for p in second} | {p.t_end for p in second} <= set(t2)
    # on the session's absolute log t the second plateau is too short to be seen
    assert "plateau" not in kinds(detect_phases(t2, l2, g2))


@pytest.mark.parametrize("name", ["symmetry_saddle", "saddle_to_saddle"])
def test_report_json_has_phases(name, capsys):
    """Stored reports made before phases existed get them computed on load."""
    assert main(["report", str(SESSIONS / name), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert_time_ordered(report["phases"])
    assert report["phases"] == [p.to_json() for p in session_phases(load_session(SESSIONS / name))]
    kinds_ = [p["kind"] for p in report["phases"]]
    assert kinds_[0] == "plateau" and kinds_[-1] == "converged"
    if name == "saddle_to_saddle":  # three-layer linear net: best rank-0/1/2 fits again
        y = np.asarray(build_problem(load_session(SESSIONS / name).config).data.y)
        sv = np.linalg.svd(y / np.sqrt(y.shape[0]), compute_uv=False)
        best = [0.5 * float(np.sum(sv[r:] ** 2)) for r in range(3)]
        levels = [p["loss"] for p in report["phases"] if p["kind"] == "plateau"]
        assert levels == pytest.approx(best, rel=2e-3)
        assert levels == pytest.approx([4.95, 0.595, 0.0485], rel=1e-2)  # README's numbers


def test_partial_report_of_an_interrupted_session_has_phases():
    """No stored report (a run killed before the end): the computed one has phases too."""
    import dataclasses

    from core.runner import session_report

    session = load_session(SESSIONS / "symmetry_saddle")
    report = session_report(dataclasses.replace(session, report=None))
    assert report["partial"] is True
    assert report["phases"] == [p.to_json() for p in session_phases(session)]


def test_a_handed_over_run_ends_converged_and_its_tail_is_no_channel():
    """copy_or_average stops where core.fixed_point hands over (t ≈ 608, loss still
    falling slowly): the tail is a descent, not a channel, and convergence is dated at the
    hand-over with the refined point's loss and index."""
    session = load_session(SESSIONS / "copy_or_average")
    assert session.refined["handed_over"] and session.refined["converged"]
    phases = session_phases(session)
    assert [p.kind for p in phases] == ["descent", "converged"]
    end = phases[-1]
    assert end.t_start == end.t_end == session.segments[-1].t[-1]
    assert end.loss == session.refined["loss"] and end.index == 0
    # Without the hand-over record the same trajectory's slow tail reads as a channel.
    import dataclasses

    bare = dataclasses.replace(session, refined=None)
    assert "channel" in [p.kind for p in session_phases(bare)]


@pytest.mark.parametrize("name", sorted(p.name for p in SESSIONS.iterdir() if p.is_dir()))
def test_shipped_reports_hold_the_phases_core_detects_today(name):
    """A shipped session's stored report (what `explorer report` prints) says what
    core.phases finds now: regenerate it (scripts/make_demo_sessions.py NAME) when this fails."""
    from core.phases import session_phases
    from core.session import load_session

    session = load_session(SESSIONS / name)
    stored = session.report["phases"]
    now = session_phases(session)
    assert [(p["kind"], p["index"]) for p in stored] == [(p.kind, p.index) for p in now]
    for p, q in zip(stored, now, strict=True):
        assert math.isclose(p["t_start"], q.t_start, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(p["t_end"], q.t_end, rel_tol=1e-9, abs_tol=1e-12)
