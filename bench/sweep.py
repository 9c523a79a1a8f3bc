"""Benchmark: a sweep on a LocalCluster (one worker process per core) vs one process.

    python bench/sweep.py [--runs 64] [--workers N] [--method gd|flow] [--keep DIR]

The sweep is ``--runs`` seeds of a tiny teacher-student problem (d = 2, teacher and
student width 2, N = 100, refinement by Newton).  Both legs start from an empty output
folder and share JAX's persistent compilation cache (warmed by one run first), so the
comparison is of execution, not of first-time XLA compilation.  The cluster leg includes
the cluster's start-up (spawning workers, importing JAX in each).

Prints wall seconds of each leg, the speed-up serial / cluster, and the machine's
core count and load average (a shared machine makes the speed-up an underestimate).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import SWEEP_BASE as BASE  # the sweep tests' base config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=64)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--method", choices=("gd", "flow"), default="gd")
    ap.add_argument("--keep", help="folder to keep the outputs in (default: a temp folder)")
    args = ap.parse_args()

    from core.sweep import ClusterOptions, execute_run, load_sweep, run_sweep, settings_table_text

    root = Path(args.keep or tempfile.mkdtemp(prefix="sweep-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    t_max = 5.0 if args.method == "gd" else 100.0
    (root / "base.toml").write_text(BASE.format(method=args.method, t_max=t_max))
    seeds = ", ".join(str(s) for s in range(1, args.runs + 1))
    (root / "sweep.toml").write_text(f'base = "base.toml"\n[grid]\nseed = [{seeds}]\n')
    sweep = load_sweep(root / "sweep.toml")

    warm = root / "warm"
    warm.mkdir(exist_ok=True)
    execute_run(sweep.runs[0], str(warm))  # fills the persistent compilation cache

    tic = time.perf_counter()
    serial = run_sweep(sweep, root / "serial", serial=True)
    t_serial = time.perf_counter() - tic
    load_serial = os.getloadavg()

    tic = time.perf_counter()
    par = run_sweep(sweep, root / "cluster", ClusterOptions(workers=args.workers))
    t_par = time.perf_counter() - tic
    load_par = os.getloadavg()

    assert serial.executed == par.executed == args.runs, (serial.executed, par.executed)
    print(settings_table_text(par.settings, sweep.setting_keys))
    print(f"runs: {args.runs} ({args.method}), cores: {os.cpu_count()}, workers: {args.workers}")
    print(f"one process : {t_serial:8.1f} s  ({t_serial / args.runs:.2f} s/run)")
    print(f"LocalCluster: {t_par:8.1f} s  ({t_par / args.runs:.2f} s/run, incl. start-up)")
    print(f"speed-up    : {t_serial / t_par:8.2f}x")
    print(f"load average (1, 5, 15 min) after serial: {load_serial}, after cluster: {load_par}")
    print(f"outputs in {root}")


if __name__ == "__main__":
    main()
