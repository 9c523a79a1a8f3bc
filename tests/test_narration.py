"""core.narration: each clause restates an analysis that passed, with its numbers, and the
text says so where the evidence is missing — checked on constructed states whose answer is
known in closed form (a split neuron with a chosen μ, a channel pair built from w ± εΔ and
±A/(2ε), a linear net with chosen singular values, a student made of the teacher's neurons),
and on the shipped sessions at chosen times."""

from __future__ import annotations

import numpy as np
import pytest

import core  # noqa: F401  (float64)
from core.analysis import gaussian_sample
from core.branch import branch_point, branch_session
from core.narration import (
    RANK_ABSENT,
    SPLIT_REL,
    PointFacts,
    Refined,
    narrate,
    point_facts,
)
from core.networks import flatten, make_spec
from core.phases import Phase
from core.surgery import split_neuron
from core.teachers import network_teacher

T = np.geomspace(1e-2, 1e3, 60)


def _facts(spec, theta, teacher=None, x=None, t=1.0):
    return point_facts(spec, theta, teacher, x, t=t, loss=0.1, grad_norm=1e-3)


# ----------------------------------------------------------------------------- phases


def test_plateau_names_the_index_and_lambda_min_of_the_spectrum_at_t():
    phases = [Phase("plateau", 0.0, 100.0, 0.25, 1, "")]
    n = narrate(10.0, T, np.full(T.size, 0.25), phases, eigenvalues=[-0.5, 0.0, 2.0, 3.0])
    assert n.kind == "plateau"
    assert "plateau since t ≈ 0" in n.text
    assert "saddle of index 1 (λmin = -0.5)" in n.text
    assert "L = 0.25" in n.text
    # two negative eigenvalues: index 2, read off the spectrum (not the phase's index)
    n2 = narrate(10.0, T, np.full(T.size, 0.25), phases, eigenvalues=[-0.5, -0.1, 2.0])
    assert "index 2" in n2.text


def test_without_a_spectrum_the_index_is_said_to_be_unknown():
    phases = [Phase("plateau", 0.0, 100.0, 0.25, None, "")]
    n = narrate(10.0, T, np.full(T.size, 0.25), phases)
    assert "unknown index" in n.text and "saddle" not in n.text


def test_the_phase_holding_t_is_named_and_a_boundary_belongs_to_the_next():
    phases = [
        Phase("plateau", 0.0, 10.0, 0.25, 1, ""),
        Phase("descent", 10.0, 100.0, 1e-3, 0, ""),
        Phase("converged", 100.0, 1e3, 1e-30, 0, ""),
    ]
    loss = np.where(T < 10, 0.25, 1e-3)
    assert narrate(5.0, T, loss, phases).kind == "plateau"
    d = narrate(10.0, T, loss, phases)
    assert d.kind == "descent" and "from the plateau at L ≈ 0.25" in d.text
    c = narrate(500.0, T, loss, phases, eigenvalues=[1.0, 2.0], loss0=0.25)
    assert c.kind == "converged" and "a minimum (index 0)" in c.text
    assert "zero loss" in c.text  # 1e-30 ≤ ZERO_LOSS_REL · 0.25


def test_an_unclassified_flat_tail_says_what_it_might_be_and_that_it_is_unsure():
    loss = np.where(T < 1.0, np.linspace(1.0, 0.3, T.size), 0.3)
    flat = narrate(T[-1], T, loss, [])
    assert flat.kind == "flat" and "loss flat since t ≈ 1" in flat.text
    assert "unclear" in flat.text  # no Hessian yet
    saddle = narrate(T[-1], T, loss, [], eigenvalues=[-0.2, 1.0])
    assert "index 1 (λmin = -0.2): near a saddle, a plateau so far" in saddle.text
    falling = narrate(T[-1], T, np.geomspace(1.0, 1e-3, T.size), [])
    assert falling.kind == "falling" and "no phase detected yet" in falling.text
    start = narrate(0.0, [0.0], [1.0], [])
    assert start.kind == "start" and "too few states yet" in start.text


