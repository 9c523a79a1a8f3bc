"""Narration: one or two lines saying, in words, what the flow is doing at time t.

:func:`narrate` turns what :mod:`core` already knows — the phases of the trajectory so far
(:func:`core.phases.detect_phases`), the Hessian spectrum recorded last at or before t, and
the analysis of the state at t (:func:`point_facts`: :func:`core.analysis.detect_channels`,
:func:`core.analysis.neuron_table`, split pairs, the end-to-end singular values of a linear
net) — into a sentence such as

    plateau since t ≈ 0.01: near a saddle of index 1 (λmin = −0.0100) at L = 1.385e-3
    neurons 0 and 1 are a split pair (‖w̃₀ − w̃₁‖ = 0.2 % of ‖w̃‖, μ = 0.50)

It never guesses.  Every clause restates a test of :mod:`core.phases` or
:mod:`core.analysis` that passed at this point, with the numbers it passed on; where the
evidence is missing or in between (no Hessian recorded yet, a loss that is flat but whose
flow has not escaped, a singular value between "learned" and "absent") the text says so.

Line 1 names the phase at t (or, after the last detected phase — a live run's tail that no
test has classified yet — what the loss and the spectrum show there); line 2 the neurons:
a channel pair with ε, c, A, the GLU error and whether ε shrinks and the output weights
grow (against ``earlier``, a state about half as old), inside a channel phase the pair that
the segment's last state confirms as a channel while this one does not yet (the inspector's
"channel (forming)", :func:`core.analysis.forming_channels`), a split pair, the copy/average
roles, or the rank of a linear net's end-to-end map.  Pure NumPy apart from :func:`point_facts`
(which evaluates activations through :mod:`core.analysis`); deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.analysis import (
    Channel,
    default_eigen_tol,
    detect_channels,
    first_layer,
    forming_channels,
    neuron_table,
)
from core.phases import PLATEAU_FLAT_REL, PLATEAU_MIN_DECADES, Phase

# ---------------------------------------------------------------------------------------
# Thresholds

#: Two first-layer neurons are a *split pair* (Şimşek et al. 2021: a neuron of a narrower
#: net duplicated, output weight shared as μa, (1 − μ)a) when their augmented input weights
#: differ by at most SPLIT_REL of their norm.  The symmetry_saddle preset starts 1e-3 apart
#: and stays below 1 % on its plateau; a genuinely two-neuron solution has its neurons tens
#: of percent apart.  Channel pairs (output weights of opposite sign and diverging) are
#: named as channels, not split pairs.
SPLIT_REL = 0.05
#: Linear nets: a singular value s_i of the end-to-end map W_L⋯W_1 counts as *learned* when
#: s_i ≥ RANK_LEARNED · s_ref and as *absent* when s_i ≤ RANK_ABSENT · s_ref; s_ref is the
#: teacher map's largest singular value (else the student's).  On the saddle_to_saddle
#: plateaus the learned values sit at the teacher's 3, 1, 0.3 (≥ 0.1 · 3) and the others
#: below 1e-3 · 3 until the escape begins; a value in between is *being learned* and the
#: rank is reported as a range.
RANK_LEARNED = 0.1
RANK_ABSENT = 1e-3
#: ... and, with a linear teacher, s_i is learned once it has reached half the teacher's
#: i-th singular value (the flow's sigmoidal learning curve passes half-way at its
#: steepest point, in the middle of each drop).
RANK_LEARNED_OF_TEACHER = 0.5
#: ε shrinking / |a| growing: relative change of at least TREND_REL since ``earlier``
#: (smaller changes are reported as "steady"; solver noise on ε is ~1e-8 relative).
TREND_REL = 1e-3
#: A loss at or below ZERO_LOSS_REL · L(0) counts as zero (the teacher is matched): the
#: refined shipped minima reach 1e-28 from L(0) ~ 0.3; an unrefined flow ends at 1e-8–1e-19.
ZERO_LOSS_REL = 1e-12


# ---------------------------------------------------------------------------------------
# Facts about one state


@dataclass(frozen=True)
class PointFacts:
    """What the analysis of one state says, as the narration needs it.

    Attributes:
        t, loss, grad_norm: time, L(θ) and ‖∇L(θ)‖∞ at the state.
        w: (k, d′) augmented first-layer input weights w̃_i (bias last when present), or
            None for nets without neuron analysis (no hidden layer, > 1 hidden layer).
        a: (k,) output weight a_i = W2[0, i] of each neuron (scalar output), else None.
        roles: per neuron "copy" | "average" | "channel" | "dead" | "" (see
            :func:`core.analysis.neuron_table`); empty without a teacher network.
        nearest: per neuron the nearest teacher neuron (None without one).
        cosines: per neuron that cosine (None without one).
        channels: :func:`core.analysis.detect_channels` at the state.
        forming: the pairs core marks "channel (forming)" at the state (the inspector's
            :func:`core.analysis.mark_forming_channels`): confirmed at a later state of the
            same channel phase (:func:`core.analysis.forming_channels`), not yet here.
        singular: linear nets: singular values (descending) of the end-to-end map, else None.
        teacher_singular: the same for a linear teacher network, else None.
    """

    t: float
    loss: float
    grad_norm: float
    w: np.ndarray | None = None
    a: np.ndarray | None = None
    roles: tuple[str, ...] = ()
    nearest: tuple[int | None, ...] = ()
    cosines: tuple[float | None, ...] = ()
    channels: tuple[Channel, ...] = ()
    forming: tuple[Channel, ...] = ()
    singular: tuple[float, ...] | None = None
    teacher_singular: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Refined:
    """A refinement of the state at ``t`` (e.g. :class:`core.refine.RefineResult` + class)."""

    t: float
    loss: float
    grad_inf_norm: float
    converged: bool
    classification: str
    index: int | None = None


@dataclass(frozen=True)
class Narration:
    """The narration at ``t``: ``kind`` is the phase kind there ("plateau", "descent",
    "channel", "converged"), or "flat" / "falling" / "start" for an unclassified tail."""

    t: float
    kind: str
    lines: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def point_facts(
    spec: Any,
    theta,
    teacher: Any = None,
    x=None,
    *,
    t: float,
    loss: float,
    grad_norm: float,
) -> PointFacts:
    """Analyse θ (P,) of ``spec`` for :func:`narrate`.

    ``x`` (N, d): inputs for the channel and activity checks (the report's:
    :func:`core.analysis.analysis_inputs`); with ``x=None`` no channel check is made.
    ``teacher``: a :class:`core.teachers.Teacher` (its network, when it has one, gives the
    copy/average roles and, for a linear teacher, the reference singular values).
    """
    from core.views import _linear, singular_values  # linear-net test and M = W_L⋯W_1

    th = np.asarray(theta, dtype=np.float64)
    base = {"t": float(t), "loss": float(loss), "grad_norm": float(grad_norm)}
    singular = teacher_singular = None
    if _linear(spec):
        singular = tuple(float(s) for s in singular_values(spec, th)[0])
        tspec = getattr(teacher, "spec", None)
        if tspec is not None and getattr(teacher, "theta", None) is not None and _linear(tspec):
            teacher_singular = tuple(
                float(s) for s in singular_values(tspec, np.asarray(teacher.theta))[0]
            )
    if len(spec.widths) != 1 or not np.all(np.isfinite(th)):
        return PointFacts(**base, singular=singular, teacher_singular=teacher_singular)
    w1, b1, w2 = first_layer(spec, th)
    w = np.concatenate([w1, b1[:, None]], axis=1) if b1 is not None else w1
    channels = tuple(detect_channels(spec, th, x)) if x is not None else ()
    table = neuron_table(spec, th, teacher, channels=channels, x=x)
    return PointFacts(
        **base,
        w=w,
        # scalar output only: a split pair's μ and a channel's ±a are defined for it
        a=np.asarray(w2[0], dtype=np.float64) if spec.output_dim == 1 else None,
        roles=tuple(n.role for n in table),
        nearest=tuple(n.nearest_teacher for n in table),
        cosines=tuple(n.cosine for n in table),
        channels=channels,
        singular=singular,
        teacher_singular=teacher_singular,
    )


# ---------------------------------------------------------------------------------------
# Narration


def narrate(
    t: float,
    history_t,
    history_loss,
    phases: Sequence[Phase],
    facts: PointFacts | None = None,
    *,
    eigenvalues=None,
    earlier: PointFacts | None = None,
    refined: Refined | None = None,
    loss0: float | None = None,
) -> Narration:
    """One or two lines on the flow at time ``t``.

    Args:
        t: the time narrated (a live run's latest, a replay's cursor).
        history_t, history_loss: (m,) the trajectory so far (times ≤ t are used), for the
            tail that no phase covers yet.
        phases: phases of the trajectory (of the run so far, or of the whole session).
        facts: :func:`point_facts` at t (None: the neurons are not described).
        eigenvalues: (P,) ascending, the Hessian spectrum recorded last at or before t in
            the same segment (None: the index is reported as unknown).
        earlier: :func:`point_facts` at an earlier state (about t/2), for the trends of a
            channel (ε shrinking, output weights growing).
        refined: a refinement of the state at t, when there is one.
        loss0: L(θ(0)), the scale for "zero loss" (default: the first loss of the history).
    """
    ht = np.asarray(history_t, dtype=np.float64).reshape(-1)
    hl = np.asarray(history_loss, dtype=np.float64).reshape(-1)
    keep = np.isfinite(ht) & np.isfinite(hl) & (ht <= t)
    ht, hl = ht[keep], hl[keep]
    if loss0 is None:
        loss0 = float(hl[0]) if hl.size else float("nan")
    spectrum = _spectrum_facts(eigenvalues)
    phase = _phase_at(phases, t)
    loss = facts.loss if facts is not None else (float(hl[-1]) if hl.size else float("nan"))

    if refined is not None and math.isclose(refined.t, t, rel_tol=1e-12, abs_tol=1e-300):
        if facts is not None and facts.channels and refined.classification != "channel":
            # as core.analysis.classify: a channel pair takes precedence over the spectrum
            refined = replace(refined, classification="channel")
        first = _refined_line(refined, loss0)
        if refined.classification == "channel":
            kind = "channel"
        else:
            kind = "converged" if refined.converged else (phase.kind if phase else "flat")
    elif phase is None:
        kind, first = _tail_line(t, ht, hl, spectrum, facts)
    else:
        kind = phase.kind
        prev = _previous(phases, phase)
        first = _phase_line(phase, prev, t, loss, spectrum, facts, loss0)
    lines = [first]
    # an unsure channel's first line already says that no pair passes the channel test
    said = phase is not None and phase.kind == "channel" and not phase.sure and kind == "channel"
    second = _neuron_line("" if said else kind, facts, earlier, spectrum)
    if second:
        lines.append(second)
    return Narration(float(t), kind, tuple(lines))


def narrate_state(
    objective: Any,
    teacher: Any,
    segment_t,
    segment_theta,
    segment_loss,
    segment_grad,
    j: int,
    *,
    history_t,
    history_loss,
    phases: Sequence[Phase],
    eigenvalues=None,
    refined: Refined | None = None,
    loss0: float | None = None,
) -> Narration:
    """:func:`narrate` at state ``j`` of a segment (t (m,), θ (m, P), L (m,), ‖∇L‖∞ (m,)).

    Analyses θ_j with the report's inputs (:func:`core.analysis.analysis_inputs`); inside a
    channel phase also the segment's last state, whose channels not yet confirmed at t_j are
    forming there (as the inspector marks them: :func:`core.analysis.forming_channels`);
    when it finds a channel or a forming one, also the latest state at or before t_j / 2
    (for the trends).
    """
    from core.analysis import analysis_inputs

    st = np.asarray(segment_t, dtype=np.float64)
    th = np.asarray(segment_theta, dtype=np.float64)
    x = analysis_inputs(objective)
    spec = objective.spec

    def facts_at(r: int) -> PointFacts:
        return point_facts(
            spec,
            th[r],
            teacher,
            x,
            t=float(st[r]),
            loss=float(np.asarray(segment_loss)[r]),
            grad_norm=float(np.asarray(segment_grad)[r]),
        )

    j = int(j) % st.shape[0]
    facts = facts_at(j)
    last = st.shape[0] - 1
    in_channel = any(p.kind == "channel" and p.t_start <= st[j] <= p.t_end for p in phases)
    if in_channel and j < last and facts.w is not None and np.all(np.isfinite(th[last])):
        ahead = detect_channels(spec, th[last], x)
        forming = forming_channels(st[j], facts.channels, ahead, st[last], phases=phases)
        # as mark_forming_channels: a pair is marked where a neuron has no role of its own
        forming = [ch for ch in forming if any(not facts.roles[n] for n in ch.neurons)]
        facts = replace(facts, forming=tuple(forming))
    earlier = None
    if facts.channels or facts.forming:
        r = int(np.searchsorted(st, 0.5 * st[j], side="right")) - 1
        if 0 <= r < j:
            earlier = facts_at(r)
    return narrate(
        float(st[j]),
        history_t,
        history_loss,
        phases,
        facts,
        eigenvalues=eigenvalues,
        earlier=earlier,
        refined=refined,
        loss0=loss0,
    )


def segment_phases(
    t, loss, grad_norm, spectra=(), *, t0: float = 0.0, grad_tol: float | None = None
) -> list[Phase]:
    """Phases of one segment that started at ``t0`` (after surgery, or 0), at times t.

    As :func:`core.phases.session_phases` does per segment: the flow is autonomous, so the
    segment is analysed on log₁₀(t − t₀); ``spectra`` are (t_i, eigenvalues_i) of this
    segment only (a spectrum of the network before surgery says nothing about this one).
    """
    from core.phases import detect_phases

    tt = np.asarray(t, dtype=np.float64)
    since = np.maximum(tt - t0, 0.0)
    shifted = [(float(ts) - t0, ev) for ts, ev in spectra]
    phases = detect_phases(since, loss, grad_norm, shifted, grad_tol=grad_tol)
    if t0 <= 0 or not tt.size:
        return phases

    def back(v: float) -> float:
        return float(tt[min(int(np.searchsorted(since, v)), tt.size - 1)])

    return [replace(p, t_start=back(p.t_start), t_end=back(p.t_end)) for p in phases]


# ---------------------------------------------------------------------------------------
# Pieces of the text


@dataclass(frozen=True)
class _SpectrumFacts:
    index: int
    n_zero: int
    lam_min: float
    lam_max: float


def _spectrum_facts(eigenvalues) -> _SpectrumFacts | None:
    if eigenvalues is None:
        return None
    ev = np.sort(np.asarray(getattr(eigenvalues, "eigenvalues", eigenvalues), np.float64))
    if not ev.size or not np.all(np.isfinite(ev)):
        return None
    tol = default_eigen_tol(float(np.max(np.abs(ev))), ev.size)
    return _SpectrumFacts(
        int(np.sum(ev < -tol)), int(np.sum(np.abs(ev) <= tol)), float(ev[0]), float(ev[-1])
    )


def _phase_at(phases: Sequence[Phase], t: float) -> Phase | None:
    """The phase holding t: the last one with t_start ≤ t ≤ t_end (a shared boundary
    belongs to the phase that starts there); None after the last phase's end."""
    found = None
    for p in phases:
        if p.t_start <= t <= p.t_end:
            found = p
    return found


