"""Sweeps: one base config, a grid of overrides, one run (session) per grid point.

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
raised before anything runs.  Relative ``teacher.path`` values resolve against the file
that sets them (the base config, or the sweep file for overrides).

Run names are derived from the grid values alone (``seed=1_student.widths=2``), so
extending a grid reuses the runs already finished; a short hash disambiguates names
that would collide or be too long.

Outcomes (per run, for the summary):

* ``zero-loss``   — the loss at the analysed point (the refined point if any, else the
  end of the dynamics) is below :data:`ZERO_LOSS` = 1e-20 (a global minimum of an
  expressible target, up to round-off: losses of exact interpolants are ~1e-30);
* ``minimum``     — classified "minimum" at a finite loss ≥ 1e-20;
* ``saddle``, ``channel`` (a channel to infinity), ``unconverged`` — the classification;
* ``failed``      — the run raised (or its worker died more often than the scheduler
  allows); its row says why;
* ``pending``     — not run yet, or interrupted before its final report (a rerun of the
  sweep runs it).

This module is pure (no Dask); :mod:`explorer.sweep_runner` executes sweeps.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import itertools
import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Config, ConfigError, config_to_dict, default_config, parse_config
from core.files import FileReadError, read_toml, short, write_bytes_atomic

ZERO_LOSS = 1e-20
OUTCOMES = ("zero-loss", "minimum", "saddle", "channel", "unconverged", "failed", "pending")
CONFIG_KEYS = ("seed", "teacher", "student", "data", "dynamics", "refine")
SWEEP_KEYS = ("base", "grid", *CONFIG_KEYS)
SEED_KEY = "seed"
MAX_RUNS = 100_000
MAX_NAME = 120
SUMMARY_CSV = "summary.csv"
SETTINGS_CSV = "settings.csv"
LOCKS_DIR = ".locks"
#: Per-run columns of summary.csv after ``run`` and the grid keys (the contract's
#: ``classification``, ``final_loss``, ``wall_seconds`` first).
RUN_COLUMNS = (
    "classification",
    "final_loss",
    "wall_seconds",
    "outcome",
    "analysed_loss",
    "refined_loss",
    "morse_index",
    "stop_reason",
    "error",
    "rmse",
    "accuracy",
)


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
    p = Path(path)
    src = str(path)
    if not p.is_file():
        raise SweepError(src, None, "file not found" if not p.exists() else "not a file")
    try:  # bounded, regular files only, nesting capped (core.files)
        mapping = read_toml(p)
    except FileReadError as e:
        raise SweepError(src, None, str(e)) from None
    return parse_sweep(mapping, src, base_dir=p.parent)


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
                value = _absolute_teacher_path(value, key, base_dir)
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
                m = set_dotted(m, key, _absolute_teacher_path_value(key, value, base_dir))
            except ValueError as e:
                raise SweepError(source, f"grid.{key}", str(e)) from None
        try:
            config = parse_config(m, source, base_dir=base_dir)
        except ConfigError as e:
            raise _grid_error(source, e, point, i, len(points)) from None
        runs.append(SweepRun(name, tuple(point.items()), config))
    return Sweep(source, keys, tuple(runs))


def _base_mapping(base: Any, source: str, base_dir: Path) -> dict[str, Any]:
    """The base config as a raw TOML mapping (validated), with absolute ``teacher.path``."""
    if base is None:
        return config_to_dict(default_config())
    if not isinstance(base, str) or not base:
        raise SweepError(source, "base", f"must be a config file name, got {short(repr(base))}")
    path = (base_dir / base).resolve()
    if not path.is_file():
        raise SweepError(source, "base", f"{short(base)}: file not found (relative to {base_dir})")
    try:
        raw = read_toml(path)
    except FileReadError as e:
        raise SweepError(source, "base", f"{short(base)}: {e}") from None
    teacher = raw.get("teacher")
    if isinstance(teacher, Mapping):
        raw["teacher"] = _absolute_teacher_path(teacher, "teacher", path.parent)
    return raw


def _absolute_teacher_path(table: Mapping, name: str, folder: Path) -> dict:
    out = dict(table)
    if name == "teacher" and isinstance(out.get("path"), str):
        out["path"] = str((folder / out["path"]).resolve())
    return out


def _absolute_teacher_path_value(key: str, value: Any, folder: Path) -> Any:
    if key == "teacher.path" and isinstance(value, str):
        return str((folder / value).resolve())
    if key == "teacher" and isinstance(value, Mapping):
        return _absolute_teacher_path(value, "teacher", folder)
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


# ----------------------------------------------------------------------------- outcomes


def outcome(classification: str | None, loss: float | None) -> str:
    """The run's outcome (see the module docstring); ``loss`` at the analysed point."""
    if classification is None:
        return "failed"
    if loss is not None and math.isfinite(loss) and loss < ZERO_LOSS:
        return "zero-loss"
    return classification if classification in OUTCOMES else "unconverged"


