"""Start-up benchmarks: the explorer's first frame, and time to the first integrated chunk
with a cold and a warm persistent JAX compilation cache (core.cache).

(1) ``import explorer.app`` and first frame: a fresh process imports the app, mounts it
    headless (``App.run_test``, 80×24) and reports when the first screen is on; timed from
    just before the process is spawned (interpreter start-up included).
(2) start integrating: a fresh process enables the cache in a given folder, loads a preset,
    builds the problem and pulls the first chunk of the flow past t = 0; run three times
    on the same (initially empty) folder: the first launch traces and compiles, the second
    loads both from disk, the third finds only compiled programs (core.traces' folder
    removed), which is how every launch went before the trace cache.

Usage: python bench/startup.py [--repeats 5] [--preset explorer/presets/teacher_recovery.toml]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core import traces

ROOT = Path(__file__).resolve().parents[1]

FIRST_FRAME = r"""
import asyncio, json, sys, time
t_import = time.time()
from explorer.app import ExplorerApp
t_imported = time.time()

async def main():
    app = ExplorerApp(autostart=False)
    async with app.run_test() as pilot:
        await pilot.pause()
        t_frame = time.time()
        screen = type(app.screen).__name__
    print(json.dumps({"import_start": t_import, "imported": t_imported, "frame": t_frame,
                      "screen": screen}))

asyncio.run(main())
"""

FIRST_CHUNK = r"""
import json, sys, time
t_begin = time.time()
from core.cache import enable_compilation_cache
enable_compilation_cache(sys.argv[1])
from core.config import load_config
from core.flow import run_dynamics
from core.problem import build_problem
from core.runner import dynamics_settings
cfg = load_config(sys.argv[2])
problem = build_problem(cfg)
t_built = time.time()
settings = dynamics_settings(cfg.dynamics, problem.spec.n_params)
for chunk in run_dynamics(problem.objective, problem.theta0, settings):
    if len(chunk.t) and chunk.t[-1] > 0:
        break
t_chunk = time.time()
print(json.dumps({"begin": t_begin, "built": t_built, "chunk": t_chunk,
                  "t": float(chunk.t[-1])}))
"""


def _spawn(code: str, *args: str) -> tuple[float, dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return t0, json.loads(out.stdout.strip().splitlines()[-1])


def first_frame(repeats: int) -> None:
    rows = []
    for _ in range(repeats):
        t0, r = _spawn(FIRST_FRAME)
        rows.append((r["import_start"] - t0, r["imported"] - t0, r["frame"] - t0, r["screen"]))
    med = np.median([r[:3] for r in rows], axis=0)
    print(f"| measure (median of {repeats}) | seconds from process spawn |")
    print("|---|---|")
    print(f"| interpreter up | {med[0]:.2f} |")
    print(f"| `import explorer.app` done | {med[1]:.2f} |")
    print(f"| first frame ({rows[0][3]} mounted, run_test) | {med[2]:.2f} |")


def first_chunk(repeats: int, preset: Path) -> None:
    """Launches on one cache folder: empty; filled; filled but without the traced programs
    of core.traces (``exported/`` removed: the launch traces the flow again, as before the
    trace cache, and compiles from the compilation cache)."""
    print("\n| launch | cache | built s | first chunk s (from spawn) |")
    print("|---|---|---|---|")
    labels = (
        ("first", "empty"),
        ("second", "filled"),
        ("third", "compilation cache only (traced programs removed)"),
    )
    times: list[list[tuple[float, float]]] = [[] for _ in labels]
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            for i, store in enumerate(times):
                if i == 2:
                    shutil.rmtree(Path(cache) / traces.SUBFOLDER, ignore_errors=True)
                t0, r = _spawn(FIRST_CHUNK, cache, str(preset))
                store.append((r["built"] - t0, r["chunk"] - t0))
    meds = [np.median(store, axis=0) for store in times]
    for (label, cache), med in zip(labels, meds, strict=True):
        print(f"| {label} | {cache} | {med[0]:.2f} | {med[1]:.2f} |")
    print(
        f"\ntime to the first chunk, median of {repeats}: cold / warm "
        f"{meds[0][1] / meds[1][1]:.1f}×; without / with the trace cache "
        f"{meds[2][1] / meds[1][1]:.2f}×"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--preset", type=Path, default=ROOT / "explorer" / "presets" / "teacher_recovery.toml"
    )
    parser.add_argument("--part", choices=("frame", "chunk", "all"), default="all")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()} on {os.cpu_count()} CPUs")
    if args.part in ("frame", "all"):
        first_frame(args.repeats)
    if args.part in ("chunk", "all"):
        first_chunk(args.repeats, args.preset)


if __name__ == "__main__":
    main()
