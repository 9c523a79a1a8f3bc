"""Benchmark: infinite-Gaussian-data objective vs finite-data MSE (time per gradient / Hessian).

The expected loss of :func:`core.gaussian.gaussian_objective` costs O(k(k+k*)(d + q)) per
evaluation (q = quadrature points per pair, 0 for closed forms) and has no sample count;
the finite-data :func:`core.objectives.mse_objective` costs O(N·P).  This script times one
gradient and one Hessian (median of ``--repeats`` calls after a compile call) for each
input dimension d and width k (student = teacher width), and the finite-data objective at
N = 10³, 10⁴, 10⁵ for context.

    python bench/gaussian.py                      # erf (closed form), d = 10, 50, 100; k = 5, 20
    python bench/gaussian.py --activation softplus --dims 10 50 --widths 5 10

``--part hessian`` times the structured Hessian (:mod:`core.gaussian_hessian`, the
objective's ``hessian``) against the autodiff one it replaced (``jax.jacfwd`` of the
gradient, :func:`core.gaussian_hessian.autodiff_hessian`) in the same run, calls
interleaved, with the gradient for scale: n = k = 20, erf at d = 10, 50, 100, 200, relu
and softplus (quadrature) at d = 100; medians of ``--repeats`` calls after a compile call.

    python bench/gaussian.py --part hessian --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

import core  # noqa: F401  (float64)
from core.data import make_dataset
from core.gaussian import gaussian_objective
from core.gaussian_hessian import autodiff_hessian
from core.networks import init_params, make_spec
from core.objectives import mse_objective
from core.teachers import random_teacher


def _time(fn, theta, repeats: int) -> tuple[float, float]:
    """(first-call seconds incl. compile, median seconds of later calls)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(theta))
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(theta))
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


HESSIAN_CASES = [("erf", 10), ("erf", 50), ("erf", 100), ("erf", 200), ("relu", 100)]
HESSIAN_CASES += [("softplus", 100)]


def hessian_part(repeats: int, width: int = 20) -> None:
    """Structured vs autodiff Hessian, interleaved calls, medians and their ratio."""
    print(
        f"n = k = {width}; ms, median of {repeats} interleaved calls after one compile call; "
        "rel = ‖H − H_autodiff‖/‖H_autodiff‖"
    )
    header = (
        f"{'act':>8} {'d':>4} {'P':>5} {'grad ms':>8} {'structured ms':>14} "
        f"{'autodiff ms':>12} {'ratio':>7} {'rel':>8}"
    )
    print(header)
    print("-" * len(header))
    for act, d in HESSIAN_CASES:
        spec = make_spec(d, [width], act, bias=False)
        teacher = random_teacher(spec, jax.random.PRNGKey(0))
        theta = init_params(spec, jax.random.PRNGKey(1))
        obj = gaussian_objective(spec, teacher)
        fns = {"grad": obj.grad, "structured": obj.hessian, "autodiff": autodiff_hessian(obj)}
        out = {name: jax.block_until_ready(fn(theta)) for name, fn in fns.items()}
        rel = float(
            jax.numpy.linalg.norm(out["structured"] - out["autodiff"])
            / jax.numpy.linalg.norm(out["autodiff"])
        )
        runs: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn(theta))
                runs[name].append(time.perf_counter() - t0)
        med = {name: 1e3 * statistics.median(r) for name, r in runs.items()}
        print(
            f"{act:>8} {d:>4} {spec.n_params:>5} {med['grad']:8.3f} {med['structured']:14.2f} "
            f"{med['autodiff']:12.1f} {med['autodiff'] / med['structured']:7.1f} {rel:8.1e}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=["objective", "hessian"],
        default="objective",
        help="objective: infinite vs finite data (default); hessian: structured vs autodiff",
    )
    parser.add_argument("--activation", default="erf")
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--widths", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--samples", type=int, nargs="+", default=[10**3, 10**4, 10**5])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--max-hessian-work",
        type=float,
        default=2e10,
        help="skip a finite-data Hessian when N·P² exceeds this (it would take minutes)",
    )
    args = parser.parse_args()
    if args.part == "hessian":
        hessian_part(args.repeats)
        return

    print(
        f"activation {args.activation}; times in ms (median of {args.repeats}); "
        "compile = first call in s"
    )
    header = (
        f"{'d':>4} {'k':>3} {'P':>5} {'data':>9} {'grad ms':>9} {'hess ms':>9} {'compile s':>10}"
    )
    print(header)
    print("-" * len(header))
    for d in args.dims:
        for k in args.widths:
            spec = make_spec(d, [k], args.activation, bias=False)
            teacher = random_teacher(spec, jax.random.PRNGKey(0))
            theta = init_params(spec, jax.random.PRNGKey(1))
            rows = [("infinite", gaussian_objective(spec, teacher))]
            for n in args.samples:
                data = make_dataset(teacher, "gaussian", n, seed=2)
                rows.append((f"N={n:.0e}", mse_objective(spec, data), n))
            for row in rows:
                label, obj = row[0], row[1]
                c_g, t_g = _time(obj.grad, theta, args.repeats)
                n = row[2] if len(row) > 2 else 0
                if n * spec.n_params**2 > args.max_hessian_work:
                    hess = "skipped"
                    c_h = 0.0
                else:
                    c_h, t_h = _time(obj.hessian, theta, args.repeats)
                    hess = f"{1e3 * t_h:9.2f}"
                print(
                    f"{d:>4} {k:>3} {spec.n_params:>5} {label:>9} {1e3 * t_g:9.3f} {hess:>9} "
                    f"{c_g + c_h:10.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
