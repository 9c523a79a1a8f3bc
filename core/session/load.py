"""Sessions: a run saved as a folder, written atomically, loaded with full validation.

Layout of a session folder (schema version :data:`SCHEMA_VERSION`)::

    meta.json        human-readable: format marker, schema, created/saved times, versions,
                     config (as a table), segments (one student spec each), spectrum
                     snapshot index, event log (pauses, refinements, surgery, interrupts),
                     summary, analysis, report, refined-point info
    config.toml      the config, the same as meta.json's (re-running it reproduces the run)
    trajectory.npz   per segment i: seg{i}_t (m,), seg{i}_theta (m, P_i), seg{i}_loss (m,),
                     seg{i}_grad_norm (m,) [‖∇L‖∞]; refined_theta (P,) when refined;
                     cmp_* when meta.json has a "comparison" (core.compare, validated there)
    spectra.npz      per snapshot k: eig{k} (P,) Hessian eigenvalues, ascending

A *segment* is a stretch of trajectory with one student spec: surgery (merging or
splitting neurons) changes P mid-session and starts a new segment.

Atomicity: :func:`save_session` writes the whole folder into a temporary sibling,
fsyncs every file and the folder, then swaps it into place with one
``renameat2(RENAME_EXCHANGE)`` (Linux) or ``rename`` (first save), so killing the
process at any instant leaves either the previous or the new complete session.
Where the exchange is unsupported, the old folder is first renamed to a backup
sibling ``.NAME.old-*`` that :func:`load_session` falls back to.

Bounded size: :class:`SessionRecorder` keeps at most ``2·max_points`` states per
segment — the first, a log-spaced subsample in t − t_start and the last
``keep_last`` — and always the final state.  With the defaults (max_points = 2000)
a 10⁶-step run of a P = 17 network stores ≤ 4000 × (17 + 3) × 8 B ≈ 0.64 MB of
trajectory, whatever the number of steps.

A killed saver leaves at most a temporary sibling ``.NAME.tmp-PID-*``; the next save
into the same parent removes those whose process is gone (and that hold only session
files).  A save through a symbolic link writes the folder it points to.

Loading never writes and never lets an exception other than :class:`SessionError`
escape: its message names the file and the problem (one line, values cut short).
Every read is bounded (:mod:`core.files`): regular files only, no symbolic links inside
the folder, size caps, strict JSON nested at most 64 deep, TOML at most 32; and every
stored field a reader uses is checked against the schemas below (:data:`REPORT_SCHEMA`,
:data:`SUMMARY_SCHEMA`, :data:`EVENT_SCHEMA`…), so a loaded session can be trusted.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import functools
import glob
import io
import json
import math
import os
import platform
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Config, ConfigError, config_to_dict, config_to_toml, parse_config
from core.files import (
    MAX_ARRAY_FILE_BYTES,
    MAX_CONFIG_BYTES,
    MAX_META_BYTES,
    FileReadError,
    load_json,
    load_npz,
    load_toml,
    one_line,
    read_text,
    short,
)
from core.networks import NetworkSpec

SCHEMA_VERSION = 3
FORMAT = "landscape-explorer-session"
META, CONFIG, TRAJECTORY, SPECTRA = "meta.json", "config.toml", "trajectory.npz", "spectra.npz"
SEGMENT_ARRAYS = ("t", "theta", "loss", "grad_norm")
#: Files a session folder may hold (a temporary folder holding only these is a saver's).
SESSION_FILES = (META, CONFIG, TRAJECTORY, SPECTRA)
#: Longest error message (values inside are cut to :data:`core.files.ECHO_CHARS`).
MAX_MESSAGE = 400


class SessionError(Exception):
    """A session that cannot be read or written; ``str()`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = one_line(path)
        self.message = short(" ".join(str(message).split()), MAX_MESSAGE)
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# ----------------------------------------------------------------------------- data model


@dataclass
class Segment:
    """Trajectory with one student spec: t (m,), theta (m, P), loss (m,), grad_norm (m,)."""

    spec: NetworkSpec
    t: np.ndarray
    theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass
class SpectrumSnapshot:
    """Hessian eigenvalues (P,), ascending, at time ``t`` in ``segment``; ``label``: "refined"…"""

    t: float
    segment: int
    eigenvalues: np.ndarray
    label: str = ""


@dataclass
class Session:
    """A loaded (or to-be-saved) session.  See the module docstring for the files."""

    config: Config
    segments: list[Segment]
    spectra: list[SpectrumSnapshot] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    analysis: dict | None = None
    report: dict | None = None
    refined: dict | None = None
    refined_theta: np.ndarray | None = None
    created: str = ""
    saved: str = ""
    versions: dict = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    path: Path | None = None
    #: a :class:`core.compare.Comparison` (``explorer compare``), or None
    comparison: Any = None

    @property
    def final_segment(self) -> Segment:
        return self.segments[-1]

    @property
    def final_spec(self) -> NetworkSpec:
        return self.segments[-1].spec

    @property
    def final_t(self) -> float:
        return float(self.segments[-1].t[-1])

    @property
    def final_theta(self) -> np.ndarray:
        return self.segments[-1].theta[-1]

    @property
    def final_loss(self) -> float:
        return float(self.segments[-1].loss[-1])

    @property
    def wall_seconds(self) -> float:
        return float(self.summary.get("wall_seconds", 0.0))


# ----------------------------------------------------------------------------- helpers


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def jsonable(obj: Any) -> Any:
    """Plain JSON data from NumPy/JAX arrays and scalars, tuples, dataclasses with ``to_json``.

    Non-finite floats become ``None`` (strict JSON has no NaN/inf).
    """
    if hasattr(obj, "to_json") and callable(obj.to_json):
        return jsonable(obj.to_json())
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, str | bool) or obj is None:
        return obj
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, list | tuple):
        arr = np.asarray(obj)
        return jsonable(arr.tolist()) if arr.ndim else jsonable(arr.item())
    if isinstance(obj, list | tuple | set):
        return [jsonable(x) for x in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return {k: jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    return str(obj)


def spec_to_json(spec: NetworkSpec) -> dict:
    return {
        "input_dim": spec.input_dim,
        "widths": list(spec.widths),
        "output_dim": spec.output_dim,
        "activations": [list(a) for a in spec.activations],
        "bias": list(spec.bias),
    }


def spec_from_json(d: Any) -> NetworkSpec:
    """Inverse of :func:`spec_to_json`; raises ``ValueError`` on anything malformed."""
    if not isinstance(d, Mapping):
        raise ValueError("spec must be an object")
    from core.activations import get_activation

    def ints(x: Any) -> list[int]:
        if not isinstance(x, list) or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in x
        ):
            raise ValueError("widths must be a list of integers")
        return x

    widths = ints(d["widths"])
    acts = d["activations"]
    if not isinstance(acts, list) or not all(
        isinstance(a, list) and all(isinstance(n, str) for n in a) for a in acts
    ):
        raise ValueError("activations must be lists of names")
    for layer in acts:
        for name in layer:
            get_activation(name)
    bias = d["bias"]
    if not isinstance(bias, list) or not all(isinstance(b, bool) for b in bias):
        raise ValueError("bias must be a list of booleans")
    for key in ("input_dim", "output_dim"):
        if not isinstance(d[key], int) or isinstance(d[key], bool):
            raise ValueError(f"{key} must be an integer")
    return NetworkSpec(
        d["input_dim"], tuple(widths), d["output_dim"], tuple(tuple(a) for a in acts), tuple(bias)
    )


def versions() -> dict[str, str]:
    """Versions of the project and the numerical stack, for the record."""
    import jax

    import core

    return {
        "project": core.__version__,
        "jax": jax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def subsample_indices(t: np.ndarray, n_log: int, n_last: int) -> np.ndarray:
    """Indices of a bounded subsample of a non-decreasing time series t (m,).

    Keeps index 0, the indices nearest to ``n_log`` log-spaced values of s = t − t[0] over
    (min positive s, s at the first of the last points], and the last ``n_last`` indices.
    Result is sorted and unique, of length ≤ 1 + n_log + n_last.
    """
    m = t.shape[0]
    if m <= 1 + n_log + n_last:
        return np.arange(m)
    head_end = m - n_last  # [0, head_end) is subsampled, [head_end, m) kept
    s = t[:head_end] - t[0]
    keep = [np.array([0]), np.arange(head_end, m)]
    pos = s[s > 0]
    if pos.size:
        targets = np.geomspace(pos.min(), s[-1], n_log)
        idx = np.clip(np.searchsorted(s, targets), 0, head_end - 1)
        # nearest of the two neighbours in log t
        left = np.clip(idx - 1, 0, head_end - 1)
        choose_left = np.abs(s[left] - targets) < np.abs(s[idx] - targets)
        keep.append(np.where(choose_left, left, idx))
    return np.unique(np.concatenate(keep))


# ----------------------------------------------------------------------------- recorder


def _locked(method: Callable) -> Callable:
    """Run a :class:`SessionRecorder` method under its lock (a signal watcher thread may
    save the recorder while the main thread is computing)."""

    @functools.wraps(method)
    def wrapper(self: SessionRecorder, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class _SegmentBuffer:
    def __init__(self, spec: NetworkSpec) -> None:
        self.spec = spec
        p = spec.n_params
        self.t = np.zeros(0)
        self.theta = np.zeros((0, p))
        self.loss = np.zeros(0)
        self.grad_norm = np.zeros(0)

    def append(self, t, theta, loss, grad_norm, max_points: int, keep_last: int) -> None:
        t = np.asarray(t, np.float64).reshape(-1)
        theta = np.asarray(theta, np.float64).reshape(t.shape[0], -1)
        if theta.shape[1] != self.spec.n_params:
            raise ValueError(
                f"theta has {theta.shape[1]} parameters, the current segment's spec has "
                f"{self.spec.n_params}; start a new segment after surgery"
            )
        loss = np.asarray(loss, np.float64).reshape(-1)
        grad_norm = np.asarray(grad_norm, np.float64).reshape(-1)
        if (
            len(self.t)
            and len(t)
            and t[0] == self.t[-1]
            and np.array_equal(theta[0], self.theta[-1])
        ):
            # the state already recorded (θ₀ saved before the first chunk repeats it)
            t, theta, loss, grad_norm = t[1:], theta[1:], loss[1:], grad_norm[1:]
        self.t = np.concatenate([self.t, t])
        self.theta = np.concatenate([self.theta, theta])
        self.loss = np.concatenate([self.loss, loss])
        self.grad_norm = np.concatenate([self.grad_norm, grad_norm])
        if self.t.shape[0] > 2 * max_points:
            idx = subsample_indices(self.t, max_points - keep_last - 1, keep_last)
            self.t, self.theta = self.t[idx], self.theta[idx]
            self.loss, self.grad_norm = self.loss[idx], self.grad_norm[idx]

    def segment(self) -> Segment:
        return Segment(
            self.spec, self.t.copy(), self.theta.copy(), self.loss.copy(), self.grad_norm.copy()
        )


class SessionRecorder:
    """Accumulates a run — trajectory chunks, events, spectra, results — and saves it.

    Usage::

        rec = SessionRecorder(config, spec)
        for chunk in run_dynamics(...):
            rec.append_chunk(chunk)
            rec.autosave(out_dir)          # at most every ``autosave_seconds``
        rec.add_event("refine", t=..., converged=True)
        rec.save(out_dir)

    Trajectories stay bounded (see the module docstring).  ``wall_seconds`` counts from
    construction plus ``wall_offset`` (time already spent in a resumed session).
    """

    def __init__(
        self,
        config: Config,
        spec: NetworkSpec,
        *,
        max_points: int = 2000,
        keep_last: int = 200,
        autosave_seconds: float = 10.0,
        created: str | None = None,
        wall_offset: float = 0.0,
    ) -> None:
        if max_points < keep_last + 10:
            raise ValueError(f"max_points must be ≥ keep_last + 10, got {max_points}")
        self.config = config
        self.max_points = max_points
        self.keep_last = keep_last
        self.autosave_seconds = autosave_seconds
        self.created = created or now_iso()
        self.wall_offset = wall_offset
        self._start = time.monotonic()
        self._last_save = -math.inf
        self._lock = threading.RLock()
        self._segments = [_SegmentBuffer(spec)]
        self.spectra: list[SpectrumSnapshot] = []
        self.events: list[dict] = []
        self.summary: dict = {}
        self.analysis: dict | None = None
        self.report: dict | None = None
        self.refined: dict | None = None
        self.refined_theta: np.ndarray | None = None
        self.comparison: Any = None  # core.compare.Comparison, kept as it is

    # -- building

    @classmethod
    def from_session(cls, session: Session, **kwargs: Any) -> SessionRecorder:
        """A recorder that continues ``session`` (same segments, events, spectra)."""
        rec = cls(
            session.config,
            session.segments[0].spec,
            created=session.created,
            wall_offset=session.wall_seconds,
            **kwargs,
        )
        rec._segments = []
        for seg in session.segments:
            buf = _SegmentBuffer(seg.spec)
            buf.append(seg.t, seg.theta, seg.loss, seg.grad_norm, rec.max_points, rec.keep_last)
            rec._segments.append(buf)
        rec.spectra = list(session.spectra)
        rec.events = [dict(e) for e in session.events]
        rec.summary = dict(session.summary)
        rec.comparison = session.comparison
        return rec

    @property
    def spec(self) -> NetworkSpec:
        """The current segment's student spec."""
        return self._segments[-1].spec

    @property
    def n_points(self) -> int:
        return sum(s.t.shape[0] for s in self._segments)

    def elapsed(self) -> float:
        """Wall seconds of this session so far (including a resumed session's)."""
        return self.wall_offset + time.monotonic() - self._start

    @_locked
    def append(self, t, theta, loss, grad_norm) -> None:
        """Append states: t (m,), theta (m, P), loss (m,), grad_norm (m,)."""
        self._segments[-1].append(t, theta, loss, grad_norm, self.max_points, self.keep_last)

    @_locked
    def append_chunk(self, chunk: Any) -> None:
        """Append a :class:`core.flow.Chunk` (its t, theta, loss, grad_norm)."""
        if len(chunk.t):
            self.append(chunk.t, chunk.theta, chunk.loss, chunk.grad_norm)
        self.summary["steps"] = int(self.summary.get("steps_offset", 0)) + int(chunk.steps)
        if chunk.done:
            self.summary["stop_reason"] = chunk.reason
            if chunk.message:
                self.summary["stop_message"] = chunk.message

    @_locked
    def start_segment(self, spec: NetworkSpec) -> None:
        """Begin a new segment with another student spec (after surgery)."""
        if len(self._segments[-1].t) == 0:
            self._segments[-1] = _SegmentBuffer(spec)
        else:
            self._segments.append(_SegmentBuffer(spec))

    @_locked
    def add_event(self, kind: str, t: float | None = None, **data: Any) -> dict:
        """Log an event (``kind`` e.g. "pause", "resume", "refine", "surgery", "interrupted")."""
        if t is None:
            t = self.last_t()
        event = {"kind": kind, "t": t, "wall": round(self.elapsed(), 3), "time": now_iso()}
        event.update(jsonable(data))
        self.events.append(jsonable(event))
        return event

    @_locked
    def add_spectrum(self, t: float, eigenvalues: Any, label: str = "") -> None:
        """Record Hessian eigenvalues (P,) of the current segment at time t ((F,), one per
        free dimension, for a constrained student: :func:`core.manifold.spectrum_size`)."""
        from core.manifold import spectrum_size

        eig = np.sort(np.asarray(eigenvalues, np.float64).reshape(-1))
        size = spectrum_size(self.config, self.spec)
        if eig.shape[0] != size:
            raise ValueError(f"spectrum has {eig.shape[0]} values, expected {size}")
        self.spectra.append(SpectrumSnapshot(float(t), len(self._segments) - 1, eig, label))

    @_locked
    def set_refined(self, theta: Any, **info: Any) -> None:
        """The refined critical point θ* (P,) of the current segment, with refine details."""
        theta = np.asarray(theta, np.float64).reshape(-1)
        if theta.shape[0] != self.spec.n_params:
            raise ValueError(
                f"refined θ has {theta.shape[0]} values, expected {self.spec.n_params}"
            )
        self.refined_theta = theta
        self.refined = {"segment": len(self._segments) - 1, **jsonable(info)}

    def last_t(self) -> float | None:
        for seg in reversed(self._segments):
            if len(seg.t):
                return float(seg.t[-1])
        return None

    # -- output

    @_locked
    def to_session(self) -> Session:
        segments = [b.segment() for b in self._segments]
        summary = dict(self.summary)
        summary["wall_seconds"] = round(self.elapsed(), 6)
        return Session(
            config=self.config,
            segments=segments,
            spectra=list(self.spectra),
            events=list(self.events),
            summary=summary,
            analysis=self.analysis,
            report=self.report,
            refined=self.refined,
            refined_theta=self.refined_theta,
            created=self.created,
            versions=versions(),
            comparison=self.comparison,
        )

    @_locked
    def save(self, path: str | Path) -> Path:
        """Atomically write the session to ``path`` (see :func:`save_session`)."""
        out = save_session(path, self.to_session())
        self._last_save = time.monotonic()
        return out

    def autosave(self, path: str | Path, force: bool = False) -> bool:
        """Save if ``autosave_seconds`` passed since the last save (or ``force``)."""
        if force or time.monotonic() - self._last_save >= self.autosave_seconds:
            self.save(path)
            return True
        return False


# ----------------------------------------------------------------------------- saving


def is_session_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a meta.json with the session format marker."""
    try:
        d = load_json(read_text(Path(path) / META, MAX_META_BYTES, follow=False))
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and d.get("format") == FORMAT


def session_target(path: str | Path) -> Path:
    """The folder a save to ``path`` writes: ``path`` itself, or the folder a symbolic
    link at ``path`` points to (the link stays).  A dangling link is refused."""
    p = Path(path).absolute()
    if p.is_symlink():
        if not p.exists():
            raise SessionError(p, "is a dangling symbolic link; refusing to write through it")
        p = p.resolve()
    return p


def check_writable_target(path: str | Path) -> None:
    """Raise :class:`SessionError` unless ``path`` is absent, an empty folder or a session.

    Missing parent folders are fine (:func:`save_session` makes them, as ``mkdir -p``)
    unless the nearest existing one is not a folder."""
    p = session_target(path)
    if not p.exists():
        ancestor = next(a for a in p.parents if a.exists())
        if not ancestor.is_dir():
            raise SessionError(p, f"{ancestor} is not a folder")
        return
    if not p.is_dir():
        raise SessionError(p, "exists and is not a folder; refusing to overwrite it")
    if any(p.iterdir()) and not is_session_dir(p):
        raise SessionError(p, "exists and is not a session folder; refusing to overwrite it")


def session_to_files(session: Session) -> dict[str, bytes]:
    """The bytes of every file of a session folder (validating shapes on the way)."""
    meta: dict[str, Any] = {
        "format": FORMAT,
        "schema": SCHEMA_VERSION,
        "created": session.created or now_iso(),
        "saved": now_iso(),
        "versions": session.versions or versions(),
        "config": config_to_dict(session.config),
        "segments": [],
        "spectra": [],
        "events": jsonable(session.events),
        "summary": jsonable(session.summary),
        "analysis": jsonable(session.analysis),
        "report": jsonable(session.report),
        "refined": jsonable(session.refined),
    }
    arrays: dict[str, np.ndarray] = {}
    if not session.segments:
        raise ValueError("a session needs at least one segment")
    for i, seg in enumerate(session.segments):
        m = len(seg)
        meta["segments"].append({"spec": spec_to_json(seg.spec), "n_points": m})
        for name in SEGMENT_ARRAYS:
            arrays[f"seg{i}_{name}"] = np.ascontiguousarray(getattr(seg, name), np.float64)
    if session.refined_theta is not None:
        arrays["refined_theta"] = np.asarray(session.refined_theta, np.float64)
    if session.comparison is not None:  # core.compare: meta + cmp_* arrays
        meta["comparison"], cmp_arrays = session.comparison.to_stored()
        arrays.update(cmp_arrays)
    spectra: dict[str, np.ndarray] = {}
    for k, snap in enumerate(session.spectra):
        meta["spectra"].append(
            {"t": jsonable(snap.t), "segment": snap.segment, "label": snap.label}
        )
        spectra[f"eig{k}"] = np.asarray(snap.eigenvalues, np.float64)
    files = {
        META: json.dumps(meta, indent=2, allow_nan=False).encode() + b"\n",
        CONFIG: config_to_toml(session.config).encode(),
        TRAJECTORY: _npz_bytes(arrays),
        SPECTRA: _npz_bytes(spectra),
    }
    return files


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _load_renameat2() -> Callable | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE).

    Returns False where the OS or file system does not support it.
    """
    if _renameat2 is None:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), f"{a} <-> {b}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_temp(entry: Path) -> bool:
    """Whether ``entry`` is a temporary ``.NAME.tmp-PID-RANDOM`` of a saver that died:
    its PID is gone (or is ours), and it is a link or a folder holding only session files."""
    try:
        pid = int(entry.name.rsplit(".tmp-", 1)[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    if pid != os.getpid() and _pid_alive(pid):
        return False
    try:
        st = entry.lstat()
        if stat.S_ISLNK(st.st_mode):
            return True
        if not stat.S_ISDIR(st.st_mode):
            return False
        return all(child.name in SESSION_FILES for child in entry.iterdir())
    except OSError:
        return False


_CLEANED_PARENTS: set[Path] = set()


def clean_stale_temps(folder: str | Path, name: str | None = None) -> None:
    """Remove temporary session folders left in ``folder`` by killed savers (never a
    session, never anything that holds other files): those of ``name``, or all."""
    try:
        entries = list(Path(folder).glob(f".{glob.escape(name) if name else '*'}.tmp-*"))
    except OSError:
        return
    for entry in entries:
        if _stale_temp(entry):
            if entry.is_symlink():
                entry.unlink(missing_ok=True)
            else:
                shutil.rmtree(entry, ignore_errors=True)


def save_session(path: str | Path, session: Session) -> Path:
    """Write ``session`` to the folder ``path`` atomically and return ``path``.

    Refuses (``SessionError``) to replace anything that is not a session folder or an
    empty folder; a symbolic link at ``path`` is written through (the folder it points
    to is replaced, the link stays).  Steps: write every file into
    ``.NAME.tmp-PID-RANDOM`` beside the target, fsync files and folder, then exchange
    it with the target in one atomic rename (or rename it into place for a first save),
    fsync the parent, and delete the previous version.  Temporary folders of savers that
    were killed are removed from the parent first.
    """
    p = session_target(path)
    check_writable_target(p)
    files = session_to_files(session)
    p.parent.mkdir(parents=True, exist_ok=True)
    # this folder's temporaries at every save; the parent's (a killed run beside it) at the
    # first save of this process there (a sweep's folder can hold 10⁵ runs: list it once)
    clean_stale_temps(p.parent, p.name)
    if p.parent not in _CLEANED_PARENTS:
        _CLEANED_PARENTS.add(p.parent)
        clean_stale_temps(p.parent)
    tmp = p.parent / f".{p.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        for name, data in files.items():
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        if p.exists() and not any(p.iterdir()):
            p.rmdir()  # an empty target folder: rename the new one into its place
        if not p.exists():
            os.rename(tmp, p)
        elif exchange_paths(tmp, p):
            pass  # tmp now holds the previous version
        else:
            # No atomic exchange: keep the old version as a backup sibling until the new
            # one is in place; load_session falls back to it if we die in between.
            backup = p.parent / f".{p.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.rename(p, backup)
            os.rename(tmp, p)
            _fsync_dir(p.parent)
            shutil.rmtree(backup, ignore_errors=True)
        _fsync_dir(p.parent)
    finally:
        if os.path.lexists(tmp):
            if tmp.is_symlink():
                tmp.unlink()
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    return Path(path).absolute()


# ----------------------------------------------------------------------------- loading


def _migrate_1_to_2(meta: dict, arrays: dict) -> tuple[dict, dict]:
    """Schema 1 held one trajectory (t, theta, loss, grad_norm) for the config's student.

    Schema 2 has segments (one spec each) so that surgery can change the width.
    """
    cfg = parse_config(meta["config"], "meta.json", base_dir=Path.cwd())
    meta = dict(meta)
    n = int(np.asarray(arrays["t"]).shape[0]) if "t" in arrays else 0
    meta["segments"] = [{"spec": spec_to_json(cfg.student_spec()), "n_points": n}]
    meta.setdefault("spectra", [])
    meta.setdefault("refined", None)
    meta.setdefault("report", None)
    meta["schema"] = 2
    arrays = dict(arrays)
    for name in SEGMENT_ARRAYS:
        if name in arrays:
            arrays[f"seg0_{name}"] = arrays.pop(name)
    return meta, arrays


def _migrate_2_to_3(meta: dict, arrays: dict) -> tuple[dict, dict]:
    """Schema 3 stores canonical activation names, where ``g`` is MLPGradientFlow's
    sigmoid(4z) + softplus(z); before, ``g`` was an alias of ``erf``.  The rename itself is
    :func:`_legacy_activations`, applied to every stored config before any migration."""
    return {**meta, "schema": 3}, arrays


def _legacy_activations(table: Any) -> Any:
    """A stored config mapping (schema < 3) with the names of
    :data:`core.spec.LEGACY_ALIASES` replaced by what they meant then (``g`` → ``erf``)."""
    from core.spec import LEGACY_ALIASES

    if not isinstance(table, dict):
        return table

    def rename(v: Any) -> Any:
        if isinstance(v, str):
            return LEGACY_ALIASES.get(v, v)
        return [rename(x) for x in v] if isinstance(v, list) else v

    out = dict(table)
    for name in ("teacher", "student"):
        sub = out.get(name)
        if isinstance(sub, dict) and "activation" in sub:
            out[name] = {**sub, "activation": rename(sub["activation"])}
    return out


#: schema version → function upgrading (meta, arrays) to the next version.
MIGRATIONS: dict[int, Callable[[dict, dict], tuple[dict, dict]]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}


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


# ----------------------------------------------------------------------------- stored fields

#: Schemas of the JSON records of meta.json.  A schema is a kind name (below), a dict
#: ``{key: schema}`` (an object; a trailing ``!`` on the key marks it required) or a
#: one-element list ``[schema]`` (a list of such).  Kinds: ``num`` (finite number),
#: ``count`` (integer ≥ 0), ``seconds`` (number ≥ 0), ``int``, ``str``, ``bool``, ``obj``
#: (any object), ``list`` (any list), ``nums`` (list of numbers/null), ``ints``,
#: ``params`` (name → nested lists of numbers), ``str-map`` (name → string); ``?`` after
#: a kind also allows null (non-finite floats are stored as null).
SPECTRUM_SCHEMA = {"eigenvalues!": "nums", "index!": "count", "n_zero": "count", "tol": "num?"}
CHANNEL_SCHEMA = {
    "neurons!": "ints",
    "epsilon": "num?",
    "c": "num?",
    "A": "num?",
    "w": "nums",
    "delta": "nums",
    "glu_error": "num?",
    "activation": "str?",
}
NEURON_SCHEMA = {
    "index": "count",
    "w": "nums",
    "b": "num?",
    "a": "nums",
    "norm": "num?",
    "nearest_teacher": "int?",
    "cosine": "num?",
    "role": "str?",
}
POINT_SCHEMA = {
    "t": "num?",
    "loss!": "num?",
    "grad_inf_norm!": "num?",
    "params": "params",
    "rmse": "num?",  # core.problem.Problem.fit_metrics, beside the loss (format_report reads it)
    "accuracy": "num?",
}
REFINED_POINT_SCHEMA = {
    **POINT_SCHEMA,
    "iterations": "count?",
    "converged": "bool?",
    "reason": "str?",
    "method": "str?",
    "seconds": "num?",
}
ANALYSIS_SCHEMA = {
    "spectrum": SPECTRUM_SCHEMA,
    "classification": "str?",
    "channels": [CHANNEL_SCHEMA],
    "neurons": [NEURON_SCHEMA],
    "grad_inf_norm": "num?",
    "loss": "num?",
}
REPORT_SCHEMA = {
    "final!": {**{k: v for k, v in POINT_SCHEMA.items() if k != "t"}, "t!": "num"},
    "refined": (REFINED_POINT_SCHEMA, "null"),
    "spectrum": SPECTRUM_SCHEMA,
    "classification": "str?",
    "channels": [CHANNEL_SCHEMA],
    "neurons": [NEURON_SCHEMA],
    "teacher": {"kind": "str", "params": "params"},
    "wall_seconds": "seconds?",
    "stop_reason": "str?",
    "steps": "count?",
    "config": "obj",
    "partial": "bool",
    "phases": ["obj"],
    "analysed": {"point!": "str", "t": "num?", "note": "str"},
}
REFINED_SCHEMA = {
    "segment": "count",
    "t": "num?",
    "loss": "num?",
    "grad_inf_norm": "num?",
    "iterations": "count?",
    "converged": "bool?",
    "reason": "str?",
    "method": "str?",
    "seconds": "num?",
}
EVENT_SCHEMA = {"kind!": "str", "t": "num?", "wall": "seconds?", "time": "str"}
SUMMARY_SCHEMA = {
    "steps": "count",
    "steps_offset": "count",
    "wall_seconds": "seconds",
    "stop_reason": "str?",
    "stop_message": "str?",
    "t_final": "num?",
    "final_loss": "num?",
    "final_grad_inf_norm": "num?",
    "refined_loss": "num?",
    "classification": "str?",
}

_KIND_TEXT = {
    "num": "a finite number",
    "count": "an integer ≥ 0",
    "seconds": "a number ≥ 0",
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "obj": "an object",
    "list": "a list",
    "nums": "a list of numbers",
    "ints": "a list of integers",
    "params": "an object of named (nested) lists of numbers",
    "str-map": "an object of strings",
    "null": "null",
}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    return _is_int(x) and abs(x) <= 2**1000  # an int that converts to a finite float


def _numeric_tree(x: Any) -> bool:
    if isinstance(x, list):
        return all(_numeric_tree(v) for v in x)
    return x is None or _is_num(x)


_KIND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "num": _is_num,
    "count": lambda x: _is_int(x) and x >= 0,
    "seconds": lambda x: _is_num(x) and x >= 0,
    "int": _is_int,
    "str": lambda x: isinstance(x, str),
    "bool": lambda x: isinstance(x, bool),
    "obj": lambda x: isinstance(x, dict),
    "list": lambda x: isinstance(x, list),
    "nums": lambda x: isinstance(x, list) and all(v is None or _is_num(v) for v in x),
    "ints": lambda x: isinstance(x, list) and all(_is_int(v) for v in x),
    "params": lambda x: (
        isinstance(x, dict) and all(isinstance(v, list) and _numeric_tree(v) for v in x.values())
    ),
    "str-map": lambda x: isinstance(x, dict) and all(isinstance(v, str) for v in x.values()),
    "null": lambda x: x is None,
}


def _matches(value: Any, schema: Any) -> bool:
    """Whether ``value`` has the top-level shape of ``schema`` (not its members)."""
    if isinstance(schema, tuple):
        return any(_matches(value, s) for s in schema)
    if isinstance(schema, dict):
        return isinstance(value, dict)
    if isinstance(schema, list):
        return isinstance(value, list)
    if schema.endswith("?"):
        return value is None or _KIND_CHECKS[schema[:-1]](value)
    return _KIND_CHECKS[schema](value)


def _describe(schema: Any) -> str:
    if isinstance(schema, tuple):
        return " or ".join(_describe(s) for s in schema)
    if isinstance(schema, dict):
        return "an object"
    if isinstance(schema, list):
        return "a list"
    if schema.endswith("?"):
        return f"{_KIND_TEXT[schema[:-1]]} or null"
    return _KIND_TEXT[schema]


def check_fields(
    value: Any, schema: Any, name: str, where: Path, *, nullable: bool = False
) -> None:
    """Raise :class:`SessionError` (``where: name.field: must be …, got …``) unless
    ``value`` follows ``schema`` (see :data:`REPORT_SCHEMA`); ``nullable`` allows None."""
    if nullable and value is None:
        return
    if not _matches(value, schema):
        got = short(json.dumps(value) if _is_num(value) or value is None else repr(value))
        raise SessionError(where, f"{name}: must be {_describe(schema)}, got {got}")
    if isinstance(schema, tuple):
        for s in schema:
            if _matches(value, s):
                check_fields(value, s, name, where)
                return
    elif isinstance(schema, list):
        for i, item in enumerate(value):
            check_fields(item, schema[0], f"{name}[{i}]", where)
    elif isinstance(schema, dict):
        for name_key, sub in schema.items():
            key = name_key.rstrip("!")
            required = name_key.endswith("!")
            if key not in value:
                if required:
                    raise SessionError(where, f"{name}.{key}: missing")
                continue
            check_fields(value[key], sub, f"{name}.{key}", where)


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

    arrays = _read_npz(p / TRAJECTORY)
    spectra_arrays = _read_npz(p / SPECTRA) if (p / SPECTRA).exists() or schema >= 2 else {}
    stored_schema = schema
    if stored_schema < 3:  # activation names meant something else then (before migrating)
        meta = {**meta, "config": _legacy_activations(meta.get("config"))}

    while schema < SCHEMA_VERSION:
        try:
            meta, arrays = MIGRATIONS[schema](meta, arrays)
        except ConfigError as e:
            raise SessionError(meta_path, f"config: {e.field}: {e.message}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise SessionError(meta_path, f"cannot migrate schema {schema}: {e}") from None
        schema = meta["schema"]

    # -- config: config.toml is what a user re-runs; it must agree with meta.json
    cfg_path = p / CONFIG
    try:
        cfg_map = load_toml(_read_text(cfg_path, MAX_CONFIG_BYTES))
    except ValueError as e:  # TOMLDecodeError, or nested too deep
        raise SessionError(cfg_path, f"invalid TOML ({e})") from None
    if stored_schema < 3:
        cfg_map = _legacy_activations(cfg_map)
    try:
        config = parse_config(cfg_map, str(cfg_path), base_dir=p)
    except ConfigError as e:
        raise SessionError(cfg_path, f"config no longer valid: {e.field}: {e.message}") from None
    _need(isinstance(meta.get("config"), dict), meta_path, "missing 'config' table")
    try:
        meta_config = parse_config(meta["config"], str(meta_path), base_dir=p)
    except ConfigError as e:
        raise SessionError(meta_path, f"config no longer valid: {e.field}: {e.message}") from None
    _need(
        meta_config == config,
        cfg_path,
        f"differs from the config recorded in {META} (edited by hand?)",
    )

    # -- segments
    seg_meta = meta.get("segments")
    _need(
        isinstance(seg_meta, list) and len(seg_meta) > 0,
        meta_path,
        "'segments' must be a non-empty list",
    )
    traj_path = p / TRAJECTORY
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

    # -- refined point
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

    # -- spectra
    spec_meta = meta.get("spectra", [])
    _need(isinstance(spec_meta, list), meta_path, "'spectra' must be a list")
    spectra: list[SpectrumSnapshot] = []
    spectra_path = p / SPECTRA
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
