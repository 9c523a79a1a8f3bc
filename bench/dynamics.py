"""Benchmarks of core.flow / core.refine; prints markdown tables.

(a) time to an exact fixed point: teacher recovery (d=2, teacher = student = 5 softplus
    neurons with biases, N=1e4), flow (t_max = 1e10, rtol 1e-3, atol 1e-6, --flow-seconds
    budget) handing over to refinement (core.fixed_point.flow_to_fixed_point) to
    ‖∇L‖∞ < 1e-12 (and L < 1e-20 where the minimum reached is the teacher), median wall
    time (including compilation) over seeds; Adam (best lr of 1e-4, 1e-3, 1e-2, each given
    the same wall time): the loss each reaches.
(c) ensembles: 64 initialisations integrated together (core.ensemble.run_ensemble) vs
    one after another: wall time and throughput ratio.
(b) solvers: distance to a tight-tolerance (rtol 1e-12) reference trajectory vs wall time,
    small (d=2, r=8) and large (d=4, r=100) problems.
(s) against scipy: time to an exact critical point (‖∇L‖∞ < 1e-12, a minimum) through
    the driver ``explorer run`` uses (core.fixed_point.flow_to_fixed_point, refine "auto")
    vs a plain scipy pipeline: scipy's LSODA / BDF stepped by hand with the exact Jacobian
    −H and the objective's jitted ∇L and H as callbacks, trying scipy's trust-exact once
    ‖∇L‖∞ < 1e-3 (checked every quarter decade of t; attempts scheduled by the wall
    clock, see scipy_fixed_point; accepted when it converges to a minimum no higher than
    the flow state).  Same problems (a 3+3 softplus
    N = 2000 problem and part a's family, N = 1e4, at --seeds seeds), same flow settings
    (t_max 1e10, rtol 1e-3, atol 1e-6) and the same wall budget (--budget), the three
    runs interleaved per problem in rotating order, ∇L/H compiled before the first.

Usage: python bench/dynamics.py [--seeds 10] [--part a|b|c|s|all] [--budget 20]
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate

import core  # noqa: F401
from core.analysis import hessian_spectrum
from core.cache import enable_compilation_cache
from core.data import make_dataset
from core.ensemble import run_ensemble
from core.fixed_point import flow_to_fixed_point
from core.flow import AUTO_STIFF_MAX_PARAMS, DynamicsSettings, resolve_solver, run_to_end
from core.networks import init_params, make_spec
from core.objectives import mse_objective
from core.refine import trust_region
from core.teachers import random_teacher


def problem(d: int, r: int, n: int, seed: int, bias: bool = True):
    spec = make_spec(d, [r], "softplus", bias=bias)
    teacher = random_teacher(spec, jax.random.PRNGKey(1000 + seed))
    obj = mse_objective(spec, make_dataset(teacher, "gaussian", n, seed))
    return obj, np.asarray(init_params(spec, jax.random.PRNGKey(seed)))


def part_a(seeds: int, flow_seconds: float, adam_lrs: tuple[float, ...]) -> None:
    rows = []
    for seed in range(seeds):
        obj, theta0 = problem(2, 5, 10_000, seed)
        settings = DynamicsSettings(t_max=1e10, rtol=1e-3, atol=1e-6, max_seconds=flow_seconds)
        res = flow_to_fixed_point(obj, theta0, settings)
        wall = res.wall
        exact = res.loss < 1e-20 and res.grad_inf_norm < 1e-12
        best, best_lr = np.inf, None
        for lr in adam_lrs:
            s = DynamicsSettings(method="adam", lr=lr, t_max=1e12, max_seconds=wall)
            loss = float(run_to_end(obj, theta0, s).loss[-1])
            if loss < best:
                best, best_lr = loss, lr
        rows.append((seed, res, exact, best, best_lr))
        print(
            f"seed {seed}: {wall:.1f}s L={res.loss:.2e} ‖∇L‖∞={res.grad_inf_norm:.1e} "
            f"index={res.index} t={res.t:.3g} steps={res.flow_steps} "
            f"refine tries={res.refine_attempts}; adam L={best:.2e} (lr {best_lr:g}); "
            f"{res.reason}",
            flush=True,
        )
    print(
        "\n| seed | wall s | flow t | flow steps | ms/step | L (flow+Newton) | ‖∇L‖∞ | index "
        "| exact zero | L (Adam, same time, best lr) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed, res, exact, adam, lr in rows:
        ms = 1e3 * res.wall / max(res.flow_steps, 1)
        print(
            f"| {seed} | {res.wall:.1f} | {res.t:.2g} | {res.flow_steps} | {ms:.0f} "
            f"| {res.loss:.2e} | {res.grad_inf_norm:.1e} | {res.index} | {exact} "
            f"| {adam:.2e} (lr {lr:g}) |"
        )
    walls = [r[1].wall for r in rows]
    crit = [r for r in rows if r[1].converged]
    print(
        f"\nmedian wall {np.median(walls):.1f} s (incl. compilation); "
        f"{sum(r[2] for r in rows)}/{len(rows)} reach an exact zero; "
        f"{len(crit)}/{len(rows)} reach an exact critical point (‖∇L‖∞ < 1e-12)"
    )
    ratio = np.median([r[3] / max(r[1].loss, 1e-300) for r in rows])
    print(f"median L_adam / L_flow+Newton: {ratio:.1e}")


def part_b() -> None:
    print("\n| problem | P | solver | wall s | steps | max |θ−θ_ref| over saves |")
    print("|---|---|---|---|---|---|")
    for d, r, t_max in ((2, 8, 1e4), (4, 100, 1e2)):
        obj, theta0 = problem(d, r, 2000, 0)
        ref_solver = "kvaerno5" if obj.n_params <= AUTO_STIFF_MAX_PARAMS else "dopri8"
        base = dict(t_max=t_max, n_saves=30, max_seconds=90)
        # The reference must reach t_max: no 90 s cap for it (dopri8 at P=601 takes minutes).
        ref = run_to_end(
            obj,
            theta0,
            DynamicsSettings(
                solver=ref_solver, rtol=1e-12, atol=1e-14, **{**base, "max_seconds": 3600}
            ),
        )
        for solver in ("tsit5", "dopri5", "dopri8", "kvaerno5", "kencarp5", "lsoda", "bdf"):
            s = DynamicsSettings(solver=solver, **base)
            tic = time.perf_counter()
            run = run_to_end(obj, theta0, s)
            wall = time.perf_counter() - tic
            common, i, j = np.intersect1d(run.t, ref.t, return_indices=True)
            keep = common > 0  # t = 0 is the shared start, not a comparison
            i, j = i[keep], j[keep]
            err = np.max(np.abs(run.theta[i] - ref.theta[j])) if len(i) else np.nan
            reached = float(run.t[-1])
            tag = " (auto)" if solver == resolve_solver(DynamicsSettings(), obj.n_params) else ""
            print(
                f"| d={d}, r={r} | {obj.n_params} | {solver}{tag} | {wall:.2f} | {run.steps} "
                f"| {err:.1e} over {len(i)} saves ({run.reason} at t = {reached:.3g}) |"
            )


def grad_eval_costs(obj, thetas: np.ndarray, reps: int = 2000) -> tuple[float, float]:
    """µs per ∇L evaluation inside a compiled loop: one member alone, and per member when
    all S rows of ``thetas`` are evaluated together under vmap.

    The flow's solver steps are ∇L evaluations plus per-step bookkeeping; batching can
    only share the bookkeeping, so single-step time / (evaluations per step × the batched
    per-member cost) bounds what an ensemble can gain on this machine.
    """
    vg = obj.value_and_grad

    def looped(fn):
        def run(theta):
            return jax.lax.fori_loop(0, reps, lambda i, th: th - 1e-12 * fn(th)[1], theta)

        return jax.jit(run)

    one, batched = looped(vg), looped(jax.vmap(vg))
    out = []
    for fn, x, per in ((one, thetas[0], 1), (batched, thetas, len(thetas))):
        jax.block_until_ready(fn(x))
        times = []
        for _ in range(5):
            tic = time.perf_counter()
            jax.block_until_ready(fn(x))
            times.append(time.perf_counter() - tic)
        out.append(1e6 * float(np.median(times)) / reps / per)
    return out[0], out[1]


def part_c(members: int, sequential: int) -> None:
    """Ensemble throughput: S members with run_ensemble vs single runs one after another.

    Sequential time is measured on ``sequential`` members (warm: compiled once before) and
    scaled to S; the ensemble time includes its own compilation.  The last columns give
    the cost of one ∇L evaluation (µs, single vs per member of the batch) and of one
    single-run solver step, which bound the attainable ratio (see grad_eval_costs).
    """
    print(
        f"\n| problem | P | N | solver | S | sequential s (×S/{sequential}) | ensemble s "
        "| ensemble steps (max) | throughput ratio | max |Δθ| vs single "
        "| ∇L µs single / batched | single step µs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, solver in ((100, "tsit5"), (1000, "tsit5"), (100, "kvaerno5"), (1000, "kvaerno5")):
        spec = make_spec(2, [5], "softplus", bias=True)
        teacher = random_teacher(spec, jax.random.PRNGKey(1000))
        obj = mse_objective(spec, make_dataset(teacher, "gaussian", n, 0))
        thetas = np.stack(
            [np.asarray(init_params(spec, jax.random.PRNGKey(s))) for s in range(members)]
        )
        settings = DynamicsSettings(solver=solver, t_max=1e2, n_saves=20, max_seconds=600)
        run_to_end(obj, thetas[0], settings)  # compile the single-run kernel
        tic = time.perf_counter()
        singles = [run_to_end(obj, th, settings) for th in thetas[:sequential]]
        seq = (time.perf_counter() - tic) * members / sequential
        step_us = 1e6 * seq / members / np.mean([r.steps for r in singles])
        g_one, g_batch = grad_eval_costs(obj, thetas)
        ens = run_ensemble(obj, thetas, settings)
        err = max(
            float(np.max(np.abs(ens.final_theta[i] - singles[i].theta[-1])))
            for i in range(sequential)
        )
        print(
            f"| d=2 r=5 | {obj.n_params} | {n} | {solver} | {members} | {seq:.1f} "
            f"| {ens.wall:.1f} | {int(ens.steps.max())} | {seq / ens.wall:.1f}× | {err:.1e} "
            f"| {g_one:.1f} / {g_batch:.1f} | {step_us:.0f} |",
            flush=True,
        )


def scipy_fixed_point(obj, theta0, method: str, budget: float, gtol: float = 1e-12) -> dict:
    """The plain scipy pipeline of part (s): converged (to a minimum), wall, loss, t.

    Refinement is scheduled like the old wall-clock driver (a strong baseline, not a
    reproducible one): once ‖∇L‖∞ < 1e-3, a trust-exact attempt bounded by max(0.2 s,
    ¼ of the time so far), the next one after ‖∇L‖∞ fell 10× or 3× the failed
    attempt's time has passed.
    """
    start = time.perf_counter()
    grad, hess = obj.grad, obj.hessian
    cls = {"LSODA": scipy.integrate.LSODA, "BDF": scipy.integrate.BDF}[method]
    solver = cls(
        lambda t, y: -np.asarray(grad(y)), 0.0, np.asarray(theta0, float), 1e10,
        rtol=1e-3, atol=1e-6, jac=lambda t, y: -np.asarray(hess(y)),
    )  # fmt: skip

    def attempt(y, seconds):
        loss_f = float(obj.loss(jnp.asarray(y)))
        res = trust_region(obj, y, gtol, max_iter=10**9, max_seconds=seconds)
        if not (res.converged and res.loss <= loss_f * (1 + 1e-9) + 1e-300):
            return None
        return res if hessian_spectrum(np.asarray(obj.hessian(res.theta))).index == 0 else None

    next_check, last_g, next_try, res = 1e-2, math.inf, 0.0, None
    while solver.status == "running" and time.perf_counter() - start < budget:
        solver.step()
        if solver.t < next_check:
            continue
        next_check = solver.t * 10**0.25
        g, now = float(np.max(np.abs(np.asarray(grad(jnp.asarray(solver.y)))))), time.perf_counter()
        if g < 1e-3 and (g < 0.1 * last_g or now >= next_try):
            left = budget - (now - start)
            res = attempt(solver.y, min(left, max(0.2, 0.25 * (now - start))))
            if res is not None:
                break
            last_g, next_try = g, time.perf_counter() + 3 * (time.perf_counter() - now)
    left = budget - (time.perf_counter() - start)
    if res is None and left > 0:
        res = attempt(solver.y, left)  # the flow ended (t_max): one last try from its end
    loss = res.loss if res is not None else float(obj.loss(jnp.asarray(solver.y)))
    wall = time.perf_counter() - start
    return dict(converged=res is not None, wall=wall, loss=loss, t=float(solver.t))


def part_s(seeds: int, budget: float) -> None:
    problems = [("3+3 N=2000 s0", (2, 3, 2000, 0))]
    problems += [(f"5+5 N=1e4 s{s}", (2, 5, 10_000, s)) for s in range(seeds)]
    names = ("ours", "LSODA", "BDF")
    rows = []
    for k, (label, args) in enumerate(problems):
        obj, theta0 = problem(*args)
        jax.block_until_ready((obj.grad(theta0), obj.hessian(theta0), obj.value_and_grad(theta0)))
        settings = DynamicsSettings(t_max=1e10, rtol=1e-3, atol=1e-6, max_seconds=budget)
        out = {}
        for name in names[k % 3 :] + names[: k % 3]:  # rotating order
            if name == "ours":
                res = flow_to_fixed_point(obj, theta0, settings, method="auto")
                out[name] = dict(converged=bool(res.converged and res.index == 0),
                                 wall=res.wall, loss=res.loss, t=res.t)  # fmt: skip
            else:
                out[name] = scipy_fixed_point(obj, theta0, name, budget)
        rows.append((label, obj.n_params, out))
        print(label, {n: (o["converged"], round(o["wall"], 2)) for n, o in out.items()}, flush=True)
    print(
        f"\n{platform.node()}, {platform.machine()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, budget {budget:g} s per run"
    )
    print("\n| problem | P | ours s | LSODA s | BDF s | ours / best scipy | ours L | ours flow t |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for label, p, out in rows:
        cell = {n: f"{o['wall']:.2f}" if o["converged"] else f"— ({o['wall']:.0f})"
                for n, o in out.items()}  # fmt: skip
        scipy_walls = [o["wall"] for n, o in out.items() if n != "ours" and o["converged"]]
        best = min(scipy_walls, default=math.nan)
        ratio = out["ours"]["wall"] / best if out["ours"]["converged"] else math.nan
        if np.isfinite(ratio):
            ratios.append(ratio)
        print(
            f"| {label} | {p} | {cell['ours']} | {cell['LSODA']} | {cell['BDF']} | {ratio:.2f} "
            f"| {out['ours']['loss']:.1e} | {out['ours']['t']:.2g} |"
        )
    counts = ", ".join(
        f"{n} {sum(out[n]['converged'] for *_, out in rows)}/{len(rows)}" for n in names
    )
    median = f"{np.median(ratios):.2f}" if ratios else "n/a"
    print(
        f"\nexact minima (‖∇L‖∞ < 1e-12) reached within {budget:g} s: {counts}; "
        f"median ours / best scipy where both converged: {median}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--part", choices=("a", "b", "c", "s", "all"), default="all")
    parser.add_argument("--budget", type=float, default=20.0, help="part s: seconds per run")
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=8)
    parser.add_argument("--flow-seconds", type=float, default=20.0)
    parser.add_argument("--adam-lrs", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2])
    args = parser.parse_args()
    enable_compilation_cache()
    if args.part in ("a", "all"):
        part_a(args.seeds, args.flow_seconds, tuple(args.adam_lrs))
    if args.part in ("b", "all"):
        part_b()
    if args.part in ("c", "all"):
        part_c(args.members, args.sequential)
    if args.part in ("s", "all"):
        part_s(args.seeds, args.budget)


if __name__ == "__main__":
    main()
