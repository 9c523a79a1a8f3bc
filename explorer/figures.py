"""Publication figures of a saved session with matplotlib (``explorer plot``).

Pure in the sense of the rest of the project: a :class:`core.session.Session` goes in, a
:class:`matplotlib.figure.Figure` comes out; nothing global is touched (no pyplot, no
backend switch: :class:`~matplotlib.figure.Figure` renders through Agg/SVG/PDF canvases on
``savefig``).  :func:`write_figure` adds the file handling: format from the extension,
no overwrite unless asked, atomic write (temporary sibling, then rename).

The overview figure has three panels sharing a time axis:

1. loss L(θ(t)) and ‖∇L(θ(t))‖∞ against t, log–log (a loss with values < 0: L − min L,
   :func:`loss_offset`);
2. the Hessian spectrum at the recorded snapshot times: every eigenvalue λ_k(t) faint,
   λmin and λmax bold, on a *symmetric* log axis (``symlog``: sign·log|λ| outside
   ±λ_lin, linear inside) so negative eigenvalues — a saddle's escape directions — show;
3. the weights: for one hidden layer, |a_i| = ‖W2[:, i]‖₂ per neuron (the output weight
   magnitude, as in the app's weights plot) and min_{i<j} ‖w_i − w_j‖₂ (first-layer input
   weights, bias appended; neurons merging or splitting show as this distance → 0);
   for deeper nets the layer norms ‖W_l‖_F.

The time axis is logarithmic; a trajectory starting at t = 0 gets a ``symlog`` axis whose
linear stretch [0, t₁] (t₁ = the first positive time) takes one decade, so t = 0
is drawn.  Phases (:func:`core.phases.session_phases`, when that module is present) are
shaded spans, events (refine, surgery, pause/resume, interrupts) vertical lines; both are
listed in one legend below the panels; with phases, a bar above the panels names each one
(a plateau with its loss level and Hessian index).  Series differ by line style and marker
as well as colour, so the figure reads in greyscale.  For deep linear nets the weights panel
shows the singular values of the end-to-end map W_L⋯W_1 instead (rank steps).

The other views draw :mod:`core.views` at one saved state (``t``: the nearest; default the
last): ``function`` (student vs teacher along a line through input space; for d = 2 also
f − g on a grid, its sign carried by solid/dashed contours; for a softmax student the
class probabilities p = softmax(f) against the teacher's class along the line and, for
d = 2, the class regions: the student's class as tinted areas, the teacher's boundaries
as lines, the cells where the two disagree hatched, the training points by label with
a cross on each one misclassified), ``weights`` (d = 2: input-weight
vectors scaled by ‖a_i‖, their paths so far, and the teacher's), ``singular`` (the whole
run) and ``slice`` (L(θ + s v) along the eigenvectors of λmin and λmax beside the quadratic
model L(θ) + ½λs²).  A view that does not apply says why in one line.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

#: extension → matplotlib format
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}

#: Okabe–Ito colours (colour-blind safe); never the only distinction between series.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)))
MARKERS = ("o", "s", "^", "v", "D", "x", "+", "*")

#: Eigenvalues with |λ| below SYMLOG_REL · max|λ| are drawn on the linear stretch of the
#: spectrum axis: 1e-6 keeps a saddle's λmin (≈1e-2 of λmax in the demos) on the log part
#: while numerically-zero modes (|λ| ~ 1e-10 · λmax) sit at 0 instead of spreading decades.
SYMLOG_REL = 1e-6
#: At most this many labelled ticks on a log or symlog axis (decades are thinned).
MAX_TICKS = 8

_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.4,
    "lines.markersize": 4,
    "svg.hashsalt": "landscape-explorer",  # reproducible SVG ids
    "svg.fonttype": "path",
    "pdf.fonttype": 42,
}

#: phase kind → (face colour, hatch) in the phase bar: plateaus grey, descents white,
#: channels hatched, convergence dotted (greyscale-safe)
_PHASE_STYLE = {
    "plateau": ("0.78", None),
    "descent": ("white", None),
    "channel": ("white", "///"),
    "converged": ("white", "..."),
}
#: label a phase in the bar when its text fits: ≈ this fraction of the bar width per character
_BAR_CHAR_FRAC = 0.0105
#: event kind → line style
_EVENT_STYLE = {
    "refine": (0, (1, 1.5)),
    "surgery": "-.",
    "pause": (0, (4, 2)),
    "resume": (0, (4, 2, 1, 2)),
    "interrupted": (0, (6, 2)),
}


class FigureError(Exception):
    """A figure that cannot be written (bad extension, existing file, …); one line."""


# ----------------------------------------------------------------------------- public API


def figure_format(path: str | Path) -> str:
    """matplotlib format for ``path`` from its extension; :class:`FigureError` otherwise."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise FigureError(
            f"{path}: unsupported figure format {ext or '(no extension)'!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    return FORMATS[ext]


def check_target(path: str | Path, *, force: bool = False) -> str:
    """Validate an output path before any work; return its format.

    Refuses an unknown extension, a missing parent folder, a folder in the way, and an
    existing file unless ``force``.
    """
    p = Path(path)
    fmt = figure_format(p)
    if not p.parent.is_dir():
        raise FigureError(f"{p}: folder {p.parent} does not exist")
    if p.is_dir():
        raise FigureError(f"{p}: is a folder")
    if p.exists() and not force:
        raise FigureError(f"{p}: exists; refusing to overwrite (use --force)")
    return fmt


def available_views() -> tuple[str, ...]:
    """ "overview" and the views of :mod:`core.views` (when that module is present)."""
    try:
        from core.views import VIEWS as extra
    except ImportError:
        extra = ()
    return ("overview", *extra)