def test_refinement_at_t_is_reported_with_convergence():
    phases = [Phase("descent", 0.0, 1e3, 1e-8, 0, "")]
    ok = Refined(1e3, 1e-29, 1e-15, True, "minimum", 0)
    n = narrate(1e3, T, np.geomspace(1.0, 1e-8, T.size), phases, refined=ok)
    assert n.kind == "converged" and n.lines[0].startswith("refined: exact minimum, index 0")
    assert "zero loss" in n.text
    bad = Refined(1e3, 7e-9, 1.5e-9, False, "channel", 0)
    m = narrate(1e3, T, np.geomspace(1.0, 1e-8, T.size), phases, refined=bad)
    assert m.kind == "channel" and "did not converge" in m.text
    # a refinement classified without the channel check is overruled by a channel pair
    spec = make_spec(2, [2], "softplus", bias=False)
    eps, w, d = 0.05, np.array([1.0, 0.5]), np.array([0.6, -0.8])
    th = flatten(spec, {"w1": [w + eps * d, w - eps * d], "w2": [[11.0, -11.0]]})
    facts = point_facts(spec, th, None, gaussian_sample(2), t=1e3, loss=7e-9, grad_norm=1e-9)
    said_min = Refined(1e3, 7e-9, 1.5e-9, False, "minimum", 0)
    c = narrate(1e3, T, np.ones(T.size), phases, facts, refined=said_min)
    assert c.kind == "channel" and "did not converge (channel, index 0)" in c.text
    # a refinement of another time is not this point's
    assert "refined" not in narrate(10.0, T, np.ones(T.size), phases, refined=ok).text


# ----------------------------------------------------------------------------- neurons


@pytest.mark.parametrize("mu", [0.3, 0.5])
def test_a_split_neuron_is_named_with_its_mu(mu):
    narrow = make_spec(2, [1], "softplus", bias=True)
    theta = flatten(narrow, {"w1": [[0.8, -0.4]], "b1": [0.2], "w2": [[1.5]], "b2": [0.1]})
    spec, th = split_neuron(narrow, np.asarray(theta), 0, mu)
    th = np.asarray(th).copy()
    th[0] += 1e-3  # w1[0, 0] of neuron 0: the pair is 0.1 % apart, not exactly equal
    n = narrate(1.0, T, np.full(T.size, 0.1), [], _facts(spec, th))
    assert "neurons 0 and 1 are a split pair" in n.text
    assert f"μ = {mu:.2f}" in n.text
    # pushed apart beyond SPLIT_REL it is no longer called one
    th2 = np.asarray(th).copy()
    th2[0] += 2 * SPLIT_REL
    assert "split pair" not in narrate(1.0, T, np.ones(T.size), [], _facts(spec, th2)).text


def test_a_channel_pair_is_named_with_eps_trends_and_glu_error():
    spec = make_spec(2, [2], "softplus", bias=False)
    w, delta, big_a = np.array([1.0, 0.5]), np.array([0.6, -0.8]), 1.1

    def pair(eps):
        a = big_a / (2 * eps)
        return np.asarray(
            flatten(spec, {"w1": [w + eps * delta, w - eps * delta], "w2": [[a, -a]]})
        )

    x = gaussian_sample(2)
    now, before = _facts(spec, pair(0.05), x=x, t=2e8), _facts(spec, pair(0.1), x=x, t=1e8)
    assert now.channels, "the constructed pair must pass core.analysis.detect_channels"
    phases = [Phase("channel", 1e2, 1e9, 1e-8, 0, "")]
    n = narrate(2e8, T, np.ones(T.size), phases, now, earlier=before)
    assert n.lines[0].startswith("channel to infinity since t ≈ 100")
    assert "neurons 0, 1 merge (ε = 0.05, shrinking)" in n.text
    assert f"a = ±{big_a / 0.1:.3g} growing" in n.text
    assert f"GLU error {now.channels[0].glu_error:.1g}" in n.text
    # the other way round (ε widening, |a| shrinking) is said as it is
    back = narrate(1e8, T, np.ones(T.size), phases, before, earlier=now)
    assert "widening" in back.text and "shrinking" in back.text.split("a = ")[1]


