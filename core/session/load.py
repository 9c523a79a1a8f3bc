"""Loading a session folder: bounded reads, the schema upgrade, and every stored field checked.

Loading never writes and never lets an exception other than :class:`SessionError`
escape: its message names the file and the problem (one line, values cut short).
Every read is bounded (:mod:`core.files`): regular files only, no symbolic links inside
the folder, size caps, strict JSON nested at most 64 deep, TOML at most 32; and every
stored field a reader uses is checked against the schemas of :mod:`core.session.schema`
(:data:`~core.session.schema.REPORT_SCHEMA`, :data:`~core.session.schema.SUMMARY_SCHEMA`,
:data:`~core.session.schema.EVENT_SCHEMA`…), so a loaded session can be trusted.

:func:`_load` reads the parts in this order, each failure naming its file: meta.json's
header (format, schema version), the arrays (upgraded with the schema,
:mod:`core.session.migrations`), the config (config.toml, which must agree with
meta.json's), the segments, the refined point, the spectra, the records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from core.config import Config, ConfigError, parse_config
from core.files import (
    MAX_ARRAY_FILE_BYTES,
    MAX_CONFIG_BYTES,
    MAX_META_BYTES,
    FileReadError,
    load_json,
    load_npz,
    load_toml,
    read_text,
    short,
)
from core.session.layout import (
    CONFIG,
    FORMAT,
    META,
    SCHEMA_VERSION,
    SPECTRA,
    TRAJECTORY,
    spec_from_json,
)
from core.session.migrations import MIGRATIONS, legacy_config, upgrade
from core.session.model import Segment, Session, SessionError, SpectrumSnapshot
from core.session.schema import (
    ANALYSIS_SCHEMA,
    EVENT_SCHEMA,
    REFINED_SCHEMA,
    REPORT_SCHEMA,
    SUMMARY_SCHEMA,
    check_fields,
)


def load_session(path: str | Path) -> Session:
    """Read and validate a session folder; raise :class:`SessionError` on any problem.

    Never writes.  Older schema versions are upgraded in memory through
    :data:`MIGRATIONS`.  If ``path`` is missing because a save on a system without
    atomic exchange was interrupted, the backup sibling it left is loaded instead.
    """
    p = Path(path)
    if not p.is_dir():
        backups = sorted(p.parent.glob(f".{p.name}.old-*"), key=lambda b: b.stat().st_mtime)
        if not p.exists() and backups:
            return load_session(backups[-1])
        raise SessionError(p, "not found" if not p.exists() else "not a session folder")
    try:
        return _load(p)
    except SessionError:
        raise
    except Exception as e:  # a last guard: any surprise is still a one-line SessionError
        raise SessionError(p, f"malformed session ({type(e).__name__}: {e})") from None


def _load(p: Path) -> Session:
    meta_path, traj_path, spectra_path = p / META, p / TRAJECTORY, p / SPECTRA
    meta = _read_meta(p)
    stored_schema = meta["schema"]
    arrays = _read_npz(traj_path)
    spectra_arrays = _read_npz(spectra_path) if spectra_path.exists() or stored_schema >= 2 else {}
    meta, arrays = upgrade(meta, arrays, meta_path)
    config = _read_config(p, meta, stored_schema)
    segments = _read_segments(meta, arrays, config, meta_path, traj_path)
    refined, refined_theta = _read_refined(meta, arrays, segments, meta_path, traj_path)
    spectra = _read_spectra(meta, spectra_arrays, config, segments, meta_path, spectra_path)
    # -- records: every field a reader uses is checked (extra keys are kept as they are)
    events = meta.get("events", [])
    check_fields(events, [EVENT_SCHEMA], "events", meta_path)
    summary = meta.get("summary", {})
    check_fields(summary, SUMMARY_SCHEMA, "summary", meta_path)
    check_fields(meta.get("analysis"), ANALYSIS_SCHEMA, "analysis", meta_path, nullable=True)
    check_fields(meta.get("report"), REPORT_SCHEMA, "report", meta_path, nullable=True)
    vers = meta.get("versions", {})
    check_fields(vers, "str-map", "versions", meta_path)
    for key in ("created", "saved"):
        check_fields(meta.get(key, ""), "str", key, meta_path)
    comparison = None
    if meta.get("comparison") is not None:
        from core.compare import Comparison

        try:
            comparison = Comparison.from_stored(meta["comparison"], arrays)
        except ValueError as e:
            raise SessionError(traj_path, str(e)) from None

    return Session(
        config=config,
        segments=segments,
        spectra=spectra,
        events=events,
        summary=summary,
        analysis=meta.get("analysis"),
        report=meta.get("report"),
        refined=refined,
        refined_theta=refined_theta,
        created=meta.get("created", ""),
        saved=meta.get("saved", ""),
        versions=vers,
        schema=SCHEMA_VERSION,
        path=p,
        comparison=comparison,
    )


# ----------------------------------------------------------------------------- the parts


def _read_meta(p: Path) -> dict:
    """meta.json as an object with the format marker and a schema version this program reads."""
    meta_path = p / META
    if not os.path.lexists(meta_path):
        raise SessionError(p, f"not a session folder (no {META})")
    try:
        meta = load_json(_read_text(meta_path, MAX_META_BYTES))
    except ValueError as e:  # JSONDecodeError, or nested too deep
        raise SessionError(meta_path, f"invalid JSON ({e})") from None
    _need(isinstance(meta, dict), meta_path, "must hold a JSON object")
    _need(meta.get("format") == FORMAT, meta_path, "not a session (missing format marker)")
    schema = meta.get("schema")
    _need(
        isinstance(schema, int) and not isinstance(schema, bool),
        meta_path,
        f"schema version must be an integer, got {schema!r}",
    )
    if schema > SCHEMA_VERSION:
        raise SessionError(
            meta_path, f"schema version {schema} is newer than this program's {SCHEMA_VERSION}"
        )
    if schema != SCHEMA_VERSION and schema not in MIGRATIONS:
        raise SessionError(meta_path, f"unknown schema version {schema}")
    return meta


def _read_config(p: Path, meta: dict, stored_schema: int) -> Config:
    """The config: config.toml is what a user re-runs; it must agree with meta.json's."""
    meta_path, cfg_path = p / META, p / CONFIG
    try:
        cfg_map = load_toml(_read_text(cfg_path, MAX_CONFIG_BYTES))
    except ValueError as e:  # TOMLDecodeError, or nested too deep
        raise SessionError(cfg_path, f"invalid TOML ({e})") from None
    config = _parse_stored_config(legacy_config(cfg_map, stored_schema), cfg_path, p)
    _need(isinstance(meta.get("config"), dict), meta_path, "missing 'config' table")
    meta_config = _parse_stored_config(meta["config"], meta_path, p)
    _need(
        meta_config == config,
        cfg_path,
        f"differs from the config recorded in {META} (edited by hand?)",
    )
    return config