def session_figure(session: Any, view: str = "overview", *, t: float | None = None) -> Figure:
    """The figure of ``view`` for a loaded session (see the module docstring).

    ``t`` picks the saved state nearest that time for the function, weights and slice
    views (default: the final state); the overview and singular views show the whole run.
    A view that does not apply to the session's network raises :class:`FigureError`
    saying why.
    """
    views = available_views()
    if view not in views:
        raise FigureError(f"--view: unknown view {view!r}; choose from {', '.join(views)}")
    if t is not None and not math.isfinite(t):
        raise FigureError(f"--t: must be a finite number, got {t!r}")
    with rc_context(_RC):
        if view == "overview":
            return overview_figure(session, t=t)
        return view_figure(session, view, t=t)


def write_figure(
    session: Any,
    path: str | Path,
    view: str = "overview",
    *,
    force: bool = False,
    t: float | None = None,
) -> Path:
    """Render ``view`` of ``session`` and write it to ``path`` atomically; return the path.

    The format comes from the extension (.png, .svg, .pdf).  The whole file is rendered
    first, then written the way every output file is (:mod:`core.files`): without
    ``force`` created through a temporary sibling and a hard link, which fails if ``path``
    appeared meanwhile (nothing is clobbered); with ``force`` replaced atomically.
    """
    from core.files import write_bytes_atomic, write_new_files

    p = Path(path)
    fmt = check_target(p, force=force)
    with rc_context(_RC):
        fig = session_figure(session, view, t=t)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=200, metadata=_metadata(fmt))
    try:
        if force:
            write_bytes_atomic(p, buf.getvalue())
        else:
            write_new_files({p: buf.getvalue()})
    except FileExistsError:
        raise FigureError(f"{p}: exists; refusing to overwrite (use --force)") from None
    except OSError as e:
        raise FigureError(f"{p}: cannot write ({e.strerror or e})") from None
    return p


def _metadata(fmt: str) -> dict:
    """Fixed metadata (no creation date) so the same session gives the same file."""
    if fmt == "png":
        return {"Software": "landscape-explorer (matplotlib)"}
    if fmt == "svg":
        return {"Date": None, "Creator": "landscape-explorer (matplotlib)"}
    return {"CreationDate": None, "Creator": "landscape-explorer (matplotlib)"}


# ----------------------------------------------------------------------------- data


def session_phases(session: Any) -> list:
    """Phases from :mod:`core.phases` when it is installed, else an empty list."""
    try:
        from core.phases import session_phases as detect
    except (ImportError, AttributeError):
        return []
    return list(detect(session))


def weight_series(spec: Any, theta: np.ndarray) -> tuple[list[str], np.ndarray, str]:
    """Weight summaries of the states θ (m, P): (labels, values (m, n), y label).

    One hidden layer: |a_i| = ‖W2[:, i]‖₂ for each neuron i, then min_{i<j} ‖w_i − w_j‖₂
    over the first-layer rows w_i = (W1[i], b1[i]) (NaN for one neuron).  Otherwise
    ‖W_l‖_F for each layer l.
    """
    from core.analysis import closest_pair_distance, neuron_weights
    from core.networks import unflatten

    theta = np.asarray(theta, np.float64)
    if len(spec.widths) == 1:
        k = spec.widths[0]
        rows = []
        for th in theta:
            w, a = neuron_weights(spec, th)
            rows.append([*a, closest_pair_distance(w)])
        labels = [f"|a{i}|" for i in range(k)] + ["min‖wᵢ−wⱼ‖"]
        return labels, np.asarray(rows).reshape(theta.shape[0], k + 1), "weight"
    n_layers = len(spec.widths) + 1
    rows = []
    for th in theta:
        p = unflatten(spec, th)
        rows.append([np.linalg.norm(np.asarray(p[f"w{l}"])) for l in range(1, n_layers + 1)])
    labels = [f"‖W{l}‖_F" for l in range(1, n_layers + 1)]
    return labels, np.asarray(rows).reshape(theta.shape[0], n_layers), "layer norm"


# ----------------------------------------------------------------------------- axes helpers


def _positive(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, np.float64)
    return np.where((y > 0) & np.isfinite(y), y, np.nan)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _decade_label(k: int) -> str:
    """ "10⁻³": Unicode superscripts (plain text renders several times faster than mathtext)."""
    return "10" + str(k).translate(_SUPERSCRIPT)


def _decade_formatter(x: float, _: Any = None) -> str:
    """Label exact powers of ten (others, e.g. 2·10³ on a short log axis, stay unlabelled)."""
    if x <= 0 or not math.isfinite(x):
        return ""
    k = round(math.log10(x))
    return _decade_label(k) if math.isclose(x, 10.0**k, rel_tol=1e-9) else ""