def _previous(phases: Sequence[Phase], phase: Phase) -> Phase | None:
    prev = None
    for p in phases:
        if p is phase:
            return prev
        prev = p
    return None


def _index_words(spectrum: _SpectrumFacts | None, fallback: int | None) -> str:
    if spectrum is not None:
        if spectrum.index >= 1:
            return f"index {spectrum.index} (λmin = {spectrum.lam_min:.3g})"
        return f"index 0 (λmin = {spectrum.lam_min:.2g})"
    if fallback is not None:
        return f"index {fallback} (from a spectrum in this phase)"
    return "index unknown (no Hessian recorded here yet)"


def _phase_line(phase, prev, t, loss, spectrum, facts, loss0) -> str:
    since = f"since t ≈ {phase.t_start:.3g}"
    idx = spectrum.index if spectrum is not None else phase.index
    if phase.kind == "plateau":
        if idx is None:
            where = "near a critical point of unknown index (no Hessian recorded here)"
        elif idx >= 1:
            where = f"near a saddle of {_index_words(spectrum, phase.index)}"
        else:
            where = f"Hessian {_index_words(spectrum, phase.index)}: no descent direction seen"
        return f"plateau {since}: {where} at L = {phase.loss:.4g}"
    if phase.kind == "descent":
        left = f" from the plateau at L ≈ {prev.loss:.3g}" if prev is not None else ""
        here = f", Hessian index {spectrum.index}" if spectrum is not None else ""
        return f"descent since t ≈ {phase.t_start:.3g}{left}: L = {loss:.3g}{here}"
    if phase.kind == "channel":
        if not phase.sure:  # only the spectra show it (core.phases): say so
            return (
                f"possibly a channel to infinity {since}: L = {loss:.3g}, falling slowly; "
                "λmax grows, but no neuron pair passes the channel test"
            )
        return f"channel to infinity {since}: L = {loss:.3g}, falling ever more slowly"
    # converged
    g = facts.grad_norm if facts is not None else float("nan")
    if idx is None:
        what = "a critical point, index unknown (no Hessian here yet)"
    elif idx == 0:
        what = "a minimum (index 0"
        if spectrum is not None and spectrum.n_zero:
            what += f", {spectrum.n_zero} flat directions"
        what += ")"
    else:
        what = f"a saddle of index {idx}"
    zero = " (zero loss)" if _is_zero(phase.loss, loss0) else ""
    gtxt = f", ‖∇L‖∞ = {g:.1e}" if math.isfinite(g) else ""
    return f"converged {since}: {what}, L = {loss:.3g}{zero}{gtxt}"


