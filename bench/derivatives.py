"""Benchmark: our structured Hessian and closed-form gradient vs PyTorch, single-threaded.

    python bench/derivatives.py [--quick]
    python bench/derivatives.py --numpy      # ∇L against numpy only (no torch needed)

Grid: d = 2, one hidden layer of k ∈ {10, 50, 100} softplus neurons with biases, scalar
output, N ∈ {100, 1000, 10000} Gaussian inputs with random targets, float64, ONE thread for
both frameworks.  Times are process-CPU-time medians over ≥ 5 repeats after a warm-up
(compile) call; a torch baseline that takes seconds per call is repeated fewer times and
the table says so.

Columns:
  ours H      — ``mse_objective(...).hessian`` (structured, exact)
  floor       — the matrix product JᵀJ alone for a random J of shape (N, P), timed in this run
  t.a.f.H     — ``torch.autograd.functional.hessian`` (P double-backward passes)
  t.func.H    — ``torch.func.hessian`` (= jacfwd(jacrev)); it batches all P tangents through
                (N, k) intermediates, so where one such batch would exceed ~0.8 GB it is timed
                on the first N′ samples and scaled by N/N′ (its cost is linear in N), marked "~"
  grad        — our ``grad`` vs torch ``loss.backward()`` (both include the forward pass)
``--numpy``: our ``grad`` (one hidden layer, d = 2, softplus, biases) against the same
forward/backward pass written in numpy (one exp(−|z|) shared by σ and σ′, log1p), and
against our previous softplus path (σ and σ′ evaluated separately with XLA's log1p,
``apply_per_neuron``), at P = 21 and 101, N = 10³ and 10⁴, one thread, process CPU time.
Peak memory of our Hessian at k = 100, N = 10⁴ is measured in a fresh subprocess
(the VmHWM high-water mark after − RSS before the first call, so it includes XLA
compilation).
"""

from __future__ import annotations

import os

# One thread for XLA: must be set before jax is imported.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core  # noqa: F401  (float64)
from core.networks import init_params, make_spec, unflatten
from core.objectives import Dataset, mse_objective

TORCH_FUNC_BYTES = 0.8e9  # largest single batched (P, N, k) intermediate we let torch.func build


def timed(fn, repeats: int = 5, slow_s: float = 1.0) -> tuple[float, int]:
    """Median CPU time (s) of ``fn()`` after a warm-up call; fewer repeats when slow.

    Process CPU time (all threads), not wall time: with one compute thread per framework
    it equals wall time on an idle machine, and it is not inflated when other jobs share
    the cores (this benchmark was written on a box with 2 cores and ~6 busy users).
    """
    fn()  # warm-up: compilation / tracing
    t0 = time.process_time()
    fn()
    first = time.process_time() - t0
    if first > 10 * slow_s:
        repeats = 1
    elif first > slow_s:
        repeats = 3
    ts = [first]
    for _ in range(repeats - 1):
        t0 = time.process_time()
        fn()
        ts.append(time.process_time() - t0)
    return float(np.median(ts)), repeats


def jax_call(f, *args):
    return lambda: jax.block_until_ready(f(*args))


def torch_problem(spec, theta, x, y):
    """Torch loss on flat θ and on leaf tensors, identical to L = ½·mean(r²)."""
    import torch

    k, d = spec.widths[0], spec.input_dim
    xt = torch.tensor(np.asarray(x))
    yt = torch.tensor(np.asarray(y))

    def loss_flat(th):
        w1 = th[: k * d].reshape(k, d)
        b1 = th[k * d : k * d + k]
        w2 = th[k * d + k : k * d + 2 * k].reshape(1, k)
        b2 = th[k * d + 2 * k :]
        out = torch.nn.functional.softplus(xt @ w1.T + b1) @ w2.T + b2
        return 0.5 * ((out - yt) ** 2).mean()

    p = unflatten(spec, np.asarray(theta))
    leaves = [torch.tensor(np.asarray(p[n]), requires_grad=True) for n in spec.shapes]

    def grad_step():
        for t in leaves:
            t.grad = None
        w1, b1, w2, b2 = leaves
        out = torch.nn.functional.softplus(xt @ w1.T + b1) @ w2.T + b2
        (0.5 * ((out - yt) ** 2).mean()).backward()
        return leaves[0].grad

    return loss_flat, grad_step, torch.tensor(np.asarray(theta))


