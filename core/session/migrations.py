"""Older session schemas upgraded in memory when loaded (never rewritten on disk).

Schema 1 → 2: one trajectory becomes segment 0.  Schema 2 → 3: the activation ``g``,
once an alias of ``erf``, is now MLPGradientFlow's sigmoid(4z) + softplus(z), so a stored
config of schema < 3 reads ``g`` as ``erf`` (:func:`legacy_config`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.config import ConfigError, parse_config
from core.session.layout import SCHEMA_VERSION, SEGMENT_ARRAYS, spec_to_json
from core.session.model import SessionError


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
    :func:`legacy_config`, applied to every stored config before any migration."""
    return {**meta, "schema": 3}, arrays


def legacy_config(table: Any, schema: int) -> Any:
    """A config mapping stored with schema version ``schema``, in today's names: before
    schema 3, the names of :data:`core.spec.LEGACY_ALIASES` are replaced by what they meant
    then (``g`` → ``erf``); from 3 on, ``table`` itself."""
    from core.spec import LEGACY_ALIASES

    if schema >= 3 or not isinstance(table, dict):
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


def upgrade(meta: dict, arrays: dict, where: Path) -> tuple[dict, dict]:
    """``meta`` (its ``"schema"`` a known version) and the trajectory ``arrays`` upgraded to
    :data:`SCHEMA_VERSION` through :data:`MIGRATIONS`; a migration that fails raises
    :class:`SessionError` at ``where`` (meta.json)."""
    schema = meta["schema"]
    if schema < 3:  # activation names meant something else then (renamed before migrating)
        meta = {**meta, "config": legacy_config(meta.get("config"), schema)}
    while schema < SCHEMA_VERSION:
        try:
            meta, arrays = MIGRATIONS[schema](meta, arrays)
        except ConfigError as e:
            raise SessionError(where, f"config: {e.field}: {e.message}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise SessionError(where, f"cannot migrate schema {schema}: {e}") from None
        schema = meta["schema"]
    return meta, arrays