def _refined_line(refined: Refined, loss0) -> str:
    idx = "" if refined.index is None else f", index {refined.index}"
    if not refined.converged:
        return (
            f"refinement did not converge ({refined.classification}{idx}): "
            f"L = {refined.loss:.3g}, ‖∇L‖∞ = {refined.grad_inf_norm:.1e}"
        )
    what = {"minimum": "exact minimum", "saddle": "exact saddle"}.get(
        refined.classification, refined.classification
    )
    zero = "zero loss, " if _is_zero(refined.loss, loss0) else ""
    return (
        f"refined: {what}{idx} at L = {refined.loss:.3g} "
        f"({zero}‖∇L‖∞ = {refined.grad_inf_norm:.1e})"
    )


def _tail_line(t, ht, hl, spectrum, facts) -> tuple[str, str]:
    """No phase holds t yet (a live run's tail, or the very start)."""
    if ht.size < 2 or t <= 0:
        return "start", f"t = {t:.3g}: too few states yet (since the start or a surgery)"
    loss = float(hl[-1])
    start = _flat_since(ht, hl)
    if start is not None:
        if spectrum is None:
            tail = "index unknown (no Hessian recorded yet): plateau or convergence, unclear"
        elif spectrum.index >= 1:
            words = _index_words(spectrum, None)
            tail = f"{words}: near a saddle, a plateau so far"
        else:
            tail = f"Hessian {_index_words(spectrum, None)}: converging, or a slow stretch"
        return "flat", f"loss flat since t ≈ {start:.3g} at L = {loss:.4g}; {tail}"
    here = f"; Hessian {_index_words(spectrum, None)}" if spectrum is not None else ""
    return "falling", f"t = {t:.3g}: L = {loss:.3g} and falling — no phase detected yet{here}"