def _set_log_y(ax: Any) -> None:
    """Log y axis with 10ᵏ labels."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_decade_formatter))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _thinned_decades(lo: float, hi: float, max_ticks: int = MAX_TICKS) -> list[int]:
    """Exponents k with lo ≤ 10^k ≤ hi, every n-th so that at most ``max_ticks`` remain.

    Counted down from the largest, so the decade nearest the extreme value is labelled.
    """
    k0, k1 = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
    if k1 < k0:
        return [round(math.log10(lo))]
    step = max(1, math.ceil((k1 - k0 + 1) / max_ticks))
    return sorted(range(k1, k0 - 1, -step))


def _set_time_axis(ax: Any, t_min_pos: float, t_max: float, has_zero: bool) -> None:
    """Log time axis; symlog with linear stretch [0, t_min_pos] when t = 0 is drawn."""
    if has_zero:
        ax.set_xscale("symlog", linthresh=t_min_pos, linscale=1.0)
        ax.set_xlim(0.0, t_max * 1.5)
        ks = _thinned_decades(t_min_pos, t_max * 1.5, MAX_TICKS - 1)
        ticks = [0.0] + [10.0**k for k in ks]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(
            FuncFormatter(lambda x, _: "0" if x == 0 else _decade_label(round(math.log10(x))))
        )
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.set_xscale("log")
        ax.set_xlim(t_min_pos / 1.5, t_max * 1.5)


def _set_symlog_y(ax: Any, lo: float, hi: float, linthresh: float) -> None:
    """Symmetric log y axis over [lo, hi] with ticks 0, ±10^k (thinned)."""
    ax.set_yscale("symlog", linthresh=linthresh, linscale=0.5)
    pad_lo = lo * 1.6 if lo < 0 else -linthresh
    pad_hi = hi * 1.6 if hi > 0 else linthresh
    ax.set_ylim(pad_lo, pad_hi)
    ticks = [0.0]
    budget = MAX_TICKS - 1
    first = 10 * linthresh  # ±linthresh itself would crowd the 0 label
    neg = _thinned_decades(first, -pad_lo, max(2, budget // 2)) if -pad_lo > first else []
    pos = _thinned_decades(first, pad_hi, max(2, budget - len(neg))) if pad_hi > first else []
    ticks += [-(10.0**k) for k in neg] + [10.0**k for k in pos]
    ax.yaxis.set_major_locator(FixedLocator(sorted(ticks)))

    def fmt(y: float, _: Any) -> str:
        if y == 0:
            return "0"
        k = round(math.log10(abs(y)))
        return ("−" if y < 0 else "") + _decade_label(k)

    ax.yaxis.set_major_formatter(FuncFormatter(fmt))
    ax.yaxis.set_minor_locator(NullLocator())


def _style(i: int) -> dict:
    """Line style i: colour, dash pattern and marker all change with i."""
    return {
        "color": COLOURS[i % len(COLOURS)],
        "linestyle": LINESTYLES[i % len(LINESTYLES)],
        "marker": MARKERS[i % len(MARKERS)],
        "markevery": 0.1,
        "markersize": 4,
        "markerfacecolor": "none",
    }


def _legend_right(ax: Any) -> None:
    """Legend outside the axes, on the right: never covers a curve."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
            frameon=False,
            handlelength=3.0,
        )


# ----------------------------------------------------------------------------- overview


def _time_extent(session: Any) -> tuple[float, float, bool]:
    """(smallest positive t, largest t, whether t ≤ 0 occurs) over trajectory and spectra."""
    ts = [np.asarray(seg.t) for seg in session.segments]
    ts.append(np.asarray([s.t for s in session.spectra], np.float64))
    ts.append(
        np.asarray(
            [e["t"] for e in session.events if isinstance(e.get("t"), int | float)], np.float64
        )
    )
    allt = np.concatenate([t.reshape(-1) for t in ts])
    allt = allt[np.isfinite(allt)]
    pos = allt[allt > 0]
    t_max = float(pos.max()) if pos.size else 1.0
    t_min = float(pos.min()) if pos.size else 1e-2
    if t_min >= t_max:
        t_min = t_max / 10
    return t_min, t_max, bool(np.any(allt <= 0))


def overview_figure(session: Any, *, t: float | None = None) -> Figure:
    """Loss and ‖∇L‖∞, Hessian spectrum, weights vs t, with phases and events marked;
    ``t``: a cursor at the saved state nearest it (the state another view shows)."""
    phases = session_phases(session)
    fig = Figure(figsize=(8.0, 9.0 if phases else 8.6), layout="constrained")
    if phases:
        bar, ax_loss, ax_eig, ax_w = fig.subplots(
            4, 1, sharex=True, height_ratios=(0.16, 1.1, 1.0, 1.0)
        )
    else:
        bar = None
        ax_loss, ax_eig, ax_w = fig.subplots(3, 1, sharex=True)
    panels = (ax_loss, ax_eig, ax_w)
    t_min, t_max, has_zero = _time_extent(session)

    _loss_panel(ax_loss, session)
    _spectrum_panel(ax_eig, session)
    _weights_panel(ax_w, session)
    for ax in (*panels, *([bar] if bar is not None else [])):
        _set_time_axis(ax, t_min, t_max, has_zero)
    ax_w.set_xlabel("t (gradient-flow time)")

    marks = _mark_phases_and_events(session, panels, phases, bar)
    marks += _cursor(session, panels, t)
    for ax in panels:
        _legend_right(ax)
    if marks:
        fig.legend(
            handles=marks, loc="outside lower center", ncols=min(len(marks), 5), frameon=False
        )
    fig.suptitle(_title(session))
    return fig


def _cursor(session: Any, axes: Sequence[Any], t: float | None) -> list:
    """A vertical cursor at the saved state nearest ``t`` on every axis; its legend handle."""
    if t is None:
        return []
    seg_i, row = state_at(session, t)
    ts = float(session.segments[seg_i].t[row])
    style = {"color": COLOURS[3], "linestyle": "-", "linewidth": 1.6, "alpha": 0.8}
    for ax in axes:
        ax.axvline(ts, zorder=2.5, **style)
    return [Line2D([], [], label=f"state at t = {ts:.4g}", **style)]


def phase_label(ph: Any) -> str:
    """Text for a phase in the bar: its kind (with "?" where core is unsure of it, e.g. a
    channel seen in λmax alone), and a plateau's loss level and Hessian index."""
    if ph.kind != "plateau":
        return ph.kind if getattr(ph, "sure", True) else f"{ph.kind}?"
    idx = "" if ph.index is None else f", index {ph.index}"
    return f"plateau L={ph.loss:.3g}{idx}"


