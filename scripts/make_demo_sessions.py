"""Regenerate the shipped demo sessions: one ``sessions/<preset>/`` per ``explorer/presets/*.toml``.

Each preset is run headless exactly as a user would run it,

    explorer run explorer/presets/<preset>.toml --out sessions/<preset> --force

(in a fresh ``python -m explorer`` process, so the wall time printed is what a teacher
demoing the preset waits, start-up and compilation included), and its report is checked
against what the preset promises (:data:`EXPECTED`).  A run that does not show its
phenomenon makes the script exit with status 1 (the session is still written, for
inspection).

Usage, from the repository root (about 3–5 minutes on a loaded 2-core machine):

    python scripts/make_demo_sessions.py                    # all presets
    python scripts/make_demo_sessions.py channel_to_infinity teacher_recovery
    python scripts/make_demo_sessions.py --out /tmp/demo    # somewhere else

``explorer/presets/symmetry_saddle.toml`` holds explicit initial parameters built by
``scripts/make_symmetry_saddle.py``; rerun that first if the teacher or data change.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "explorer" / "presets"
SESSIONS = ROOT / "sessions"

#: What each preset's report must show (checked here and, on the shipped sessions, by
#: tests/test_presets.py).
EXPECTED = {
    "teacher_recovery": "classification minimum, refined loss < 1e-20, every neuron a copy",
    "channel_to_infinity": "classification channel, one channel with glu_error < 1e-2",
    "copy_or_average": "classification minimum, roles include copy and average",
    "symmetry_saddle": "starts at index ≥ 1, final loss ≪ start loss",
    "saddle_to_saddle": "≥ 3 loss plateaus, ends at a minimum",
    "deep_linear_infinite": "plateaus at ½ Σ_{i>r} s_i², r = 0, 1, 2 in turn; refined loss < 1e-20",
    "three_classes": "starts at log 3, classification minimum, training accuracy 0.9–0.995",
    "multi_index_below": "leaves the average direction (loss drops by > 0.05) to a minimum, a copy",
    "multi_index_above": "stays at the average direction (loss within 1e-4), a minimum, an average",
}


def preset_names() -> list[str]:
    """Stems of the preset files, sorted."""
    return sorted(p.stem for p in PRESETS.glob("*.toml"))


def check_report(name: str, report: dict, loss: list[float]) -> list[str]:
    """Problems with a preset's report (empty when it shows what it promises).

    ``loss`` is the recorded loss curve.  Only the report-level claims are checked here;
    tests/test_presets.py checks the finer ones (plateau values, λmax ε², the saddle).
    """
    problems = []
    cls = report["classification"]
    refined = report.get("refined") or {}

    def need(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    if name == "teacher_recovery":
        need(cls == "minimum", f"classification {cls!r}, expected 'minimum'")
        need(refined.get("loss", 1.0) < 1e-20, f"refined loss {refined.get('loss')} ≥ 1e-20")
        need(all(n["role"] == "copy" for n in report["neurons"]), "not every neuron is a copy")
    elif name == "channel_to_infinity":
        need(cls == "channel", f"classification {cls!r}, expected 'channel'")
        ch = report["channels"]
        need(len(ch) == 1 and ch[0]["glu_error"] < 1e-2, f"channels {ch}")
    elif name == "copy_or_average":
        roles = {n["role"] for n in report["neurons"]}
        need(cls == "minimum", f"classification {cls!r}, expected 'minimum'")
        need({"copy", "average"} <= roles, f"roles {sorted(roles)} lack copy and average")
    elif name == "symmetry_saddle":
        need(loss[-1] < 1e-3 * loss[0], f"loss {loss[0]:.3g} → {loss[-1]:.3g}: no escape")
        need(cls == "minimum", f"classification {cls!r}, expected 'minimum'")
    elif name == "saddle_to_saddle":
        need(cls == "minimum", f"classification {cls!r}, expected 'minimum'")
        need(loss[-1] < 1e-12 * loss[0], f"final loss {loss[-1]:.3g} not ≈ 0")
    elif name == "deep_linear_infinite":
        levels = [0.5 * (9 + 1 + 0.09), 0.5 * (1 + 0.09), 0.5 * 0.09]  # ½ Σ_{i>r} s_i²
        plateaus = [p["loss"] for p in report.get("phases", []) if p["kind"] == "plateau"]
        close = len(plateaus) == 3 and all(
            abs(p / v - 1) < 1e-4 for p, v in zip(plateaus, levels, strict=True)
        )
        need(close, f"plateaus {plateaus}, expected {levels}")
        need(cls == "minimum", f"classification {cls!r}, expected 'minimum'")
        need(refined.get("loss", 1.0) < 1e-20, f"refined loss {refined.get('loss')} ≥ 1e-20")
    elif name == "three_classes":
        acc = (refined or report["final"]).get("accuracy")
        need(abs(loss[0] - math.log(3)) < 1e-2, f"start loss {loss[0]:.4g}, expected ≈ log 3")
        need(cls == "minimum", f"classification {cls!r}, expected 'minimum'")
        need(acc is not None and 0.9 <= acc <= 0.995, f"training accuracy {acc}")
    elif name in ("multi_index_below", "multi_index_above"):
        roles = [n["role"] for n in report["neurons"]]
        need(cls == "minimum", f"classification {cls!r}, expected 'minimum'")
        if name == "multi_index_below":
            need(loss[-1] < loss[0] - 0.05, f"loss {loss[0]:.4g} → {loss[-1]:.4g}: no escape")
            need(roles == ["copy"], f"roles {roles}, expected one copy")
        else:
            need(abs(loss[-1] - loss[0]) < 1e-4, f"loss {loss[0]:.6g} → {loss[-1]:.6g} moved")
            need(roles == ["average"], f"roles {roles}, expected one average")
    return problems


def run_preset(name: str, out_root: Path) -> dict:
    """Run one preset in a fresh process; returns a summary row."""
    out = out_root / name
    cmd = [sys.executable, "-m", "explorer", "run", str(PRESETS / f"{name}.toml")]
    cmd += ["--out", str(out), "--quiet", "--force"]  # regenerating replaces the old one
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        return {"name": name, "ok": False, "problems": [proc.stderr.strip()[-500:]], "wall": wall}
    sys.path.insert(0, str(ROOT))
    from core.runner import session_report
    from core.session import load_session

    session = load_session(out)
    report = session_report(session)
    loss = [float(v) for seg in session.segments for v in seg.loss]
    problems = check_report(name, report, loss)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    refined = report.get("refined") or {}
    return {
        "name": name,
        "ok": not problems,
        "problems": problems,
        "wall": wall,
        "run_seconds": report["wall_seconds"],
        "classification": report["classification"],
        "final_loss": report["final"]["loss"],
        "refined_loss": refined.get("loss"),
        "index": report["spectrum"]["index"],
        "channels": len(report["channels"]),
        "roles": [n["role"] for n in report["neurons"]],
        "bytes": size,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("presets", nargs="*", help="preset names (default: all)")
    ap.add_argument(
        "--out", default=str(SESSIONS), help="folder of the sessions (default: sessions/)"
    )
    args = ap.parse_args(argv)
    names = args.presets or preset_names()
    unknown = sorted(set(names) - set(preset_names()))
    if unknown:
        print(f"unknown preset(s): {', '.join(unknown)} (known: {', '.join(preset_names())})")
        return 2
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    ok = True
    for name in names:
        row = run_preset(name, out_root)
        ok &= row["ok"]
        print(json.dumps(row), flush=True)
    total = sum(f.stat().st_size for f in out_root.rglob("*") if f.is_file())
    print(f"{out_root}: {total / 1024:.0f} KiB in all; {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
