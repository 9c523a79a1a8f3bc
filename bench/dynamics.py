"""Benchmarks of core.flow / core.refine; prints markdown tables.

(a) time to an exact fixed point: teacher recovery (d=2, teacher = student = 5 softplus
    neurons with biases, N=1e4), flow + refinement to L < 1e-20 and ‖∇L‖∞ < 1e-12, median
    wall time (including compilation) over seeds; Adam (best lr of 1e-4, 1e-3, 1e-2) given
    the same wall time: the loss each reaches.
(b) solvers: distance to a tight-tolerance (rtol 1e-12) reference trajectory vs wall time,
    small (d=2, r=8) and large (d=4, r=100) problems.

Usage: python bench/dynamics.py [--seeds 10] [--part a|b|all]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import core  # noqa: F401
from core.data import make_dataset
from core.flow import DynamicsSettings, resolve_solver, run_to_end
from core.networks import init_params, make_spec
from core.objectives import mse_objective
from core.refine import refine
from core.teachers import random_teacher


def problem(d: int, r: int, n: int, seed: int, bias: bool = True):
    spec = make_spec(d, [r], "softplus", bias=bias)
    teacher = random_teacher(spec, jax.random.PRNGKey(1000 + seed))
    obj = mse_objective(spec, make_dataset(teacher, "gaussian", n, seed))
    return obj, np.asarray(init_params(spec, jax.random.PRNGKey(seed)))


def part_a(seeds: int) -> None:
    rows = []
    for seed in range(seeds):
        obj, theta0 = problem(2, 5, 10_000, seed)
        tic = time.perf_counter()
        run = run_to_end(obj, theta0, DynamicsSettings(t_max=1e6, max_seconds=120))
        res = refine(obj, run.theta[-1])
        wall = time.perf_counter() - tic
        exact = res.loss < 1e-20 and res.grad_inf_norm < 1e-12
        best = np.inf
        for lr in (1e-4, 1e-3, 1e-2):
            s = DynamicsSettings(method="adam", lr=lr, t_max=1e12, max_seconds=wall)
            best = min(best, float(run_to_end(obj, theta0, s).loss[-1]))
        rows.append((seed, wall, res.loss, res.grad_inf_norm, exact, best))
        print(f"seed {seed}: {wall:.1f}s flow+refine L={res.loss:.2e} adam L={best:.2e}")
    print("\n| seed | flow+refine s | L (flow+refine) | ‖∇L‖∞ | exact | L (Adam, same time) |")
    print("|---|---|---|---|---|---|")
    for seed, wall, loss, g, exact, adam in rows:
        print(f"| {seed} | {wall:.1f} | {loss:.2e} | {g:.1e} | {exact} | {adam:.2e} |")
    walls = [r[1] for r in rows]
    exact = [r for r in rows if r[4]]
    print(f"\nmedian wall {np.median(walls):.1f} s; {len(exact)}/{len(rows)} reach an exact zero")
    if exact:
        ratio = np.median([r[5] / max(r[2], 1e-300) for r in exact])
        print(f"median L_adam / L_flow+refine on exact runs: {ratio:.1e}")


def part_b() -> None:
    print("\n| problem | P | solver | wall s | steps | max |θ−θ_ref| over saves |")
    print("|---|---|---|---|---|---|")
    for d, r, t_max in ((2, 8, 1e4), (4, 100, 1e3)):
        obj, theta0 = problem(d, r, 2000, 0)
        ref_solver = "kvaerno5" if obj.n_params <= 1024 else "dopri8"
        base = dict(t_max=t_max, n_saves=30, max_seconds=300)
        ref = run_to_end(
            obj, theta0, DynamicsSettings(solver=ref_solver, rtol=1e-12, atol=1e-14, **base)
        )
        for solver in ("tsit5", "dopri5", "dopri8", "kvaerno5", "kencarp5"):
            s = DynamicsSettings(solver=solver, **base)
            tic = time.perf_counter()
            run = run_to_end(obj, theta0, s)
            wall = time.perf_counter() - tic
            common, i, j = np.intersect1d(run.t, ref.t, return_indices=True)
            err = np.max(np.abs(run.theta[i] - ref.theta[j])) if len(common) else np.nan
            tag = " (auto)" if solver == resolve_solver(DynamicsSettings(), obj.n_params) else ""
            print(
                f"| d={d}, r={r} | {obj.n_params} | {solver}{tag} | {wall:.2f} | {run.steps} "
                f"| {err:.1e} ({run.reason}) |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--part", choices=("a", "b", "all"), default="all")
    args = parser.parse_args()
    if args.part in ("a", "all"):
        part_a(args.seeds)
    if args.part in ("b", "all"):
        part_b()


if __name__ == "__main__":
    main()
