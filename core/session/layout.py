"""The files of a session folder and the bytes each holds: names, schema version, encoding.

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

Strict JSON has no NaN or inf: :func:`jsonable` stores non-finite floats as null.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import platform
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from core.config import config_to_dict, config_to_toml
from core.networks import NetworkSpec

if TYPE_CHECKING:
    from core.session.model import Session

SCHEMA_VERSION = 3
FORMAT = "landscape-explorer-session"
META, CONFIG, TRAJECTORY, SPECTRA = "meta.json", "config.toml", "trajectory.npz", "spectra.npz"
SEGMENT_ARRAYS = ("t", "theta", "loss", "grad_norm")
#: Files a session folder may hold (a temporary folder holding only these is a saver's).
SESSION_FILES = (META, CONFIG, TRAJECTORY, SPECTRA)


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
    """The spec as JSON; ``output`` (the output activation) only when it is not linear."""
    out = {
        "input_dim": spec.input_dim,
        "widths": list(spec.widths),
        "output_dim": spec.output_dim,
        "activations": [list(a) for a in spec.activations],
        "bias": list(spec.bias),
    }
    if not spec.linear_output:
        out["output"] = spec.output
    return out


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
    output = d.get("output", "identity")
    if not isinstance(output, str) or get_activation(output).name != output:
        raise ValueError("output must be a canonical activation name")
    return NetworkSpec(
        d["input_dim"], tuple(widths), d["output_dim"], tuple(tuple(a) for a in acts), tuple(bias),
        output,
    )  # fmt: skip


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
