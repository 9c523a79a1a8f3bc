"""kill -9 of ``explorer run`` at random moments: is every folder left behind loadable?

    python bench/kill9.py [--kills 200] [--parallel 3] [--window 12] [--root DIR]

Launches ``--kills`` runs of a long tiny-problem config (``--parallel`` at a time), each
SIGKILLed at a uniformly random moment in [0, window] s after launch (start-up: JAX
import, building, compiling) or, for every other run, after its first save appeared
(θ₀ only, the first chunk's compilation, chunks, autosaves; start-up takes from 3 s to a
minute with the machine's load, so both clocks are needed), then loads every output folder
with the checked-out code in ``--root`` (default: this checkout; point it at a
``git worktree`` of an older commit to count "before").  Prints per outcome:

* none        — no folder (killed before the first save): fine;
* loads       — the folder loads (``core.session.load_session``): fine;
* unreadable  — a folder that does not load: mishandled;
* temps       — ``.NAME.tmp-*`` folders left beside them, before and after one more
  save into the same parent (a killed saver's temporaries must go then).

Machine load changes which moments are hit, not what must hold.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))
from conftest import TINY_CONFIG  # noqa: E402

LONG = TINY_CONFIG.replace("t_max = 100.0", "t_max = 1e9").replace("n_saves = 20", "n_saves = 4000")

CHECK = """
import json, sys
from pathlib import Path
from core.session import load_session, save_session
root = Path(sys.argv[1])
out = {}
for d in sorted(root.iterdir()):
    if not d.name.startswith("run"):
        continue
    if d.name.endswith(".none"):
        out[d.name] = "none"
        continue
    try:
        load_session(d)
        out[d.name] = "loads"
    except Exception as e:
        out[d.name] = "unreadable: " + str(e)[-120:]
temps_before = sorted(p.name for p in root.iterdir() if ".tmp-" in p.name)
good = [d for d, v in out.items() if v == "loads"]
if good:
    save_session(root / "after", load_session(root / good[0]))
temps_after = sorted(p.name for p in root.iterdir() if ".tmp-" in p.name)
print(json.dumps({"runs": out, "temps_before": len(temps_before), "temps_after": len(temps_after)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=3)
    ap.add_argument("--window", type=float, default=12.0, help="kill within this many s")
    ap.add_argument("--root", type=Path, default=HERE, help="checkout whose code runs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kill9-"))
    cfg = work / "long.toml"
    cfg.write_text(LONG)
    pending = [(i, rng.uniform(0.0, args.window)) for i in range(args.kills)]
    running: dict[int, tuple[subprocess.Popen, float]] = {}
    after_save: dict[int, float] = {}  # odd runs: delay counted from the first save
    tic = time.monotonic()
    while pending or running:
        while pending and len(running) < args.parallel:
            i, delay = pending.pop(0)
            proc = subprocess.Popen(
                [sys.executable, "-m", "explorer", "run", str(cfg), "--out",
                 str(work / f"run{i:04d}"), "--quiet"],
                cwd=args.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if i % 2:
                after_save[i] = delay
                running[i] = (proc, float("inf"))
            else:
                running[i] = (proc, time.monotonic() + delay)
        now = time.monotonic()
        for i, (proc, at) in list(running.items()):
            if i in after_save and (work / f"run{i:04d}" / "meta.json").exists():
                at = now + after_save.pop(i)
                running[i] = (proc, at)
            if now >= at or proc.poll() is not None:
                proc.kill()
                proc.wait()
                del running[i]
        time.sleep(0.01)
    # folders that never appeared are listed too
    for i in range(args.kills):
        (work / f"run{i:04d}").exists() or (work / f"run{i:04d}.none").touch()
    res = subprocess.run(
        [sys.executable, "-c", CHECK, str(work)], cwd=args.root, capture_output=True, text=True
    )
    if res.returncode:
        sys.exit(res.stderr)
    data = json.loads(res.stdout)
    runs = data["runs"]
    counts = {"none": 0, "loads": 0, "unreadable": 0}
    for v in runs.values():
        counts[v if v in counts else "unreadable"] += 1
    print(f"root {args.root}  kills {args.kills}  window {args.window} s  "
          f"parallel {args.parallel}  wall {time.monotonic() - tic:.0f} s  ({work})")  # fmt: skip
    print(f"  none {counts['none']}  loads {counts['loads']}  unreadable {counts['unreadable']}")
    print(f"  temp folders left: {data['temps_before']}, after one more save: "
          f"{data['temps_after']}")  # fmt: skip
    for name, v in runs.items():
        if v.startswith("unreadable"):
            print(f"  {name}: {v}")
            break


if __name__ == "__main__":
    main()