def test_a_channel_phase_without_a_passing_pair_says_it_is_unsure():
    spec = make_spec(2, [2], "softplus", bias=False)
    th = np.asarray(flatten(spec, {"w1": [[1.0, 0.0], [0.0, 1.0]], "w2": [[1.0, 1.0]]}))
    phases = [Phase("channel", 1e2, 1e9, 1e-8, 0, "")]
    n = narrate(1e6, T, np.ones(T.size), phases, _facts(spec, th, x=gaussian_sample(2)))
    assert "no neuron pair passes the channel test here" in n.text and "unsure" in n.text


def test_a_channel_only_the_spectra_show_is_said_to_be_possible_and_dated_after_the_descent():
    """The default problem with a student of width 2 (measured trajectory, tests/test_phases):
    at t = 2.35 the loss still falls in the descent; later core.phases sees a channel only in
    the growing λmax, no pair passing the channel test, and the narration says so."""
    from core.phases import detect_phases
    from tests.test_phases import DEFAULT_W2_LMAX, DEFAULT_W2_TRAJ

    t, loss, g = np.array(DEFAULT_W2_TRAJ, dtype=float).T
    phases = detect_phases(t, loss, g, [(ts, np.array([0.0, lm])) for ts, lm in DEFAULT_W2_LMAX])
    early = narrate(2.35, t, loss, phases)
    assert early.kind == "descent" and early.text.startswith("descent since t ≈ 0")
    onset = phases[-1].t_start
    late = narrate(1e3, t, loss, phases)
    assert late.kind == "channel"
    assert late.lines[0].startswith(f"possibly a channel to infinity since t ≈ {onset:.3g}")
    assert "but no neuron pair passes the channel test" in late.text
    assert "ever more slowly" not in late.text
    # a channel a pair confirms is said without doubt
    sure = [Phase("channel", onset, 1e6, 6e-3, 0, "")]
    assert narrate(1e3, t, loss, sure).lines[0].startswith("channel to infinity since")


def test_copies_of_the_teacher_and_a_stranger_are_told_apart():
    tspec = make_spec(2, [2], "softplus", bias=False)
    teacher = network_teacher(
        tspec, flatten(tspec, {"w1": [[1.0, 0.0], [0.0, 1.0]], "w2": [[1.0, 1.0]]})
    )
    both = np.asarray(flatten(tspec, {"w1": [[0.0, 1.0], [1.0, 0.0]], "w2": [[1.0, 1.0]]}))
    n = narrate(1.0, T, np.ones(T.size), [], _facts(tspec, both, teacher))
    assert "every neuron copies a teacher neuron (cos ≥ 1.000)" in n.text
    one = np.asarray(flatten(tspec, {"w1": [[0.0, 1.0], [1.0, -1.0]], "w2": [[1.0, 1.0]]}))
    m = narrate(1.0, T, np.ones(T.size), [], _facts(tspec, one, teacher))
    assert "neuron 0 copies teacher neuron 1 (cos 1.000)" in m.text
    assert "neuron 1: no teacher match yet" in m.text
    # while the flow still descends, roles are those of a passing state
    moving = [Phase("descent", 0.0, 10.0, 0.1, None, "")]
    assert (
        "so far: every neuron copies"
        in narrate(1.0, T, np.ones(T.size), moving, _facts(tspec, both, teacher)).text
    )
    settled = [Phase("converged", 0.0, 10.0, 0.1, 0, "")]
    text = narrate(1.0, T, np.ones(T.size), settled, _facts(tspec, both, teacher)).text
    assert "so far" not in text