def _phase_bar(ax: Any, phases: Sequence[Any]) -> None:
    """A strip of the phases over t (after the time axis is set): spans with labels."""
    ax.set_ylim(0.0, 1.0)
    ax.set_yticks([])
    ax.grid(False)
    ax.set_ylabel("phase", rotation=0, ha="right", va="center")
    scale = ax.xaxis.get_transform()  # data → scale coordinates (log, symlog)
    lo, hi = scale.transform(np.asarray(ax.get_xlim(), float))
    for ph in phases:
        t0, t1 = float(ph.t_start), float(ph.t_end)
        face, hatch = _PHASE_STYLE.get(ph.kind, ("0.9", "xx"))
        ax.axvspan(t0, t1, facecolor=face, hatch=hatch, edgecolor="0.25", linewidth=0.6)
        a, b = scale.transform(np.asarray([t0, t1], float))
        frac = (b - a) / (hi - lo)
        level = f"{ph.loss:.3g}"
        shorter = (f"L={level}", level) if ph.kind == "plateau" else (ph.kind,)
        for text in (phase_label(ph), *shorter, ph.kind[0]):
            if len(text) * _BAR_CHAR_FRAC < frac:
                mid = float(scale.inverted().transform(np.asarray([(a + b) / 2]))[0])
                ax.text(
                    mid,
                    0.5,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    bbox={"facecolor": face, "edgecolor": "none", "pad": 0.5},
                )
                break


def _title(session: Any) -> str:
    name = session.path.name if getattr(session, "path", None) else "session"
    spec = session.final_spec
    acts = sorted({a for layer in spec.activations for a in layer})
    net = f"d={spec.input_dim}, widths {list(spec.widths)}" + (
        f", {'/'.join(acts)}" if acts else ""
    )
    outcome = session.summary.get("classification")
    bits = [name, net]
    if outcome:
        bits.append(str(outcome))
    bits.append(f"final loss {session.final_loss:.3g}")
    return "  ·  ".join(bits)


def loss_offset(session: Any) -> float:
    """min L over the session's recorded (and refined) losses when it is < 0, else 0: the
    app's rule (:func:`explorer.widgets.plots.loss_offset`, the one place it is written) —
    a loss with values ≤ 0 (the correlation loss −E[f f*]) is drawn as L − min L."""
    from explorer.widgets.plots import loss_offset as offset_of

    values = [np.asarray(seg.loss, np.float64) for seg in session.segments]
    ref = session.refined
    if ref and isinstance(ref.get("loss"), int | float):
        values.append(np.array([ref["loss"]], np.float64))
    return offset_of(*values)


def _loss_panel(ax: Any, session: Any) -> None:
    offset = loss_offset(session)
    loss_label = f"L − min L (min L = {offset:.4g})" if offset else "loss L"
    for i, seg in enumerate(session.segments):
        first = i == 0
        ax.plot(
            seg.t,
            _positive(np.asarray(seg.loss, np.float64) - offset),
            color=COLOURS[0],
            linestyle="-",
            label=loss_label if first else None,
        )
        ax.plot(
            seg.t,
            _positive(seg.grad_norm),
            color=COLOURS[1],
            linestyle="--",
            label="‖∇L‖∞" if first else None,
        )
    ref = session.refined
    if ref and isinstance(ref.get("loss"), int | float) and ref["loss"] - offset > 0:
        t_ref = float(ref.get("t", session.final_t))
        note = "" if ref.get("converged", True) else "\n(not converged)"
        ax.plot(
            [t_ref],
            [ref["loss"] - offset],
            linestyle="none",
            marker="*",
            markersize=9,
            color=COLOURS[0],
            label=f"refined {'L − min L' if offset else 'loss'}{note}",
        )
        g = ref.get("grad_inf_norm")
        if isinstance(g, int | float) and g > 0:
            ax.plot(
                [t_ref],
                [g],
                linestyle="none",
                marker="X",
                markersize=7,
                color=COLOURS[1],
                label=f"refined ‖∇L‖∞{note}",
            )
    _set_log_y(ax)
    ax.set_ylabel("L − min L, ‖∇L‖∞" if offset else "loss, ‖∇L‖∞")
    what = f" as L − min L (min L = {offset:.4g})" if offset else ""
    ax.set_title(f"loss{what} and gradient norm", loc="left")


def _spectrum_panel(ax: Any, session: Any) -> None:
    traj = [s for s in session.spectra if s.label != "refined"]
    refined = [s for s in session.spectra if s.label == "refined"]
    if not session.spectra:
        ax.text(
            0.5,
            0.5,
            "no Hessian spectra recorded in this session",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.3",
        )
        ax.set_ylabel("Hessian eigenvalue λ")
        ax.set_title("Hessian spectrum", loc="left")
        return
    big = max(float(np.max(np.abs(s.eigenvalues))) for s in session.spectra)
    big = big if big > 0 else 1.0
    linthresh = 10.0 ** math.floor(math.log10(big * SYMLOG_REL))
    first_all = True
    lmin_t, lmin, lmax = [], [], []
    for seg_i in range(len(session.segments)):
        snaps = sorted((s for s in traj if s.segment == seg_i), key=lambda s: s.t)
        if not snaps:
            continue
        st = np.asarray([s.t for s in snaps])
        ev = np.stack([np.sort(s.eigenvalues) for s in snaps])  # (n_snap, P)
        ax.plot(st, ev, color="0.6", linewidth=0.6, alpha=0.6, zorder=1)
        if first_all:
            ax.plot([], [], color="0.6", linewidth=0.6, label="all λₖ")
            first_all = False
        lmin_t.append(st)
        lmin.append(ev[:, 0])
        lmax.append(ev[:, -1])
        lmin_t.append([np.nan])  # break the line between segments
        lmin.append([np.nan])
        lmax.append([np.nan])
    if lmin_t:
        st = np.concatenate(lmin_t)
        for values, colour, style, marker, label in (
            (lmax, COLOURS[1], "-", "^", "λmax"),
            (lmin, COLOURS[0], "--", "v", "λmin"),
        ):
            ax.plot(
                st,
                np.concatenate(values),
                color=colour,
                linestyle=style,
                marker=marker,
                markevery=0.08,
                markerfacecolor="none",
                label=label,
                zorder=3,
            )
    ref = session.refined or {}
    note = "" if ref.get("converged", True) else "\n(not converged)"
    for j, s in enumerate(refined):
        ev = np.sort(s.eigenvalues)
        ax.plot(
            [s.t, s.t],
            [ev[0], ev[-1]],
            linestyle="none",
            marker="*",
            markersize=8,
            color=COLOURS[2],
            label=f"refined λmin, λmax{note}" if j == 0 else None,
            zorder=4,
        )
    ax.axhline(0.0, color="0.2", linewidth=0.7, zorder=2)
    all_ev = np.concatenate([s.eigenvalues for s in session.spectra])
    _set_symlog_y(ax, float(all_ev.min()), float(all_ev.max()), linthresh)
    ax.set_ylabel(f"λ (symlog, linear |λ|<{linthresh:.0e})")
    n_neg = sum(1 for s in traj if s.eigenvalues.min() < -linthresh)
    note = f", λmin < 0 at {n_neg} of {len(traj)} snapshots" if n_neg else ""
    ax.set_title(f"Hessian spectrum{note}", loc="left")


