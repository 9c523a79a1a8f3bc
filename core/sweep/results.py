"""Sweep results: each run's outcome and summary row, the per-setting table, CSV files.

Outcomes (per run, for the summary):

* ``zero-loss``   — the loss at the analysed point (the refined point if any, else the
  end of the dynamics) is in [0, :data:`ZERO_LOSS` = 1e-20) (a global minimum of an
  expressible target, up to round-off: losses of exact interpolants are ~1e-30); never
  for the correlation loss, which is negative and whose zero is no minimum;
* ``minimum``     — classified "minimum", and not zero-loss;
* ``saddle``, ``channel`` (a channel to infinity), ``unconverged`` — the classification;
* ``failed``      — the run raised (or its worker died more often than the scheduler
  allows); its row says why;
* ``pending``     — not run yet, or interrupted before its final report (a rerun of the
  sweep runs it).

Pure (no Dask): :mod:`core.sweep.execute` runs sweeps, :mod:`core.sweep.atlas` gathers
their distinct critical points.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.config import Config, config_to_dict
from core.files import write_bytes_atomic
from core.sweep.spec import SweepError, SweepRun

ZERO_LOSS = 1e-20
OUTCOMES = ("zero-loss", "minimum", "saddle", "channel", "unconverged", "failed", "pending")
SUMMARY_CSV = "summary.csv"
SETTINGS_CSV = "settings.csv"
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


# ----------------------------------------------------------------------------- outcomes


def outcome(classification: str | None, loss: float | None, zero_is_global: bool = True) -> str:
    """The run's outcome (see the module docstring); ``loss`` at the analysed point;
    ``zero_is_global``: whether L = 0 is the global minimum (false for the correlation loss)."""
    if classification is None:
        return "failed"
    if zero_is_global and loss is not None and math.isfinite(loss) and 0.0 <= loss < ZERO_LOSS:
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
            "outcome": outcome(cls, loss, session.config.data.loss != "correlation"),
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