def _flat_since(ht: np.ndarray, hl: np.ndarray) -> float | None:
    """Start of the flat tail (loss within PLATEAU_FLAT_REL) if it spans PLATEAU_MIN_DECADES."""
    pos = ht > 0
    tt, ll = ht[pos], hl[pos]
    if tt.size < 2:
        return None
    hi = np.maximum.accumulate(ll[::-1])[::-1]
    lo = np.minimum.accumulate(ll[::-1])[::-1]
    ok = hi - lo <= PLATEAU_FLAT_REL * np.maximum(np.abs(lo), np.abs(hi))
    r = int(np.argmax(ok))
    if math.log10(tt[-1]) - math.log10(tt[r]) < PLATEAU_MIN_DECADES:
        return None
    return float(tt[r])


def _is_zero(loss: float, loss0: float | None) -> bool:
    if loss0 is None or not (math.isfinite(loss0) and loss0 > 0):
        return False
    return 0 <= loss <= ZERO_LOSS_REL * loss0


def _neuron_line(kind, facts, earlier, spectrum) -> str:
    if facts is None:
        return ""
    if facts.channels:
        return _channel_words(facts.channels[0], facts, earlier)
    if facts.forming and facts.a is not None:
        return _forming_words(facts.forming[0], facts, earlier)
    if kind == "channel" and facts.w is not None:
        return "no neuron pair passes the channel test here yet: which pair, unsure"
    if facts.singular is not None:
        return _rank_words(facts)
    if facts.w is None:
        return ""
    pair = _split_pair(facts) if facts.a is not None else None
    if pair is not None:
        i, j, rel, mu = pair
        return (
            f"neurons {i} and {j} are a split pair (‖w̃{_sub(i)} − w̃{_sub(j)}‖ = "
            f"{100 * rel:.2g} % of ‖w̃‖, μ = {mu:.2f})"
        )
    roles = _role_words(facts)
    if roles and kind in MOVING_KINDS:
        return "so far: " + roles  # roles settle where the flow does
    return roles


