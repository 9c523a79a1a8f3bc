"""A saved session as text for people and other programs: CSV tables and the report's words.

Tables (:func:`session_tables`): the loss curve, the Hessian spectrum snapshots and the
first-layer neurons, one row per saved state; every float is written with ``repr`` so a
reader gets the stored float64 back exactly.  :func:`write_session_csv` writes them where
``explorer export --csv OUT`` says (:func:`export_targets`): all three files or none,
never over or through anything already there (:func:`core.files.write_new_files`).

Words: :func:`format_report` (``explorer report``), :func:`closing_summary` (the line
``explorer run`` ends with).  The JSON report itself is :func:`core.runner.session_report`.

Nothing here imports JAX or a UI; errors are :class:`ExportError`, one line naming the path.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The tables of an export, in file order.
TABLES = ("loss", "spectrum", "neurons")

Table = tuple[list[str], list[list[Any]]]


class ExportError(ValueError):
    """An export that would overwrite or cannot be placed; ``str()`` is one line."""


# ----------------------------------------------------------------------------- tables


def session_tables(session: Any) -> dict[str, Table]:
    """(header, rows) of the loss curve, the spectrum snapshots and first-layer neurons.

    * loss: segment, t, loss, grad_inf_norm — one row per saved state.
    * spectrum: snapshot, label, segment, t, k, eigenvalue — ascending k per snapshot.
    * neurons: segment, t, neuron, w_0..w_{d−1}, b (empty without bias), a_0..a_{k−1}
      — the first hidden layer's input weights w_i = W1[i], bias, and outgoing weights
      a_i = W2[:, i], for every saved state (k: the widest next layer over the segments).
    """
    import numpy as np

    from core.networks import unflatten

    loss_rows: list[list[Any]] = []
    for i, seg in enumerate(session.segments):
        for t, lo, g in zip(seg.t, seg.loss, seg.grad_norm, strict=True):
            loss_rows.append([i, repr(float(t)), repr(float(lo)), repr(float(g))])
    spec_rows: list[list[Any]] = []
    for k, snap in enumerate(session.spectra):
        for j, ev in enumerate(snap.eigenvalues):
            spec_rows.append([k, snap.label, snap.segment, repr(snap.t), j, repr(float(ev))])
    d = session.segments[0].spec.input_dim
    k_out = 0
    neuron_rows: list[list[Any]] = []
    for i, seg in enumerate(session.segments):
        spec = seg.spec
        if not spec.widths:
            continue
        nxt = spec.widths[1] if len(spec.widths) > 1 else spec.output_dim
        k_out = max(k_out, nxt)
        for t, th in zip(seg.t, seg.theta, strict=True):
            p = unflatten(spec, np.asarray(th))
            for n in range(spec.widths[0]):
                b = repr(float(p["b1"][n])) if "b1" in p else ""
                row = [i, repr(float(t)), n, *(repr(float(v)) for v in p["w1"][n]), b]
                row += [repr(float(v)) for v in p["w2"][:, n]]
                neuron_rows.append(row)
    neuron_header = ["segment", "t", "neuron", *(f"w_{j}" for j in range(d)), "b"]
    neuron_header += [f"a_{j}" for j in range(k_out)]
    return {
        "loss": (["segment", "t", "loss", "grad_inf_norm"], loss_rows),
        "spectrum": (["snapshot", "label", "segment", "t", "k", "eigenvalue"], spec_rows),
        "neurons": (neuron_header, neuron_rows),
    }


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV text: the header row, then ``rows`` (cells as given; ``\\n`` line ends)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


# ----------------------------------------------------------------------------- files


def export_targets(out: Path) -> dict[str, Path]:
    """The file of each of :data:`TABLES` for ``--csv OUT``; refuses to clobber.

    OUT ending in ``.csv``: the loss curve there, the others beside it as
    ``<stem>_spectrum.csv`` and ``<stem>_neurons.csv`` (OUT's folder must exist).
    Otherwise OUT is a folder (made if absent; must be empty, not a link) receiving
    ``loss.csv``, ``spectrum.csv`` and ``neurons.csv``.  Any target already there (a
    dangling link too) is an :class:`ExportError`.
    """
    if out.suffix.lower() == ".csv":
        stem = out.with_suffix("")
        targets = {
            "loss": out,
            "spectrum": stem.parent / f"{stem.name}_spectrum.csv",
            "neurons": stem.parent / f"{stem.name}_neurons.csv",
        }
        if not out.parent.is_dir():
            raise ExportError(f"{out}: folder {out.parent} does not exist")
    else:
        if out.is_symlink():
            raise ExportError(f"{out}: is a symbolic link; refusing to write through it")
        if out.exists() and not out.is_dir():
            raise ExportError(f"{out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()):
            raise ExportError(f"{out}: folder is not empty; refusing to overwrite")
        targets = {name: out / f"{name}.csv" for name in TABLES}
    for path in targets.values():
        if os.path.lexists(path):  # a dangling link too
            raise ExportError(f"{path}: exists; refusing to overwrite")
    return targets


def write_session_csv(session: Any, out: str | Path) -> list[Path]:
    """Write :func:`session_tables` of ``session`` to :func:`export_targets` of ``out``;
    return the paths written.  Everything is rendered before anything is written, and
    the files are created all or nothing (:func:`core.files.write_new_files`)."""
    from core.files import write_new_files

    targets = export_targets(Path(out))
    tables = session_tables(session)
    texts = {name: csv_text(*tables[name]) for name in targets}
    next(iter(targets.values())).parent.mkdir(parents=True, exist_ok=True)
    try:
        write_new_files({path: texts[name].encode("utf-8") for name, path in targets.items()})
    except FileExistsError as e:  # appeared since the check
        raise ExportError(f"{e.filename}: exists; refusing to overwrite") from None
    return list(targets.values())


# ----------------------------------------------------------------------------- words


def format_report(report: dict) -> str:
    """A short human-readable summary of a report (:func:`core.runner.session_report`)."""
    fin = report["final"]
    which = report.get("analysed") or {}
    of = f"  (of the {which.get('point')} point at t = {which.get('t') or 0:.6g})" if which else ""
    lines = [
        f"classification: {report.get('classification')}{of}",
        f"final:   t = {fin['t']:.6g}  loss = {_g(fin['loss'])}{_fit(fin)}  "
        f"|∇L|∞ = {_g(fin['grad_inf_norm'])}",
    ]
    ref = report.get("refined")
    if ref:
        lines.append(
            f"refined: loss = {_g(ref['loss'])}{_fit(ref)}  |∇L|∞ = {_g(ref['grad_inf_norm'])}  "
            f"({ref.get('method')}, {ref.get('iterations')} it, converged={ref.get('converged')})"
        )
    spec = report.get("spectrum") or {}
    eig = [e for e in spec.get("eigenvalues", []) if e is not None]
    if eig:
        lines.append(
            f"spectrum: index {spec.get('index')}  λ_min = {min(eig):.3e}  λ_max = {max(eig):.3e}"
        )
    for ch in report.get("channels", []):
        lines.append(f"channel: neurons {ch['neurons']}  ε = {_g(ch.get('epsilon'))}")
    if which.get("note"):
        lines.append(f"note: {which['note']}")
    phases = [ph for ph in report.get("phases") or [] if isinstance(ph, dict)]
    if phases:
        lines.append("phases: " + " → ".join(_phase_text(ph) for ph in phases))
    source = report.get("branched_from")
    if isinstance(source, dict):
        lines.append(f"branched from {source.get('session')} at t = {_num(source.get('t'), '.6g')}")
    if (report.get("teacher") or {}).get("kind") == "none":
        lines.append("teacher: none (the targets are data.path's y)")
    lines.append(f"wall: {report.get('wall_seconds') or 0:.2f} s")
    return "\n".join(lines) + "\n"


def closing_summary(summary: dict) -> str:
    """Stop reason, classification and the loss *of the analysed point* (the refined one
    when there is one, as in the report), saying which, and the wall time."""
    refined = summary.get("refined_loss")
    loss, which = (summary.get("final_loss"), "flow") if refined is None else (refined, "refined")
    loss_text = "n/a" if loss is None else f"{loss:.6g}"
    return (
        f"{summary.get('stop_reason')}, {summary.get('classification')}, "
        f"loss {loss_text} ({which}), {summary.get('wall_seconds', 0):.1f} s"
    )


def _phase_text(phase: dict) -> str:
    """One phase of a report as ``plateau 1–300 (L 0.00139, index 1)``."""
    index = "" if phase.get("index") is None else f", index {phase['index']}"
    return (
        f"{phase.get('kind')} {_num(phase.get('t_start'))}–{_num(phase.get('t_end'))}"
        f" (L {_num(phase.get('loss'))}{index})"
    )


def _num(x: Any, spec: str = ".3g") -> str:
    """A stored number in ``spec`` format; anything else (a damaged file's value) as is."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return format(x, spec)
    return "n/a" if x is None else str(x)


def _g(x: Any) -> str:
    return "n/a" if x is None else f"{x:.6e}"


def _fit(point: dict) -> str:
    """The ``rmse = …`` / ``accuracy = …`` fragments of a report point that has them."""
    out = ""
    if point.get("rmse") is not None:
        out += f"  rmse = {_g(point['rmse'])}"
    if point.get("accuracy") is not None:
        out += f"  accuracy = {point['accuracy']:.4f}"
    return out
