"""The sweep file and its expansion: one base config, a grid of overrides, run names.

A sweep file (DESIGN.md "Sweep", contract)::

    base = "config.toml"      # a config file, relative to the sweep file (optional:
                              # without it the built-in default config is the base)
    [dynamics]                # optional fixed overrides: any config table (or ``seed``)
    t_max = 1e4
    [grid]                    # the cartesian product of these lists; dotted keys reach
    seed = [1, 2, 3, 4]       # into tables; TOML sub-tables ([grid.student]) work too
    "student.widths" = [[2], [3]]

expands to ``∏_k len(grid[k])`` runs (first key varies slowest, as in
``itertools.product``).  Each run's config is base ← fixed overrides ← grid values,
validated with :func:`core.config.parse_config`; any problem is a :class:`SweepError`
(a :class:`~core.config.ConfigError`) naming the sweep file, the grid key and the value,
raised before anything runs.  Relative ``teacher.path`` and ``data.path`` values resolve
against the file that sets them (the base config, or the sweep file for overrides).

Run names are derived from the grid values alone (``seed=1_student.widths=2``), so
extending a grid reuses the runs already finished; a short hash disambiguates names
that would collide or be too long.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import (
    Config,
    ConfigError,
    config_to_dict,
    default_config,
    load_toml_file,
    parse_config,
    read_toml_mapping,
)
from core.files import short

CONFIG_KEYS = ("seed", "teacher", "student", "data", "dynamics", "refine")
SWEEP_KEYS = ("base", "grid", *CONFIG_KEYS)
SEED_KEY = "seed"
MAX_RUNS = 100_000
MAX_NAME = 120


class SweepError(ConfigError):
    """A sweep problem: ``str()`` is ``"<sweep file>: <field>: <problem>"`` on one line."""


@dataclass(frozen=True)
class SweepRun:
    """One grid point.

    Attributes:
        name: folder name of its session under the sweep's output folder.
        values: ((grid key, value), …) in grid order.
        config: the validated config of the run.
    """

    name: str
    values: tuple[tuple[str, Any], ...]
    config: Config

    @property
    def setting(self) -> tuple[tuple[str, Any], ...]:
        """The grid values except the seed: runs of one setting differ only by seed."""
        return tuple((k, v) for k, v in self.values if k != SEED_KEY)


@dataclass(frozen=True)
class Sweep:
    """An expanded, validated sweep: ``keys`` (grid keys, in order) and ``runs``."""

    source: str
    keys: tuple[str, ...]
    runs: tuple[SweepRun, ...]

    @property
    def setting_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.keys if k != SEED_KEY)


# ----------------------------------------------------------------------------- parsing


def load_sweep(path: str | Path) -> Sweep:
    """Read, expand and validate a sweep TOML file (raises :class:`SweepError`)."""
    return load_toml_file(path, parse_sweep, SweepError)


def parse_sweep(
    mapping: Mapping[str, Any], source: str = "<sweep>", base_dir: str | Path | None = None
) -> Sweep:
    """Expand and validate a sweep mapping; ``base_dir`` resolves ``base`` (default: cwd)."""
    base_dir = Path.cwd() if base_dir is None else Path(base_dir)
    if not isinstance(mapping, Mapping):
        raise SweepError(source, None, "a sweep must be a table")
    for key in mapping:
        if key not in SWEEP_KEYS:
            raise SweepError(source, str(key), f"unknown key (known: {', '.join(SWEEP_KEYS)})")
    base = _base_mapping(mapping.get("base"), source, base_dir)
    for key in CONFIG_KEYS:
        if key in mapping:
            value = copy.deepcopy(mapping[key])
            if key != SEED_KEY and isinstance(value, Mapping):
                value = _absolute_paths(value, key, base_dir)
                table = base.get(key, {})
                base[key] = {**table, **value} if isinstance(table, Mapping) else value
            else:
                base[key] = value
    grid = flatten_grid(mapping.get("grid", {}), source)
    keys = tuple(grid)
    n_runs = math.prod(len(v) for v in grid.values())  # counted before anything is built
    if n_runs > MAX_RUNS:
        raise SweepError(source, "grid", f"{n_runs} runs is too many (≤ {MAX_RUNS})")
    points = expand_grid(grid)
    names = run_names(points)
    runs = []
    for i, (point, name) in enumerate(zip(points, names, strict=True)):
        m = copy.deepcopy(base)
        for key, value in point.items():
            try:
                m = set_dotted(m, key, _absolute_path_value(key, value, base_dir))
            except ValueError as e:
                raise SweepError(source, f"grid.{key}", str(e)) from None
        try:
            config = parse_config(m, source, base_dir=base_dir)
        except ConfigError as e:
            raise _grid_error(source, e, point, i, len(points)) from None
        runs.append(SweepRun(name, tuple(point.items()), config))
    return Sweep(source, keys, tuple(runs))


def _base_mapping(base: Any, source: str, base_dir: Path) -> dict[str, Any]:
    """The base config as a raw TOML mapping (validated), with absolute ``teacher.path``
    and ``data.path`` (relative ones name files beside the base config)."""
    if base is None:
        return config_to_dict(default_config())
    if not isinstance(base, str) or not base:
        raise SweepError(source, "base", f"must be a config file name, got {short(repr(base))}")
    path = (base_dir / base).resolve()

    def error(problem: str) -> SweepError:
        where = f" (relative to {base_dir})" if problem == "file not found" else ""
        return SweepError(source, "base", f"{short(base)}: {problem}{where}")

    raw = read_toml_mapping(path, error)
    for name in _PATH_TABLES:
        if isinstance(raw.get(name), Mapping):
            raw[name] = _absolute_paths(raw[name], name, path.parent)
    return raw


#: The tables whose ``path`` names a file relative to the file that sets it, and whether
#: a symbolic link there is followed: config refuses a linked data file (it names the link
#: then, not its target), so only the data file's folder is resolved.
_PATH_TABLES = {"teacher": True, "data": False}


def _absolute(raw: str, folder: Path, *, follow: bool) -> str:
    """``raw`` (``~`` expanded) made absolute against ``folder``; as given where it cannot
    be resolved (a link loop…): config then says what is wrong with it."""
    p = Path(raw).expanduser()
    p = p if p.is_absolute() else folder / p
    try:
        return str(p.resolve() if follow else p.parent.resolve() / p.name)
    except (OSError, RuntimeError):
        return str(p)


def _absolute_paths(table: Mapping, name: str, folder: Path) -> dict:
    """A copy of the config table ``name`` with its file ``path`` absolute."""
    out = dict(table)
    if name in _PATH_TABLES and isinstance(out.get("path"), str) and out["path"]:
        out["path"] = _absolute(out["path"], folder, follow=_PATH_TABLES[name])
    return out


def _absolute_path_value(key: str, value: Any, folder: Path) -> Any:
    """A grid value with the file path it sets (``teacher.path``, a ``data`` table…) absolute."""
    name, _, rest = key.partition(".")
    if name in _PATH_TABLES and rest == "path" and isinstance(value, str) and value:
        return _absolute(value, folder, follow=_PATH_TABLES[name])
    if not rest and isinstance(value, Mapping):
        return _absolute_paths(value, name, folder)
    return value


def _grid_error(source: str, e: ConfigError, point: Mapping, i: int, n: int) -> SweepError:
    """Re-word a config error of run ``i`` to name the grid key (and value) that caused it."""
    field = e.field or ""
    for key, value in point.items():
        if field == key or field.startswith((key + ".", key + "[")) or key.startswith(field + "."):
            where = "" if field == key else f"{field}: "
            return SweepError(source, f"grid.{key}", f"value {_show(value)}: {where}{e.message}")
    combo = ", ".join(f"{k} = {_show(v)}" for k, v in point.items())
    if not point:
        return SweepError(source, e.field, e.message)
    return SweepError(
        source, "grid", f"run {i + 1} of {n} ({combo}): {field + ': ' if field else ''}{e.message}"
    )


def _show(value: Any) -> str:
    return short(json.dumps(value, default=str) if not isinstance(value, str) else repr(value))


def flatten_grid(grid: Any, source: str = "<sweep>") -> dict[str, list]:
    """``{dotted key: non-empty list of values}`` from the ``[grid]`` table.

    Sub-tables are flattened (``[grid.student] widths = [...]`` ≡ ``"student.widths"``).
    """
    if not isinstance(grid, Mapping):
        raise SweepError(source, "grid", f"must be a table, got {_show(grid)}")
    out: dict[str, list] = {}

    def walk(table: Mapping, prefix: str) -> None:
        for key, value in table.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, Mapping):
                walk(value, dotted + ".")
                continue
            if not isinstance(value, list) or not value:
                msg = f"must be a non-empty list of values, got {_show(value)}"
                raise SweepError(source, f"grid.{dotted}", msg)
            if len(value) > MAX_RUNS:
                msg = f"{len(value)} values is too many (≤ {MAX_RUNS} runs in all)"
                raise SweepError(source, f"grid.{dotted}", msg)
            seen: set[str] = set()  # canonical JSON of each value: linear, not quadratic
            for v in value:
                canon = json.dumps(v, sort_keys=True, default=str)
                if canon in seen:
                    raise SweepError(source, f"grid.{dotted}", f"value {_show(v)} appears twice")
                seen.add(canon)
            head = dotted.split(".")[0]
            if head not in CONFIG_KEYS:
                msg = f"unknown config key {head!r} (known: {', '.join(CONFIG_KEYS)})"
                raise SweepError(source, f"grid.{dotted}", msg)
            if dotted in out:
                raise SweepError(source, f"grid.{dotted}", "given twice")
            out[dotted] = value

    walk(grid, "")
    return out


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid``'s value lists, first key slowest.

    ``expand_grid({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]``;
    an empty grid gives one point ``{}``.
    """
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def set_dotted(mapping: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``mapping`` with ``key`` (``"a.b.c"``) set to ``value``; tables are created.

    Raises ``ValueError`` when a prefix of the key holds a non-table.
    """
    out = dict(mapping)
    head, _, rest = key.partition(".")
    if not rest:
        out[head] = value
        return out
    inner = out.get(head, {})
    if not isinstance(inner, Mapping):
        raise ValueError(f"{head} is not a table")
    out[head] = set_dotted(inner, rest, value)
    return out


# ----------------------------------------------------------------------------- names


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _slug(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _UNSAFE.sub("-", value).strip("-") or "-"
    if isinstance(value, list | tuple):
        return "x".join(_slug(v) for v in value) or "empty"
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _hash(point: Mapping[str, Any]) -> str:
    canon = json.dumps(list(point.items()), sort_keys=False, default=str)
    return hashlib.sha1(canon.encode()).hexdigest()[:10]


def run_name(point: Mapping[str, Any]) -> str:
    """Readable folder name of a grid point: ``key=value`` pairs joined by ``_``.

    Lists join with ``x`` (``student.widths=2x3``); characters outside ``[A-Za-z0-9._+-]``
    become ``-``.  The empty point is ``"run"``.
    """
    if not point:
        return "run"
    return "_".join(f"{k}={_slug(v)}" for k, v in point.items())


def run_names(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """Unique names for ``points``: :func:`run_name`, plus ``-<hash>`` where names collide
    or exceed :data:`MAX_NAME` characters (the hash is of the values, so it is stable)."""
    names = [run_name(p) for p in points]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    out = []
    for n, p in zip(names, points, strict=True):
        if counts[n] > 1 or len(n) > MAX_NAME:
            n = f"{n[: MAX_NAME - 11]}-{_hash(p)}"
        out.append(n)
    if len(set(out)) != len(out):  # only on a hash collision of distinct values
        raise ValueError("run names collide; rename grid values")
    return out