def _parse_stored_config(table: dict, where: Path, base_dir: Path) -> Config:
    try:
        return parse_config(table, str(where), base_dir=base_dir)
    except ConfigError as e:
        raise SessionError(where, f"config no longer valid: {e.field}: {e.message}") from None


def _read_segments(
    meta: dict, arrays: Mapping[str, np.ndarray], config: Config, meta_path: Path, traj_path: Path
) -> list[Segment]:
    """The segments: a spec each in meta.json, their states in trajectory.npz, in time order."""
    seg_meta = meta.get("segments")
    _need(
        isinstance(seg_meta, list) and len(seg_meta) > 0,
        meta_path,
        "'segments' must be a non-empty list",
    )
    segments: list[Segment] = []
    for i, sm in enumerate(seg_meta):
        _need(isinstance(sm, dict) and "spec" in sm, meta_path, f"segment {i} has no spec")
        try:
            spec = spec_from_json(sm["spec"])
        except (KeyError, TypeError, ValueError) as e:
            raise SessionError(meta_path, f"segment {i}: invalid spec ({e})") from None
        _need(
            spec.input_dim == config.teacher.input_dim
            and spec.output_dim == config.teacher.output_dim,
            meta_path,
            f"segment {i}: spec dimensions do not match the teacher",
        )
        t = _array(arrays, f"seg{i}_t", (None,), traj_path)
        m = t.shape[0]
        _need(m >= 1, traj_path, f"segment {i} has no states")
        _need(
            sm.get("n_points", m) == m,
            traj_path,
            f"segment {i}: expected {sm.get('n_points')} states, found {m}",
        )
        theta = _array(arrays, f"seg{i}_theta", (m, spec.n_params), traj_path)
        loss = _array(arrays, f"seg{i}_loss", (m,), traj_path)
        gnorm = _array(arrays, f"seg{i}_grad_norm", (m,), traj_path)
        _need(bool(np.all(np.diff(t) >= 0)), traj_path, f"seg{i}_t is not non-decreasing")
        if segments:
            _need(t[0] >= segments[-1].t[-1], traj_path, f"segment {i} starts before the last ends")
        segments.append(Segment(spec, t, theta, loss, gnorm))
    return segments