def _float(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v


def run_row(run: SweepRun, session: Any = None, error: str = "") -> dict[str, Any]:
    """The summary.csv row of ``run`` from its loaded session.

    Without a session, or with one that has no final report, the row is "failed" when
    ``error`` (why) is given, else "pending".

    ``final_loss`` is the loss at the end of the dynamics, ``refined_loss`` after
    refinement (empty without), ``analysed_loss`` the loss at the analysed point (the
    refined one if any, else the end of the dynamics: what ``outcome`` is judged on),
    ``morse_index`` the count of negative Hessian eigenvalues,
    ``rmse`` / ``accuracy`` (cross-entropy) those of the report at the analysed point.
    """
    row: dict[str, Any] = {"run": run.name, **dict(run.values)}
    report = None if session is None else session.report
    if report is None:
        row.update({c: None for c in RUN_COLUMNS})
        row["outcome"] = "failed" if error else "pending"
        row["error"] = error or None
        if session is not None:
            row["final_loss"] = session.final_loss
            row["wall_seconds"] = session.wall_seconds
            row["stop_reason"] = session.summary.get("stop_reason")
        return row
    analysis = session.analysis or {}
    refined = report.get("refined") or {}
    final_loss = _float(report["final"]["loss"])
    loss = _float(analysis.get("loss"))
    if loss is None:
        loss = _float(refined.get("loss")) if refined else final_loss
    cls = report.get("classification")
    row.update(
        {
            "classification": cls,
            "final_loss": final_loss,
            "wall_seconds": _float(report.get("wall_seconds")),
            "outcome": outcome(cls, loss),
            "analysed_loss": loss,
            "refined_loss": _float(refined.get("loss")) if refined else None,
            "morse_index": (report.get("spectrum") or {}).get("index"),
            "stop_reason": report.get("stop_reason"),
            "error": error,
            "rmse": _float((refined or report["final"]).get("rmse")),
            "accuracy": _float((refined or report["final"]).get("accuracy")),
        }
    )
    return row


def summarize(rows: Iterable[Mapping[str, Any]], setting_keys: Sequence[str]) -> list[dict]:
    """Per setting (grid values except the seed): run count, count per outcome, medians.

    Returns one dict per setting, in first-seen order, with the setting's values, ``runs``,
    one count per :data:`OUTCOMES` entry, ``median_final_loss`` and ``median_wall_seconds``
    (over runs with a finite value; ``None`` if there are none).
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = json.dumps([row.get(k) for k in setting_keys], default=str)
        groups.setdefault(key, []).append(row)
    out = []
    for members in groups.values():
        entry: dict[str, Any] = {k: members[0].get(k) for k in setting_keys}
        entry["runs"] = len(members)
        for o in OUTCOMES:
            entry[o] = sum(1 for r in members if r.get("outcome") == o)
        for col in ("final_loss", "wall_seconds"):
            vals = [v for r in members if (v := _float(r.get(col))) is not None]
            vals = [v for v in vals if math.isfinite(v)]
            entry[f"median_{col}"] = statistics.median(vals) if vals else None
        out.append(entry)
    return out


def _cell(value: Any) -> str:
    """CSV text of a value: exact floats (repr), JSON for lists, empty for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text with a header row; cells by :func:`_cell`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def run_columns(keys: Sequence[str]) -> list[str]:
    """Columns of summary.csv: ``run``, the grid keys, then :data:`RUN_COLUMNS`."""
    return ["run", *keys, *RUN_COLUMNS]


def setting_columns(setting_keys: Sequence[str]) -> list[str]:
    """Columns of settings.csv."""
    return [*setting_keys, "runs", *OUTCOMES, "median_final_loss", "median_wall_seconds"]


def settings_table_text(settings: Sequence[Mapping[str, Any]], setting_keys: Sequence[str]) -> str:
    """A fixed-width text table of :func:`summarize`'s output, for printing."""
    cols = setting_columns(setting_keys)
    head = [c.replace("median_", "med ") for c in cols]

    def fmt(c: str, v: Any) -> str:
        if v is None:
            return "-"
        if c.startswith("median_"):
            return f"{v:.3g}" if c.endswith("seconds") else f"{v:.3e}"
        return _cell(v)

    body = [[fmt(c, s.get(c)) for c in cols] for s in settings]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines) + "\n"


def read_summary_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a summary.csv as dicts of strings (for viewers)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- files


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a fsynced temporary sibling and one ``os.replace``:
    readers see the old file or the new one, never a half-written one."""
    write_bytes_atomic(path, text.encode("utf-8"))


def same_config(a: Config, b: Config) -> bool:
    """Whether two configs describe the same run (their TOML mappings are equal)."""
    return config_to_dict(a) == config_to_dict(b)


def finished_session(run: SweepRun, folder: str | Path) -> Any:
    """The run's session if it is finished (loads, has a final report, same config), else None.

    Raises :class:`SweepError` when ``folder`` holds something else: a file, a folder that
    is not a session, or a session of a different config (a different sweep's output).
    """
    from core.session import SessionError, is_session_dir, load_session

    p = Path(folder)
    if not p.exists() or (p.is_dir() and not any(p.iterdir())):
        return None
    if not p.is_dir() or not is_session_dir(p):
        raise SweepError(str(p), None, "exists and is not a session folder; refusing to overwrite")
    try:
        session = load_session(p)
    except SessionError:
        return None  # a damaged session (killed before its first save completed): rerun
    if not same_config(session.config, run.config):
        raise SweepError(
            str(p), None, "holds a session of a different config (another sweep's output?)"
        )
    return session if session.report is not None else None