def _weights_panel(ax: Any, session: Any) -> None:
    if _all_linear(session):
        _singular_panel(ax, session, _teacher_or_none(session))
        return
    ylabel = "weight"
    values_all = []
    shown: set[str] = set()
    for seg in session.segments:
        labels, values, ylabel = weight_series(seg.spec, seg.theta)
        values_all.append(values)
        for j, lab in enumerate(labels):
            is_dist = lab.startswith("min")
            style = (
                {"color": COLOURS[-1], "linestyle": ":", "linewidth": 1.8} if is_dist else _style(j)
            )
            show = lab not in shown and (j < 8 or is_dist)
            shown.add(lab)
            ax.plot(seg.t, values[:, j], label=lab if show else None, **style)
    vals = np.concatenate([v.reshape(-1) for v in values_all]) if values_all else np.zeros(0)
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size and vals.max() / vals.min() > 100:
        _set_log_y(ax)
    one_layer = len(session.final_spec.widths) == 1
    what = (
        "output weights |aᵢ| = ‖W2[:, i]‖, closest input-weight pair"
        if one_layer
        else ("layer norms")
    )
    ax.set_ylabel(ylabel)
    ax.set_title(f"weights: {what}", loc="left")


def _all_linear(session: Any) -> bool:
    """Every segment a linear network (σ = identity, linear output) and core.views present."""
    try:
        from core.views import why_not
    except ImportError:
        return False
    return all(why_not("singular", seg.spec) is None for seg in session.segments)


def _teacher_or_none(session: Any) -> Any | None:
    """The session's teacher (rebuilt from its config), for reference lines."""
    from core.problem import build_teacher

    return build_teacher(session.config)


def _mark_phases_and_events(
    session: Any, axes: Sequence[Any], phases: Sequence[Any] = (), bar: Any | None = None
) -> list:
    """Phases in the bar (and their boundaries on every axis), event lines; legend handles."""
    handles: list = []
    kinds_done: set[str] = set()
    if bar is not None:
        _phase_bar(bar, phases)
    for ph in phases:
        if ph.t_start > 0:
            for ax in axes:
                ax.axvline(float(ph.t_start), color="0.6", linewidth=0.6, zorder=0)
        if ph.kind not in kinds_done:
            kinds_done.add(ph.kind)
            face, hatch = _PHASE_STYLE.get(ph.kind, ("0.9", "xx"))
            handles.append(
                Patch(
                    facecolor=face,
                    hatch=hatch,
                    edgecolor="0.25",
                    linewidth=0.6,
                    label=f"phase: {ph.kind}",
                )
            )
    events_done: set[str] = set()
    for ev in session.events:
        t = ev.get("t")
        if not isinstance(t, int | float) or not math.isfinite(t):
            continue
        kind = str(ev.get("kind", "event"))
        ls = _EVENT_STYLE.get(kind, (0, (2, 2)))
        for ax in axes:
            ax.axvline(float(t), color="0.15", linestyle=ls, linewidth=1.0, zorder=2)
        if kind not in events_done:
            events_done.add(kind)
            handles.append(
                Line2D([], [], color="0.15", linestyle=ls, linewidth=1.0, label=f"event: {kind}")
            )
    # segment boundaries (surgery changes the network) even without an event record
    if len(session.segments) > 1 and "surgery" not in events_done:
        for seg in session.segments[1:]:
            for ax in axes:
                ax.axvline(float(seg.t[0]), color="0.15", linestyle="-.", linewidth=1.0)
        handles.append(Line2D([], [], color="0.15", linestyle="-.", label="new segment"))
    return handles


# ----------------------------------------------------------------------------- other views


def state_at(session: Any, t: float | None = None) -> tuple[int, int]:
    """(segment, row) of the saved state nearest time ``t`` (the final state for None)."""
    if t is None:
        return len(session.segments) - 1, len(session.final_segment) - 1
    best = (math.inf, 0, 0)
    for i, seg in enumerate(session.segments):
        j = int(np.argmin(np.abs(np.asarray(seg.t) - t)))
        gap = abs(float(seg.t[j]) - t)
        if gap <= best[0]:  # ties: the later segment (after surgery)
            best = (gap, i, j)
    return best[1], best[2]


