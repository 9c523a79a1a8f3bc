"""The atlas of a sweep: the distinct critical points its runs ended at.

Every finished run contributes its analysed end point (:class:`EndPoint`: the refined
point when the run was refined, else the end of its dynamics — what its report's
spectrum and classification describe).  Two end points are **the same critical point**
(:func:`same_point`) when

1. they are critical points of the same loss landscape (:func:`problem_key`: the same
   teacher — its actual weights, so a seed that draws the teacher matters —, the same
   student network and options, the same data, and the same sample of inputs; the seed
   counts only through what it draws, the dynamics and refinement settings not at all);
2. they have the same classification and Morse index;
3. their losses agree to round-off: |L₁ − L₂| ≤ :data:`LOSS_RTOL` · max|L| +
   :data:`~core.sweep.results.ZERO_LOSS` + ½ λ_max P d² (the last term: the loss varies
   to second order over the points' measured separation d);
4. their positions agree modulo the network's symmetries (:mod:`core.symmetry`): the
   distance d after matching is ≤ :data:`POSITION_RTOL` · (1 + scale) +
   :data:`UNCERTAINTY_FACTOR` · stretch · (δ₁ + δ₂), where scale is the points' largest
   parameter, stretch the canonical form's largest coordinate stretch, and δ = √P ‖∇L‖∞
   / λ⁺ each point's distance from the exact critical point it approximates (λ⁺: the
   smallest Hessian eigenvalue above the spectrum's zero tolerance; δ = 0 for points
   classified "unconverged" or "channel", which are not near a critical point).

Points are taken in grid order and each joins the first atlas entry whose representative
(its first member) it matches, so the atlas does not depend on the order in which runs
finished, and no chain of small steps merges distant points.

Files beside ``summary.csv`` (written when a sweep ends, or is interrupted):

* ``atlas.csv`` — one row per entry (:data:`ATLAS_COLUMNS`): ``id`` (1, 2, … in order of
  problem, then loss), ``loss``, ``index``, ``classification``, ``count``, ``runs`` (run
  names, ``;``-separated, grid order), ``representative`` (the first run),
  ``grad_inf_norm`` (the representative's), ``widths`` (student hidden widths) and
  ``problem`` (a short hash of :func:`problem_key`: rows with equal hashes are points of
  one landscape);
* ``atlas.npz`` — the representatives' parameters in canonical form
  (:func:`core.symmetry.canonical_form`: an exact critical point of the same orbit), by
  name: array ``"<id>/w1"``, ``"<id>/b1"``, … as in :func:`core.networks.unflatten`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Config, config_to_dict
from core.files import write_bytes_atomic
from core.spec import NetworkSpec
from core.sweep.results import ZERO_LOSS, csv_text, write_text_atomic
from core.symmetry import Symmetries, canonical_form, symmetric_distance

ATLAS_CSV = "atlas.csv"
ATLAS_NPZ = "atlas.npz"
ATLAS_COLUMNS = (
    "id",
    "loss",
    "index",
    "classification",
    "count",
    "runs",
    "representative",
    "grad_inf_norm",
    "widths",
    "problem",
)
#: Position tolerance relative to the parameter scale.  Two refinements of one
#: non-degenerate critical point land within √P·gtol/λ⁺ of it (gtol = 1e-12: ≤ 1e-8 for
#: λ⁺ ≥ 1e-3 and P ≤ 10⁴), and the canonical form costs a few ulps; 1e-6 leaves two
#: decades above both, while distinct critical points of one landscape differ in their
#: parameters by ≥ 1e-3 relative in every problem of this project's tests and presets.
POSITION_RTOL = 1e-6
#: Safety factor on the per-point distance estimate δ = √P‖∇L‖∞/λ⁺ (a first-order bound).
UNCERTAINTY_FACTOR = 10.0
#: Loss tolerance relative to |L|: a float64 mean over N ≤ 10⁶ terms is correct to N·ε ≈
#: 2e-10 relative in the worst case (pairwise summation does far better); losses that
#: differ by more than 1e-9 relative are different critical points.
LOSS_RTOL = 1e-9
#: Classifications whose points are near a critical point (δ is meaningful).
CONVERGED = ("minimum", "saddle")


@dataclass(frozen=True)
class EndPoint:
    """One run's analysed end point.

    Attributes:
        run: the run's name.
        problem: :func:`problem_key` of its config (JSON text).
        spec: the student spec at the end (after any surgery).
        theta: (P,) parameters of the analysed point.
        loss: L there.
        index: Morse index (``None`` without a spectrum).
        classification: the report's.
        grad_inf_norm: ‖∇L‖∞ there.
        delta: δ = √P ‖∇L‖∞ / λ⁺, the distance to the critical point it approximates (0
            when unknown or not near one).
        lam_max: the largest |eigenvalue| (0 without a spectrum).
        symmetries: which symmetries its problem has (:class:`core.symmetry.Symmetries`).
    """

    run: str
    problem: str
    spec: NetworkSpec
    theta: np.ndarray
    loss: float
    index: int | None
    classification: str
    grad_inf_norm: float
    delta: float = 0.0
    lam_max: float = 0.0
    symmetries: Symmetries = field(default_factory=Symmetries)


@dataclass
class AtlasEntry:
    """One distinct critical point: its representative (first member) and its members."""

    representative: EndPoint
    runs: list[str]
    id: int = 0

    @property
    def count(self) -> int:
        return len(self.runs)


def problem_key(config: Config, teacher: Mapping[str, Any] | None = None) -> str:
    """JSON text that is equal for two runs exactly when they explore one loss landscape.

    The config without what only steers the dynamics (``seed``, ``dynamics`` except
    ``maxnorm``, ``refine``, ``student.seed``, ``student.init_scale``, ``student.params`` —
    kept with ``train_output = false``, whose fixed output weights come from it), with the teacher's
    actual weights added to its table (``teacher``: the report's ``{"kind", "params"}``,
    when it has params) and the seed of the input sample where the data are sampled.
    """
    d = config_to_dict(config)
    dynamics = d.pop("dynamics", {})
    d.pop("refine", None)
    d.pop("seed", None)
    student = dict(d.get("student", {}))
    for k in ("seed", "init_scale", "params"):
        if k != "params" or student.get("train_output", True):
            student.pop(k, None)
    d["student"] = student
    d["maxnorm"] = dynamics.get("maxnorm")
    if teacher is not None and teacher.get("params") is not None:
        d["teacher"] = {**d.get("teacher", {}), "params": teacher["params"]}
    data = dict(d.get("data", {}))
    if data.get("kind") not in ("gaussian-infinite", "file"):
        data["sample_seed"] = config.data_seed
    d["data"] = data
    return json.dumps(d, sort_keys=True, default=str)


def problem_symmetries(config: Config) -> Symmetries:
    """The symmetries of ``config``'s landscape beyond permutations (see
    :class:`core.symmetry.Symmetries`)."""
    s = config.student
    fixed_output = not getattr(s, "train_output", True)
    unit_norm = bool(getattr(s, "unit_norm", False))
    rescale = not (fixed_output or unit_norm or config.dynamics.maxnorm is not None)
    return Symmetries(flip_output=not fixed_output, rescale=rescale)


def _theta(spec: NetworkSpec, params: Mapping[str, Any]) -> np.ndarray:
    """Flat θ (P,) from named parameters (NumPy; the order of :mod:`core.networks`)."""
    parts = []
    for name, shape in spec.shapes.items():
        a = np.asarray(params[name], dtype=np.float64)
        if a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
        parts.append(a.reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0)


def end_point(run: str, session: Any) -> EndPoint | None:
    """The analysed end point of a finished session (``None`` without a final report)."""
    report = getattr(session, "report", None)
    if not report:
        return None
    which = (report.get("analysed") or {}).get("point", "final")
    point = report.get("refined") if which == "refined" else report.get("final")
    point = point or report["final"]
    spec = session.final_spec
    theta = _theta(spec, point["params"])
    analysis = session.analysis or {}
    loss = float(analysis.get("loss", point.get("loss", math.nan)))
    gnorm = float(analysis.get("grad_inf_norm", point.get("grad_inf_norm", math.nan)))
    spectrum = report.get("spectrum") or {}
    eig = np.abs(np.asarray(spectrum.get("eigenvalues", []), dtype=np.float64))
    tol = float(spectrum.get("tol", 0.0))
    cls = str(report.get("classification"))
    above = eig[eig > tol]
    delta = 0.0
    if cls in CONVERGED and above.size and math.isfinite(gnorm):
        delta = math.sqrt(spec.n_params) * gnorm / float(above.min())
    return EndPoint(
        run=run,
        problem=problem_key(session.config, report.get("teacher")),
        spec=spec,
        theta=theta,
        loss=loss,
        index=spectrum.get("index"),
        classification=cls,
        grad_inf_norm=gnorm,
        delta=delta,
        lam_max=float(eig.max()) if eig.size else 0.0,
        symmetries=problem_symmetries(session.config),
    )


def _comparable(p: EndPoint, q: EndPoint) -> bool:
    return (
        p.problem == q.problem
        and p.spec == q.spec
        and p.symmetries == q.symmetries
        and p.classification == q.classification
        and p.index == q.index
    )


def _loss_tol(p: EndPoint, q: EndPoint, d: float) -> float:
    lam = max(p.lam_max, q.lam_max)
    return LOSS_RTOL * max(abs(p.loss), abs(q.loss)) + ZERO_LOSS + 0.5 * lam * p.theta.size * d**2


def same_point(p: EndPoint, q: EndPoint) -> bool:
    """Whether two end points are the same critical point (the module docstring's rules)."""
    if not _comparable(p, q):
        return False
    if not (math.isfinite(p.loss) and math.isfinite(q.loss)):
        return False
    c = symmetric_distance(p.spec, p.theta, q.theta, p.symmetries)
    x_tol = POSITION_RTOL * (1.0 + c.scale) + UNCERTAINTY_FACTOR * c.stretch * (p.delta + q.delta)
    if not c.distance <= x_tol:
        return False
    return abs(p.loss - q.loss) <= _loss_tol(p, q, c.distance)


def build_atlas(points: Sequence[EndPoint]) -> list[AtlasEntry]:
    """The distinct critical points of ``points`` (given in grid order), with ids.

    Entries are ordered by problem (first seen), then loss, then first member; ids count
    from 1 in that order.
    """
    entries: list[AtlasEntry] = []
    by_key: dict[tuple, list[AtlasEntry]] = {}
    for p in points:
        key = (p.problem, p.spec, p.symmetries, p.classification, p.index)
        for e in by_key.get(key, []):
            if same_point(e.representative, p):
                e.runs.append(p.run)
                break
        else:
            e = AtlasEntry(p, [p.run])
            entries.append(e)
            by_key.setdefault(key, []).append(e)
    problems = {e.representative.problem: None for e in entries}
    rank = {k: i for i, k in enumerate(problems)}
    first = {id(e): i for i, e in enumerate(entries)}

    def order(e: AtlasEntry) -> tuple:
        loss = e.representative.loss
        return (rank[e.representative.problem], loss if math.isfinite(loss) else math.inf,
                first[id(e)])  # fmt: skip

    entries.sort(key=order)
    for i, e in enumerate(entries, start=1):
        e.id = i
    return entries


def atlas_rows(entries: Sequence[AtlasEntry]) -> list[dict[str, Any]]:
    """The rows of ``atlas.csv``."""
    rows = []
    for e in entries:
        r = e.representative
        rows.append(
            {
                "id": e.id,
                "loss": r.loss,
                "index": r.index,
                "classification": r.classification,
                "count": e.count,
                "runs": ";".join(e.runs),
                "representative": r.run,
                "grad_inf_norm": r.grad_inf_norm,
                "widths": list(r.spec.widths),
                "problem": hashlib.sha1(r.problem.encode()).hexdigest()[:8],
            }
        )
    return rows


def atlas_arrays(entries: Sequence[AtlasEntry]) -> dict[str, np.ndarray]:
    """``atlas.npz``'s arrays: ``"<id>/<name>"`` → the representative's canonical form."""
    out: dict[str, np.ndarray] = {}
    for e in entries:
        r = e.representative
        theta = canonical_form(r.spec, r.theta, r.symmetries)
        for name, sl in r.spec.offsets().items():
            out[f"{e.id}/{name}"] = theta[sl].reshape(r.spec.shapes[name])
    return out


def write_atlas(out: str | Path, points: Sequence[EndPoint]) -> list[AtlasEntry]:
    """Write ``atlas.npz`` then ``atlas.csv`` (each atomically) into ``out``; return the
    entries.  A reader that finds the CSV finds parameters at least as new."""
    entries = build_atlas(points)
    folder = Path(out)
    buf = io.BytesIO()
    np.savez(buf, **atlas_arrays(entries))
    write_bytes_atomic(folder / ATLAS_NPZ, buf.getvalue())
    write_text_atomic(folder / ATLAS_CSV, csv_text(atlas_rows(entries), ATLAS_COLUMNS))
    return entries


def load_atlas_params(out: str | Path, entry_id: int | str) -> dict[str, np.ndarray]:
    """The named parameters of atlas entry ``entry_id`` from ``out/atlas.npz``."""
    from core.files import load_npz

    prefix = f"{entry_id}/"
    arrays = load_npz(Path(out) / ATLAS_NPZ)
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