def bench_point(k: int, n: int, repeats: int) -> dict:
    import torch

    spec = make_spec(2, [k], "softplus", bias=True)
    P = spec.n_params
    keys = jax.random.split(jax.random.PRNGKey(k * 100_003 + n), 4)
    theta = init_params(spec, keys[0])
    x = jax.random.normal(keys[1], (n, 2))
    y = jax.random.normal(keys[2], (n, 1))
    obj = mse_objective(spec, Dataset(x, y))
    jmat = jax.random.normal(keys[3], (n, P))
    floor_fn = jax.jit(lambda j: j.T @ j)

    row: dict = {"k": k, "N": n, "P": P}
    row["ours_h"], _ = timed(jax_call(obj.hessian, theta), repeats)
    row["floor"], _ = timed(jax_call(floor_fn, jmat), repeats)
    row["ours_g"], _ = timed(jax_call(obj.grad, theta), max(repeats, 20))

    loss_flat, grad_step, th_t = torch_problem(spec, theta, x, y)
    h_taf = torch.autograd.functional.hessian(loss_flat, th_t)
    err = np.max(np.abs(h_taf.numpy() - np.asarray(obj.hessian(theta))))
    row["max_abs_diff_vs_torch"] = float(err / np.max(np.abs(h_taf.numpy())))
    row["taf_h"], row["taf_reps"] = timed(
        lambda: torch.autograd.functional.hessian(loss_flat, th_t), repeats
    )
    n_sub = n
    while P * n_sub * k * 8 > TORCH_FUNC_BYTES and n_sub > 1:
        n_sub //= 10
    if n_sub == n:
        hfn = torch.func.hessian(loss_flat)
        row["tfunc_h"], row["tfunc_reps"] = timed(lambda: hfn(th_t), repeats)
        row["tfunc_extrapolated_from"] = None
    else:
        sub_loss, _, _ = torch_problem(spec, theta, x[:n_sub], y[:n_sub])
        hfn = torch.func.hessian(sub_loss)
        t_sub, row["tfunc_reps"] = timed(lambda: hfn(th_t), repeats)
        row["tfunc_h"] = t_sub * n / n_sub
        row["tfunc_extrapolated_from"] = n_sub
    row["torch_g"], _ = timed(grad_step, max(repeats, 20))
    return row


def peak_memory_child(k: int, n: int) -> None:
    """Run in a subprocess: print JSON with the peak-RSS growth of one Hessian call."""

    spec = make_spec(2, [k], "softplus", bias=True)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    theta = init_params(spec, keys[0])
    x = jax.random.normal(keys[1], (n, 2))
    y = jax.random.normal(keys[2], (n, 1))
    obj = mse_objective(spec, Dataset(x, y))
    jax.block_until_ready((theta, x, y))

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return 1024 * next(int(line.split()[1]) for line in f if line.startswith(key))

    # Current RSS before (ru_maxrss is a high-water mark that imports may already have set).
    before = status("VmRSS:")
    jax.block_until_ready(obj.hessian(theta))  # compile + run
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve, so a child started by a
    # parent that had grown to GBs (the torch baselines) would report the parent's peak.
    first = status("VmHWM:") - before
    # Run alone: reset the kernel's high-water mark (clear_refs 5), run again, read VmHWM.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS:")
    jax.block_until_ready(obj.hessian(theta))
    run_only = status("VmHWM:") - before
    print(json.dumps({"delta_bytes": first, "run_bytes": run_only}))


def xla_memory(k: int, n: int) -> tuple[int, int]:
    """XLA's compiled buffer sizes (bytes) for our Hessian and for jax.hessian of the loss."""
    import functools

    from core import objectives
    from core.networks import forward

    spec = make_spec(2, [k], "softplus", bias=True)
    args = [jax.ShapeDtypeStruct(s, jnp.float64) for s in [(spec.n_params,), (n, 2), (n, 1), (n,)]]
    ours = jax.jit(functools.partial(objectives._hessian, spec=spec, maxnorm=None))
    m = ours.lower(*args).compile().memory_analysis()

    def plain(theta, x, y, w):
        r = forward(spec, theta, x) - y
        return 0.5 * jnp.sum(w[:, None] * r * r)

    m2 = jax.jit(jax.hessian(plain)).lower(*args).compile().memory_analysis()
    return (
        m.temp_size_in_bytes + m.output_size_in_bytes,
        m2.temp_size_in_bytes + m2.output_size_in_bytes,
    )


def fmt_ms(s: float) -> str:
    return f"{1e3 * s:.3g}"