def view_figure(session: Any, view: str, *, t: float | None = None) -> Figure:
    """A :mod:`core.views` view of the session; :class:`FigureError` when it does not apply."""
    from core.problem import build_problem
    from core.views import why_not

    seg_i, row = state_at(session, t)
    seg = session.segments[seg_i]
    problem = build_problem(session.config)
    reason = why_not(view, seg.spec, problem.teacher)
    if reason:
        raise FigureError(f"--view {view}: {reason}")
    t_state = float(seg.t[row])
    draw = {
        "function": _function_view,
        "weights": _weights_view,
        "singular": _singular_view,
        "slice": _slice_view,
    }[view]
    fig = draw(session, problem, seg_i, row)
    name = session.path.name if getattr(session, "path", None) else "session"
    if view == "singular":
        fig.suptitle(f"{name}  ·  singular values of the end-to-end map")
    else:
        loss = float(seg.loss[row])
        fig.suptitle(f"{name}  ·  {view} view at t = {t_state:.4g}  (loss {loss:.3g})")
    return fig


def _line_figure(
    session: Any,
    problem: Any,
    seg_i: int,
    row: int,
    *,
    width: float,
    height: float,
    probabilities: bool = False,
) -> tuple[Figure, Any, dict, dict]:
    """A function view's figure, two panels wide (``width``) for d = 2 (the line, the
    plane), else one, and the student's and teacher's outputs along the line
    (:func:`core.views.function_line`) at the run's start and at ``row`` of segment
    ``seg_i``: (figure, its axes, line at t = 0, line at the row)."""
    from core.views import function_line

    seg, start = session.segments[seg_i], session.segments[0]
    d2 = seg.spec.input_dim == 2
    fig = Figure(figsize=(width if d2 else 6.5, height), layout="constrained")
    axes = fig.subplots(1, 2 if d2 else 1, squeeze=False)[0]
    kw = {"probabilities": probabilities}
    line0 = function_line(start.spec, start.theta[0], problem.teacher, **kw)
    line = function_line(seg.spec, seg.theta[row], problem.teacher, **kw)
    return fig, axes, line0, line


def _draw_lines(
    ax: Any,
    line0: dict,
    line: dict,
    n_show: int,
    label: Callable[[int], str],
    *,
    teacher: tuple[str | None, float, str],
    start_label: str,
) -> None:
    """The line panel: for each of the first ``n_show`` outputs j, the teacher's (dashed,
    when there is one), the student's (solid with markers, ``label(j)``) and the student's
    at t = 0 (dotted), in output j's colour; legend entries and the s axis.  ``teacher`` =
    (its colour, None: output j's; line width; legend label)."""
    t_colour, t_width, t_label = teacher
    for j in range(n_show):
        col = COLOURS[j % len(COLOURS)]
        if line["teacher"] is not None:  # None: no teacher (a data file's own targets)
            ax.plot(
                line["s"],
                line["teacher"][:, j],
                color=t_colour or col,
                linestyle="--",
                linewidth=t_width,
            )
        ax.plot(
            line["s"],
            line["student"][:, j],
            color=col,
            linestyle="-",
            marker=MARKERS[j % len(MARKERS)],
            markevery=0.1,
            markerfacecolor="none",
            label=label(j),
        )
        ax.plot(line0["s"], line0["student"][:, j], color=col, linestyle=":", linewidth=1.0)
    if line["teacher"] is not None:
        ax.plot([], [], color="0.1", linestyle="--", linewidth=t_width, label=t_label)
    ax.plot([], [], color="0.4", linestyle=":", linewidth=1.0, label=start_label)
    u = ", ".join(f"{v:.2f}" for v in line["direction"])
    ax.set_xlabel(f"s   (x = s·u, u = ({u}))")


def _function_view(session: Any, problem: Any, seg_i: int, row: int) -> Figure:
    """Student f(s u; θ) against teacher g(s u) along one line, and f − g for d = 2."""
    from core.views import function_grid

    seg = session.segments[seg_i]
    spec, teacher = seg.spec, problem.teacher
    if problem.config.data.loss == "crossentropy" and spec.output_dim >= 2:
        return _class_view(session, problem, seg_i, row)
    d2 = spec.input_dim == 2
    fig, axes, line0, line = _line_figure(session, problem, seg_i, row, width=10.0, height=4.2)
    ax = axes[0]
    k_out = line["student"].shape[1]
    n_show = min(k_out, 4)
    _draw_lines(
        ax,
        line0,
        line,
        n_show,
        lambda j: f"student f, output {j}" if k_out > 1 else "student f",
        teacher=("0.1", 2.0, "teacher g"),
        start_label="student at t = 0",
    )
    ax.set_ylabel("output")
    more = f"; first {n_show} of {k_out} outputs" if k_out > n_show else ""
    ax.set_title(f"along a line through input space{more}", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.18), ncols=3, frameon=False)
    if d2:
        grid = function_grid(spec, seg.theta[row], teacher)
        diff = grid["diff"] if grid["diff"] is not None else grid["student"]  # no teacher: f
        ax2 = axes[1]
        lim = float(np.max(np.abs(diff))) or 1.0
        im = ax2.imshow(
            diff,
            origin="lower",
            cmap="RdBu_r",
            vmin=-lim,
            vmax=lim,
            extent=(grid["x"][0], grid["x"][-1], grid["y"][0], grid["y"][-1]),
            aspect="equal",
            interpolation="nearest",
        )
        # contour lines carry the sign in greyscale: negative levels dashed, positive solid
        levels = np.linspace(-lim, lim, 9)
        levels = levels[np.abs(levels) > 1e-12 * lim]
        cs = ax2.contour(
            grid["x"],
            grid["y"],
            diff,
            levels=levels,
            colors="0.1",
            linewidths=0.7,
            negative_linestyles="dashed",
        )
        ax2.clabel(cs, fmt="%.2g", fontsize=6)
        cb = fig.colorbar(im, ax=ax2, shrink=0.9)
        what = "f − g" if grid["diff"] is not None else "f (no teacher)"
        cb.set_label(f"{what}  (contours: dashed < 0, solid > 0)")
        ax2.plot(
            [-3 * line["direction"][0], 3 * line["direction"][0]],
            [-3 * line["direction"][1], 3 * line["direction"][1]],
            color="0.1",
            linestyle=(0, (1, 1)),
            linewidth=1.0,
        )
        ax2.set_xlabel("x₁")
        ax2.set_ylabel("x₂")
        ax2.set_title(f"{what} (max {lim:.2g}); dotted: the line", loc="left")
    return fig