#: Kinds of narration at which the flow is still moving fast: neuron roles there are the
#: analysis of a passing state, said with "so far".
MOVING_KINDS = frozenset({"descent", "falling", "start"})


def _channel_words(ch: Channel, facts: PointFacts, earlier: PointFacts | None) -> str:
    i, j = ch.neurons
    a = facts.a
    eps_trend = a_trend = ""
    if earlier is not None and earlier.w is not None and earlier.a is not None:  # noqa: SIM102
        if earlier.w.shape == facts.w.shape:
            eps0 = 0.5 * float(np.linalg.norm(earlier.w[i] - earlier.w[j]))
            eps_trend = _trend(ch.epsilon, eps0, "shrinking", "widening")
            amax0 = max(abs(earlier.a[i]), abs(earlier.a[j]))
            a_trend = _trend(max(abs(a[i]), abs(a[j])), amax0, "shrinking", "growing")
    eps_txt = f"ε = {ch.epsilon:.2g}" + (f", {eps_trend}" if eps_trend else "")
    big = max(abs(a[i]), abs(a[j]))
    pm = f"±{big:.3g}" if abs(a[i] + a[j]) <= 1e-2 * big else f"{a[i]:+.3g}/{a[j]:+.3g}"
    a_txt = f"a = {pm}" + (f" {a_trend}" if a_trend else "")
    return (
        f"neurons {i}, {j} merge ({eps_txt}), {a_txt}: a gated linear unit "
        f"(GLU error {ch.glu_error:.1g})"
    )