def _read_refined(
    meta: dict,
    arrays: Mapping[str, np.ndarray],
    segments: list[Segment],
    meta_path: Path,
    traj_path: Path,
) -> tuple[dict | None, np.ndarray | None]:
    """The refined point's record and θ* (P,) of its segment, or (None, None)."""
    refined = meta.get("refined")
    refined_theta = None
    check_fields(refined, REFINED_SCHEMA, "refined", meta_path, nullable=True)
    if refined is not None:
        seg_i = refined.get("segment", len(segments) - 1)
        _need(
            isinstance(seg_i, int) and 0 <= seg_i < len(segments),
            meta_path,
            f"'refined.segment' out of range: {short(repr(seg_i))}",
        )
        refined_theta = _array(arrays, "refined_theta", (segments[seg_i].spec.n_params,), traj_path)
    return refined, refined_theta


def _read_spectra(
    meta: dict,
    spectra_arrays: Mapping[str, np.ndarray],
    config: Config,
    segments: list[Segment],
    meta_path: Path,
    spectra_path: Path,
) -> list[SpectrumSnapshot]:
    """The spectrum snapshots: index in meta.json, eigenvalues (F,) in spectra.npz."""
    spec_meta = meta.get("spectra", [])
    _need(isinstance(spec_meta, list), meta_path, "'spectra' must be a list")
    spectra: list[SpectrumSnapshot] = []
    for k, sm in enumerate(spec_meta):
        _need(isinstance(sm, dict), meta_path, f"spectrum {k} must be an object")
        seg_i = sm.get("segment")
        _need(
            isinstance(seg_i, int) and not isinstance(seg_i, bool) and 0 <= seg_i < len(segments),
            meta_path,
            f"spectrum {k}: segment out of range: {seg_i!r}",
        )
        t_k = sm.get("t")
        _need(
            isinstance(t_k, int | float) and not isinstance(t_k, bool),
            meta_path,
            f"spectrum {k}: t must be a number",
        )
        from core.manifold import spectrum_size

        size = spectrum_size(config, segments[seg_i].spec)
        eig = _array(spectra_arrays, f"eig{k}", (size,), spectra_path)
        label = sm.get("label", "")
        _need(isinstance(label, str), meta_path, f"spectrum {k}: label must be a string")
        spectra.append(SpectrumSnapshot(float(t_k), seg_i, eig, label))
    return spectra


# ----------------------------------------------------------------------------- reading


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a session's ``.npz`` (a bounded regular file, no link, no pickle)."""
    try:
        return load_npz(path, MAX_ARRAY_FILE_BYTES, follow=False)
    except FileReadError as e:
        raise SessionError(path, str(e)) from None


def _read_text(path: Path, max_bytes: int) -> str:
    try:
        return read_text(path, max_bytes, follow=False)
    except FileReadError as e:
        raise SessionError(path, str(e)) from None


def _array(
    arrays: Mapping[str, np.ndarray],
    name: str,
    shape: tuple[int | None, ...],
    where: Path,
    allow_nan: bool = False,
) -> np.ndarray:
    """Fetch a float64 array, check its shape (None = any) and finiteness."""
    if name not in arrays:
        raise SessionError(where, f"missing array {name!r}")
    a = arrays[name]
    if a.dtype.kind not in "fi":
        raise SessionError(where, f"array {name!r} has dtype {a.dtype}, expected float64")
    bad_shape = a.ndim != len(shape) or any(
        s is not None and s != n for s, n in zip(shape, a.shape, strict=True)
    )
    if bad_shape:
        want = "×".join("m" if s is None else str(s) for s in shape) or "scalar"
        raise SessionError(where, f"array {name!r} has shape {a.shape}, expected {want}")
    a = a.astype(np.float64)
    if not allow_nan and not np.all(np.isfinite(a)):
        raise SessionError(where, f"array {name!r} contains NaN or inf")
    return a


def _need(cond: bool, where: Path, message: str) -> None:
    if not cond:
        raise SessionError(where, message)