#: Grid points per axis of the class-region panel (a 201² forward pass: crisp boundaries).
CLASS_GRID = 201


def _class_view(session: Any, problem: Any, seg_i: int, row: int) -> Figure:
    """Softmax student: p = softmax(f) against the teacher's class along one line, and for
    d = 2 the class regions of student and teacher with the training points."""
    from matplotlib.colors import ListedColormap

    from core.views import class_regions

    seg = session.segments[seg_i]
    spec, teacher = seg.spec, problem.teacher
    k = spec.output_dim
    d2 = spec.input_dim == 2
    fig, axes, line0, line = _line_figure(
        session, problem, seg_i, row, width=11.0, height=4.8, probabilities=True
    )
    ax = axes[0]
    n_show = min(k, len(COLOURS))
    _draw_lines(
        ax,
        line0,
        line,
        n_show,
        lambda j: f"p{j + 1}, class {j + 1}",
        teacher=(None, 1.5, "teacher's class (0/1)"),
        start_label="p at t = 0",
    )
    ax.set_ylabel("p = softmax(f)")
    ax.set_ylim(-0.03, 1.03)
    title = "class probabilities along a line"
    if line["teacher_class"] is not None:
        agree = float(np.mean(line["student_class"] == line["teacher_class"]))
        title += f" (argmax = teacher's on {agree:.0%})"
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), ncols=3, frameon=False)
    if not d2:
        return fig
    data = problem.data  # the same inputs and labels for every student spec (surgery)
    regions = class_regions(
        spec,
        seg.theta[row],
        teacher,
        n=CLASS_GRID,
        points=None if data is None else np.asarray(data.x),
        labels=None if data is None else np.asarray(data.y),
    )
    ax2 = axes[1]
    x, y = regions["x"], regions["y"]
    cmap = ListedColormap([COLOURS[j % len(COLOURS)] for j in range(k)])
    ax2.imshow(
        regions["student"],
        origin="lower",
        cmap=cmap,
        vmin=-0.5,
        vmax=k - 0.5,
        alpha=0.3,
        extent=(x[0], x[-1], y[0], y[-1]),
        aspect="equal",
        interpolation="nearest",
    )
    handles = [
        Patch(facecolor=COLOURS[j % len(COLOURS)], alpha=0.3, label=f"student: class {j + 1}")
        for j in range(k)
    ]
    if regions["teacher"] is not None:
        for j in range(k):  # each class's edge: the teacher's boundaries, once per side
            inside = (regions["teacher"] == j).astype(float)
            if 0 < inside.sum() < inside.size:
                ax2.contour(x, y, inside, levels=[0.5], colors="0.1", linewidths=1.2)
        handles.append(Line2D([], [], color="0.1", linewidth=1.2, label="teacher's boundaries"))
        if regions["disagree"].any():
            ax2.contourf(
                x,
                y,
                regions["disagree"].astype(float),
                levels=[0.5, 1.5],
                colors="none",
                hatches=["////"],
            )
            handles.append(Patch(facecolor="none", hatch="////", label="student ≠ teacher"))
    if regions["points"] is not None:
        pts, lab = regions["points"], regions["labels"]
        wrong = regions["predicted"] != lab
        for j in range(k):
            sel = lab == j
            ax2.scatter(
                pts[sel, 0],
                pts[sel, 1],
                s=9,
                marker=MARKERS[j % len(MARKERS)],
                facecolors="none",
                edgecolors=COLOURS[j % len(COLOURS)],
                linewidths=0.7,
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker=MARKERS[j % len(MARKERS)],
                    markerfacecolor="none",
                    markeredgecolor=COLOURS[j % len(COLOURS)],
                    label=f"data: label {j + 1}",
                )
            )
        if wrong.any():
            ax2.scatter(pts[wrong, 0], pts[wrong, 1], s=30, marker="x", color="0.1", linewidths=1.0)
            handles.append(
                Line2D([], [], linestyle="none", marker="x", color="0.1", label="misclassified")
            )
    ax2.set_xlim(x[0], x[-1])
    ax2.set_ylim(y[0], y[-1])
    ax2.set_xlabel("x₁")
    ax2.set_ylabel("x₂")
    parts = []
    if regions["agreement"] is not None:
        parts.append(f"≠ teacher on {1 - regions['agreement']:.1%} of the square")
    if regions["accuracy"] is not None:
        parts.append(f"training accuracy {regions['accuracy']:.1%}")
    ax2.set_title("class regions" + (": " + ", ".join(parts) if parts else ""), loc="left")
    ax2.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