def test_the_rank_of_a_linear_net_with_chosen_singular_values():
    spec = make_spec(3, [3], "identity", bias=False, output_dim=3)
    tth = flatten(spec, {"w1": np.diag([3.0, 1.0, 0.3]), "w2": np.eye(3)})
    teacher = network_teacher(spec, tth)

    def facts(s):
        th = flatten(spec, {"w1": np.diag(s), "w2": np.eye(3)})
        return _facts(spec, np.asarray(th), teacher)

    one = narrate(1.0, T, np.ones(T.size), [], facts([3.0, 1e-6, 1e-9]))
    assert "end-to-end map rank 1: singular values 3, 1e-06, 1e-09" in one.text
    assert "(teacher: 3, 1, 0.3)" in one.text
    mid = 10 * RANK_ABSENT * 3.0  # above "absent", below half the teacher's 1
    half = narrate(1.0, T, np.ones(T.size), [], facts([3.0, mid, 1e-9]))
    assert "rank 1–2 (1 being learned)" in half.text
    full = narrate(1.0, T, np.ones(T.size), [], facts([3.0, 1.0, 0.3]))
    assert "rank 3" in full.text


def test_point_facts_of_a_deep_net_keep_no_neuron_roles():
    spec = make_spec(2, [3, 2], "softplus", bias=True)
    th = np.random.default_rng(0).standard_normal(spec.n_params)
    f = point_facts(spec, th, None, gaussian_sample(2), t=1.0, loss=0.1, grad_norm=0.1)
    assert isinstance(f, PointFacts) and f.w is None and f.roles == () and f.singular is None


# ----------------------------------------------------------------------------- branching


def test_branch_point_and_session_truncate_at_the_last_save_not_after_t():
    from core.session import load_session

    s = load_session("sessions/symmetry_saddle")
    seg = s.segments[0]
    t = float(0.5 * (seg.t[100] + seg.t[101]))
    assert branch_point(s, t) == (0, 100)
    assert branch_point(s, float(seg.t[100])) == (0, 100)
    b = branch_session(s, t, source="sessions/symmetry_saddle")
    assert len(b.segments[0]) == 101 and b.segments[0].t[-1] == seg.t[100]
    assert np.array_equal(b.segments[0].theta, seg.theta[:101])
    assert all(sp.t <= seg.t[100] and sp.label != "refined" for sp in b.spectra)
    kept = [sp for sp in s.spectra if sp.t <= seg.t[100] and sp.label != "refined"]
    assert len(b.spectra) == len(kept) > 0
    assert b.refined is None and b.analysis is None and b.report is None
    assert b.summary == {
        "branched_from": {
            "session": "sessions/symmetry_saddle",
            "t": float(seg.t[100]),
            "segment": 0,
            "index": 100,
        }
    }
    with pytest.raises(ValueError, match="from_t"):
        branch_point(s, -1.0)
    with pytest.raises(ValueError, match="from_t"):
        branch_point(s, float("nan"))


def test_segment_phases_are_the_sessions_and_shift_with_the_segment_start():
    from core.narration import segment_phases
    from core.phases import session_phases
    from core.session import load_session

    s = load_session("sessions/symmetry_saddle")
    seg = s.segments[0]
    spectra = [(sp.t, sp.eigenvalues) for sp in s.spectra if sp.label != "refined"]
    mine = segment_phases(seg.t, seg.loss, seg.grad_norm, spectra)
    # session_phases adds the hand-over to refinement (a zero-length "converged" phase at
    # the trajectory's end), which a live segment does not know of.
    handed_over = session_phases(s)[-1]
    assert handed_over.kind == "converged" and handed_over.t_start == seg.t[-1]
    assert [(p.kind, p.t_start, p.t_end, p.index) for p in mine] == [
        (p.kind, p.t_start, p.t_end, p.index) for p in session_phases(s)[:-1]
    ]
    # the same segment started at t0 = 50 (after a surgery): same phases, at t + 50
    shifted = segment_phases(
        seg.t + 50.0, seg.loss, seg.grad_norm, [(t + 50.0, e) for t, e in spectra], t0=50.0
    )
    assert [(p.kind, p.index) for p in shifted] == [(p.kind, p.index) for p in mine]
    assert np.allclose([p.t_start for p in shifted], [p.t_start + 50.0 for p in mine])