def _forming_words(ch: Channel, facts: PointFacts, earlier: PointFacts | None) -> str:
    """A pair that a later state of this channel phase confirms (``ch`` is that state's
    channel), said with the numbers at this state: ε = ‖w̃_i − w̃_j‖/2 and a_i, a_j."""
    i, j = ch.neurons
    w, a = facts.w, facts.a
    eps = 0.5 * float(np.linalg.norm(w[i] - w[j]))
    eps_trend = a_trend = ""
    if earlier is not None and earlier.w is not None and earlier.a is not None:  # noqa: SIM102
        if earlier.w.shape == w.shape:
            eps0 = 0.5 * float(np.linalg.norm(earlier.w[i] - earlier.w[j]))
            eps_trend = _trend(eps, eps0, "shrinking", "widening")
            amax0 = max(abs(earlier.a[i]), abs(earlier.a[j]))
            a_trend = _trend(max(abs(a[i]), abs(a[j])), amax0, "shrinking", "growing")
    moving = " approach each other" if eps_trend == "shrinking" else ""
    eps_txt = f"ε = {eps:.2g}" + (f", {eps_trend}" if eps_trend else "")
    big = max(abs(a[i]), abs(a[j]))
    pm = f"±{big:.3g}" if abs(a[i] + a[j]) <= 1e-2 * big else f"{a[i]:+.3g}/{a[j]:+.3g}"
    return (
        f"channel forming: neurons {i}, {j}{moving} ({eps_txt}), output weights {pm}"
        + (f" {a_trend}" if a_trend else "")
        + "; it passes the channel test later"
    )


def _trend(now: float, before: float, down: str, up: str) -> str:
    if not (math.isfinite(now) and math.isfinite(before) and before > 0):
        return ""
    rel = (now - before) / before
    if abs(rel) < TREND_REL:
        return "steady"
    return down if rel < 0 else up