def _weights_view(session: Any, problem: Any, seg_i: int, row: int) -> Figure:
    """d = 2: neurons' input-weight vectors w_i scaled by ‖a_i‖ over the run, and the teacher's."""
    from core.views import weight_vectors

    seg = session.segments[seg_i]
    spec, teacher = seg.spec, problem.teacher
    fig = Figure(figsize=(7.0, 6.0), layout="constrained")
    ax = fig.subplots()
    paths = [weight_vectors(spec, th, None) for th in seg.theta[: row + 1]]
    pts = np.stack([p["student"] * p["scale"][:, None] for p in paths])  # (m, k, 2)
    now = weight_vectors(spec, seg.theta[row], teacher)
    k = pts.shape[1]
    for i in range(k):
        st = _style(i)
        ax.plot(
            pts[:, i, 0],
            pts[:, i, 1],
            color=st["color"],
            linestyle=st["linestyle"],
            linewidth=0.9,
            alpha=0.8,
        )
        ax.plot(
            *pts[0, i],
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            color=st["color"],
            markersize=5,
        )
        ax.annotate(
            "",
            xy=tuple(pts[-1, i]),
            xytext=(0.0, 0.0),
            arrowprops={"arrowstyle": "-|>", "color": st["color"], "linewidth": 1.4},
        )
        ax.plot(
            *pts[-1, i],
            linestyle="none",
            marker=st["marker"],
            color=st["color"],
            markerfacecolor="none",  # open, of decreasing size: coinciding neurons all show
            markeredgewidth=1.6,
            markersize=11 - 2.5 * (i % 3),
            label=f"student neuron {i}: ‖a{i}‖ w{i}",
        )
    if now["teacher"] is not None:
        tv = now["teacher"] * now["teacher_scale"][:, None]
        for v in tv:
            ax.annotate(
                "",
                xy=tuple(v),
                xytext=(0.0, 0.0),
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": "0.1",
                    "linewidth": 1.2,
                    "linestyle": "--",
                },
            )
        ax.plot(
            tv[:, 0],
            tv[:, 1],
            linestyle="none",
            marker="X",
            color="0.1",
            markersize=9,
            label="teacher neurons ‖bⱼ‖ vⱼ",
        )
    ax.plot(
        [],
        [],
        linestyle="none",
        marker="o",
        markerfacecolor="none",
        color="0.3",
        label=f"start (t = {float(seg.t[0]):.3g})",
    )
    ax.plot(0, 0, marker="+", color="0.3", markersize=8, linestyle="none")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("first input weight × ‖a‖")
    ax.set_ylabel("second input weight × ‖a‖")
    ax.set_title("input-weight vectors scaled by output weight (paths: the run so far)", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _singular_view(session: Any, problem: Any, seg_i: int, row: int) -> Figure:
    """Deep linear nets: singular values of M = W_L⋯W_1 over the run (rank steps)."""
    phases = session_phases(session)
    fig = Figure(figsize=(8.6, 5.0 if phases else 4.6), layout="constrained")
    if phases:
        bar, ax = fig.subplots(2, 1, sharex=True, height_ratios=(0.12, 1.0))
    else:
        bar, ax = None, fig.subplots()
    _singular_panel(ax, session, problem.teacher)
    t_min, t_max, has_zero = _time_extent(session)
    for a in (ax, *([bar] if bar is not None else [])):
        _set_time_axis(a, t_min, t_max, has_zero)
    ax.set_xlabel("t (gradient-flow time)")
    marks = _mark_phases_and_events(session, (ax,), phases, bar)
    if seg_i != len(session.segments) - 1 or row != len(session.final_segment) - 1:
        marks += _cursor(session, (ax,), float(session.segments[seg_i].t[row]))
    _legend_right(ax)
    if marks:
        fig.legend(
            handles=marks, loc="outside lower center", ncols=min(len(marks), 5), frameon=False
        )
    return fig


def _singular_panel(ax: Any, session: Any, teacher: Any | None) -> None:
    from core.views import singular_values

    shown: set[int] = set()
    for seg in session.segments:
        sv = singular_values(seg.spec, seg.theta)  # (m, r) descending
        for j in range(sv.shape[1]):
            ax.plot(
                seg.t,
                _positive(sv[:, j]),
                label=f"σ{j + 1}" if j not in shown else None,
                **_style(j),
            )
            shown.add(j)
    if teacher is not None and teacher.spec is not None and teacher.theta is not None:
        try:
            tsv = singular_values(teacher.spec, np.asarray(teacher.theta))[0]
        except ValueError:  # a nonlinear teacher: no end-to-end matrix
            tsv = None
        if tsv is not None:
            for j, v in enumerate(tsv):
                if v > 0:
                    ax.axhline(
                        v,
                        color="0.3",
                        linestyle=(0, (1, 2)),
                        linewidth=0.9,
                        label="teacher's σⱼ" if j == 0 else None,
                    )
    _set_log_y(ax)
    ax.set_ylabel("singular value of W_L⋯W_1")
    ax.set_title("end-to-end map: singular values", loc="left")


def _slice_view(session: Any, problem: Any, seg_i: int, row: int) -> Figure:
    """L(θ + s v) along the Hessian eigenvectors of λmin and λmax, with ½λs² beside it."""
    from core.views import loss_slice

    seg = session.segments[seg_i]
    objective = problem.objective_for(seg.spec)
    sl = loss_slice(objective, np.asarray(seg.theta[row]))
    fig = Figure(figsize=(9.0, 4.0), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, i in ((axes[0], "min", 0), (axes[1], "max", 1)):
        s, vals, lam = sl[f"s_{key}"], sl[key], sl[f"lam_{key}"]
        ax.plot(
            s,
            vals,
            color=COLOURS[i],
            linestyle="-",
            marker=MARKERS[i],
            markevery=0.1,
            markerfacecolor="none",
            label=f"L(θ + s·v_{key})",
        )
        ax.plot(
            s,
            sl["loss"] + 0.5 * lam * s**2,
            color="0.2",
            linestyle="--",
            linewidth=1.0,
            label="L(θ) + ½λs²",
        )
        ax.axvline(0.0, color="0.5", linewidth=0.6)
        lo, hi = float(np.min(vals)), float(np.max(vals))
        if hi > lo:  # the data decide the range; the quadratic model may leave it
            pad = 0.08 * (hi - lo)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(f"s (unit eigenvector v_{key})")
        ax.set_title(f"along v_{key}: λ{key} = {lam:.3g}", loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.18), ncols=2, frameon=False)
    axes[0].set_ylabel("loss")
    return fig