def test_a_multi_output_net_gets_no_split_pair_from_its_first_output_alone():
    spec = make_spec(2, [2], "softplus", bias=False, output_dim=2)
    w = [[1.0, 0.5], [1.0, 0.5001]]
    th = np.asarray(flatten(spec, {"w1": w, "w2": [[1.0, 1.0], [1.0, -1.0]]}))
    f = _facts(spec, th)
    assert f.a is None and f.w is not None
    assert "split pair" not in narrate(1.0, T, np.ones(T.size), [], f).text


def test_a_forming_channel_is_named_as_the_inspector_marks_it():
    """The shipped channel_to_infinity session inside its channel phase, before the pair
    passes the channel test: the inspector marks neurons 0, 1 "channel (forming)"
    (core.analysis.mark_forming_channels against the segment's last state), and the
    narration names the same pair with ε and a at t — not "which pair, unsure"; before
    the channel phase nothing is said to be forming."""
    from core.analysis import (
        FORMING_CHANNEL_ROLE,
        analysis_inputs,
        detect_channels,
        inspect_point,
        mark_forming_channels,
    )
    from core.narration import narrate_state
    from core.phases import session_phases
    from core.problem import build_problem
    from core.session import load_session

    s = load_session("sessions/channel_to_infinity")
    phases = session_phases(s)
    channel = next(p for p in phases if p.kind == "channel")
    problem = build_problem(s.config)
    seg = s.segments[-1]
    objective = problem.objective_for(seg.spec)
    x = analysis_inputs(objective)
    t = np.asarray(seg.t)
    j = int(np.searchsorted(t, 100 * channel.t_start))  # two decades into the phase
    assert channel.t_start < t[j] < t[-1] <= channel.t_end
    assert not detect_channels(seg.spec, seg.theta[j], x), "no pair may pass the test at t"
    ahead = detect_channels(seg.spec, seg.theta[-1], x)
    inspection = mark_forming_channels(
        inspect_point(objective, seg.theta[j], problem.teacher, float(t[j])),
        ahead,
        float(t[-1]),
        phases=phases,
    )
    marked = [n.index for n in inspection.neurons if n.role == FORMING_CHANNEL_ROLE]
    assert marked == [0, 1]

    def say(k: int) -> str:
        return narrate_state(
            objective, problem.teacher, seg.t, seg.theta, seg.loss, seg.grad_norm, k,
            history_t=seg.t, history_loss=seg.loss, phases=phases,
        ).text  # fmt: skip

    text = say(j)
    w1 = np.asarray(seg.theta[j][: 2 * seg.spec.input_dim]).reshape(2, -1)  # bias-free
    assert not seg.spec.bias[0]
    eps = 0.5 * float(np.linalg.norm(w1[0] - w1[1]))
    assert f"channel forming: neurons 0, 1 approach each other (ε = {eps:.2g}, shrinking)" in text
    assert "growing" in text.split("output weights")[1]
    assert "unsure" not in text
    before = int(np.searchsorted(t, 0.5 * channel.t_start))  # in the descent before it
    assert "forming" not in say(before)


def test_an_unsure_channel_says_no_pair_passes_once_not_on_both_lines():
    spec = make_spec(2, [2], "softplus", bias=False)
    th = np.asarray(flatten(spec, {"w1": [[1.0, 0.0], [0.0, 1.0]], "w2": [[1.0, 1.0]]}))
    facts = _facts(spec, th, x=gaussian_sample(2))
    unsure = [Phase("channel", 1e2, 1e9, 1e-8, 0, "", sure=False)]
    n = narrate(1e6, T, np.ones(T.size), unsure, facts)
    assert n.lines[0].startswith("possibly a channel to infinity")
    assert n.text.count("no neuron pair passes the channel test") == 1