def _split_pair(facts: PointFacts) -> tuple[int, int, float, float] | None:
    """The closest pair of neurons within SPLIT_REL with output weights of one sign."""
    w, a = facts.w, facts.a
    best = None
    k = w.shape[0]
    for i in range(k):
        for j in range(i + 1, k):
            scale = max(float(np.linalg.norm(w[i])), float(np.linalg.norm(w[j])))
            if scale == 0 or not (a[i] * a[j] > 0):
                continue
            rel = float(np.linalg.norm(w[i] - w[j])) / scale
            if rel <= SPLIT_REL and (best is None or rel < best[2]):
                best = (i, j, rel, float(a[i] / (a[i] + a[j])))
    return best


def _role_words(facts: PointFacts) -> str:
    roles = facts.roles
    if not roles or all(n is None for n in facts.nearest):
        return ""
    k = len(roles)
    copies = [i for i, r in enumerate(roles) if r == "copy"]
    if len(copies) == k:
        return f"every neuron copies a teacher neuron (cos ≥ {min(_abs_cos(facts, copies)):.3f})"
    parts = []
    if len(copies) == 1:
        i = copies[0]
        c = _abs_cos(facts, copies)[0]
        parts.append(f"neuron {i} copies teacher neuron {facts.nearest[i]} (cos {c:.3f})")
    elif copies:
        targets = ", ".join(str(facts.nearest[i]) for i in copies)
        parts.append(f"neurons {_list(copies)} copy teacher neurons {targets}")
    avg = [i for i, r in enumerate(roles) if r == "average"]
    if avg:
        word = "averages" if len(avg) == 1 else "average"
        parts.append(f"neuron{'s' if len(avg) > 1 else ''} {_list(avg)} {word} teacher neurons")
    dead = [i for i, r in enumerate(roles) if r == "dead"]
    if dead:
        parts.append(f"neuron{'s' if len(dead) > 1 else ''} {_list(dead)} dead")
    none = [i for i, r in enumerate(roles) if r == ""]
    if none:
        best = max(_abs_cos(facts, none))
        parts.append(
            f"neuron{'s' if len(none) > 1 else ''} {_list(none)}: no teacher match yet "
            f"(best cos {best:.2f})"
        )
    return "; ".join(parts)


def _abs_cos(facts: PointFacts, idx: list[int]) -> list[float]:
    return [abs(facts.cosines[i]) if facts.cosines[i] is not None else 0.0 for i in idx]


def _rank_words(facts: PointFacts) -> str:
    """Rank of the end-to-end map: learned / being learned / absent singular values.

    With a linear teacher, s_i is compared with the teacher's i-th value t_i (learned:
    s_i ≥ RANK_LEARNED_OF_TEACHER · t_i) and with RANK_ABSENT · max t (absent); without one,
    with RANK_LEARNED and RANK_ABSENT times the student's largest value.
    """
    s = np.asarray(facts.singular, dtype=np.float64)
    ref = np.asarray(facts.teacher_singular or (), dtype=np.float64)
    s_ref = float(np.max(ref)) if ref.size else float(np.max(s)) if s.size else 0.0
    if not (s_ref > 0):
        return "end-to-end map is zero: rank 0"
    if ref.size:
        goal = np.zeros_like(s)
        n = min(s.size, ref.size)
        goal[:n] = RANK_LEARNED_OF_TEACHER * ref[:n]
        goal[goal == 0] = np.inf  # beyond the teacher's rank nothing is "learned"
    else:
        goal = np.full_like(s, RANK_LEARNED * s_ref)
    learned = int(np.sum(s >= goal))
    between = int(np.sum((s > RANK_ABSENT * s_ref) & (s < goal)))
    vals = ", ".join(f"{v:.3g}" for v in s)
    if between:
        rank = f"rank {learned}–{learned + between} ({between} being learned)"
    else:
        rank = f"rank {learned}"
    target = f" (teacher: {', '.join(f'{v:.3g}' for v in ref)})" if ref.size else ""
    return f"end-to-end map {rank}: singular values {vals}{target}"


def _list(idx: list[int]) -> str:
    return ", ".join(str(i) for i in idx)


_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _sub(i: int) -> str:
    return str(i).translate(_SUBSCRIPTS)


__all__ = [
    "RANK_ABSENT",
    "RANK_LEARNED",
    "RANK_LEARNED_OF_TEACHER",
    "SPLIT_REL",
    "TREND_REL",
    "ZERO_LOSS_REL",
    "Narration",
    "PointFacts",
    "Refined",
    "narrate",
    "narrate_state",
    "point_facts",
    "segment_phases",
]