def table(rows: list[dict]) -> str:
    head = (
        "| k | N | P | ours H (ms) | floor JᵀJ (ms) | ours/floor | t.a.f.H (ms) | t.a.f./ours"
        " | t.func.H (ms) | t.func/ours | ours grad (ms) | torch grad (ms) | torch/ours grad"
        " | rel. diff vs torch |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        taf = fmt_ms(r["taf_h"]) + ("" if r["taf_reps"] >= 5 else f" ({r['taf_reps']} rep)")
        tf = fmt_ms(r["tfunc_h"])
        if r["tfunc_extrapolated_from"]:
            n_sub = r["tfunc_extrapolated_from"]
            tf = f"~{tf} (N′={n_sub}×{r['N'] // n_sub})"
        elif r["tfunc_reps"] < 5:
            tf += f" ({r['tfunc_reps']} rep)"
        lines.append(
            f"| {r['k']} | {r['N']} | {r['P']} | {fmt_ms(r['ours_h'])} | {fmt_ms(r['floor'])}"
            f" | {r['ours_h'] / r['floor']:.2f} | {taf} | {r['taf_h'] / r['ours_h']:.1f}"
            f" | {tf} | {r['tfunc_h'] / r['ours_h']:.1f} | {fmt_ms(r['ours_g'])}"
            f" | {fmt_ms(r['torch_g'])} | {r['torch_g'] / r['ours_g']:.2f}"
            f" | {r['max_abs_diff_vs_torch']:.1e} |"
        )
    return "\n".join(lines)


def numpy_softplus_grad(k: int, d: int, x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """θ ↦ ∇L for one hidden softplus layer with biases and one output, in numpy."""

    def grad(theta: np.ndarray) -> np.ndarray:
        w1 = theta[: k * d].reshape(k, d)
        b1 = theta[k * d : k * d + k]
        a = theta[k * d + k : k * d + 2 * k]
        z = x @ w1.T + b1
        e = np.exp(-np.abs(z))
        h = np.maximum(z, 0.0) + np.log1p(e)
        s = np.where(z >= 0.0, 1.0, e) / (1.0 + e)
        r = w * (h @ a + theta[-1] - y[:, 0])
        eh = (r[:, None] * a) * s
        return np.concatenate([(eh.T @ x).ravel(), eh.sum(0), r @ h, [r.sum()]])

    return grad


def numpy_rows() -> str:
    """The ``--numpy`` table: ms per ∇L, ours / numpy / our previous path."""
    from core import objectives

    lines = [
        "| P | N | ours ms | numpy ms | previous ms | ours / numpy | ours / previous | max |Δ| |",
        "|---|---|---|---|---|---|---|---|",
    ]
    previous = objectives._activation_and_derivative
    for k in (5, 25):
        for n in (1000, 10_000):
            spec = make_spec(2, [k], "softplus", bias=True)
            rng = np.random.default_rng(0)
            x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 1))
            theta = np.asarray(init_params(spec, jax.random.PRNGKey(0)))
            ours = mse_objective(spec, Dataset(jnp.asarray(x), jnp.asarray(y))).grad
            ng = numpy_softplus_grad(k, 2, x, y, np.full(n, 1.0 / n))
            objectives._activation_and_derivative = lambda names, z: (
                objectives.apply_per_neuron(names, z, 0),
                objectives.apply_per_neuron(names, z, 1),
            )
            try:
                old = mse_objective(spec, Dataset(jnp.asarray(x), jnp.asarray(y))).grad
                old(theta)  # traced with the previous activation path
            finally:
                objectives._activation_and_derivative = previous
            diff = float(np.max(np.abs(np.asarray(ours(theta)) - ng(theta))))
            t_ours, _ = timed(jax_call(ours, theta), 200)
            t_np, _ = timed(lambda ng=ng, theta=theta: ng(theta), 200)
            t_old, _ = timed(jax_call(old, theta), 200)
            lines.append(
                f"| {spec.n_params} | {n} | {t_ours * 1e3:.3f} | {t_np * 1e3:.3f} "
                f"| {t_old * 1e3:.3f} | {t_ours / t_np:.2f} | {t_ours / t_old:.2f} | {diff:.1e} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="k=10 only, N ≤ 1000, 5 repeats")
    parser.add_argument("--peak-child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--numpy", action="store_true", help="only ∇L against numpy")
    args = parser.parse_args()
    if args.numpy:
        print(f"jax {jax.__version__}, numpy {np.__version__}, 1 thread, float64")
        print(numpy_rows())
        return
    if args.peak_child:
        peak_memory_child(*args.peak_child)
        return

    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    ks = (10,) if args.quick else (10, 50, 100)
    ns = (100, 1000) if args.quick else (100, 1000, 10_000)
    print(f"jax {jax.__version__}, torch {torch.__version__}, 1 thread each, float64", flush=True)
    rows = []
    for k in ks:
        for n in ns:
            rows.append(bench_point(k, n, repeats=5))
            print(f"  done k={k} N={n}", file=sys.stderr, flush=True)
    print(table(rows))

    k, n = (10, 1000) if args.quick else (100, 10_000)
    out = subprocess.run(
        [sys.executable, __file__, "--peak-child", str(k), str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak = json.loads(out.stdout.strip().splitlines()[-1])
    ours_xla, naive_xla = xla_memory(k, n)
    print(
        f"\nPeak memory, our Hessian at k={k}, N={n}: peak RSS grew by "
        f"{peak['delta_bytes'] / 2**20:.0f} MiB over the RSS just before the first call "
        f"(XLA compilation + run), {peak['run_bytes'] / 2**20:.0f} MiB for a compiled run "
        f"alone. XLA buffers: ours {ours_xla / 2**20:.0f} MiB, "
        f"jax.hessian of the loss {naive_xla / 2**30:.1f} GiB."
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "peak": peak}, indent=1))


if __name__ == "__main__":
    main()
