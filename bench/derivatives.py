"""Benchmark: our structured Hessian and closed-form gradient vs PyTorch, single-threaded.

    python bench/derivatives.py [--quick] [--torch-site DIR]
    python bench/derivatives.py --crossentropy [--quick] [--torch-site DIR]
    python bench/derivatives.py --numpy      # ∇L against numpy only (no torch needed)

torch is not a dependency of the project.  Install a CPU build in a separate venv
(``python3 -m venv /work/torchenv && /work/torchenv/bin/pip install torch``) and pass its
site-packages as ``--torch-site``: the folder is *appended* to ``sys.path``, so torch comes
from there and everything else (numpy, jax) from the project's environment.  Without
torch the script still runs: our columns are timed and the torch columns print "—",
with one line saying so.

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

``--crossentropy``: the same grid's shape with K = 3 softmax outputs and integer labels,
L = −(1/N) Σ_n log softmax(f(x_n))[c_n] — ours is ``crossentropy_objective(...,
gauge=False)`` (the bare cross-entropy; the gauge term is a constant matrix MᵀM/K),
torch's ``F.cross_entropy`` (mean reduction) on the same flat θ.  Before any timing the
loss, ∇L and ∇²L are compared with torch's (relative max difference, must be < 1e-10).
Timing is *interleaved*: each repeat calls ours, then torch's t.a.f.H, then torch.func.H,
so a change of load hits all of them alike; medians over the repeats, ratios of medians.
Load average (1 min) is printed before and after.
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


def load_torch(site: str | None):
    """torch (one thread), or None with a line saying why; ``site`` is appended to sys.path."""
    if site:
        if not Path(site).is_dir():
            sys.exit(f"--torch-site: {site} is not a folder")
        sys.path.append(site)
    try:
        import torch
    except ImportError as exc:
        print(
            f'torch not importable ({exc}): torch columns skipped ("—"). Install a CPU torch'
            " in a separate venv and pass its site-packages with --torch-site.",
            flush=True,
        )
        return None
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    return torch


def torch_func_rows(P: int, n: int, k: int) -> int:
    """Largest N′ ≤ n (n/10^j) whose batched (P, N′, k) torch.func intermediate fits."""
    n_sub = n
    while P * n_sub * k * 8 > TORCH_FUNC_BYTES and n_sub > 1:
        n_sub //= 10
    return n_sub


def bench_point(k: int, n: int, repeats: int, torch=None) -> dict:
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
    if torch is None:
        return row

    loss_flat, grad_step, th_t = torch_problem(spec, theta, x, y)
    h_taf = torch.autograd.functional.hessian(loss_flat, th_t)
    err = np.max(np.abs(h_taf.numpy() - np.asarray(obj.hessian(theta))))
    row["max_abs_diff_vs_torch"] = float(err / np.max(np.abs(h_taf.numpy())))
    row["taf_h"], row["taf_reps"] = timed(
        lambda: torch.autograd.functional.hessian(loss_flat, th_t), repeats
    )
    n_sub = torch_func_rows(P, n, k)
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


#: The timing columns every table starts with (see :func:`_timing_cells`).
TIMING_HEAD = (
    "| k | N | P | ours H (ms) | floor JᵀJ (ms) | ours/floor | t.a.f.H (ms) | t.a.f./ours"
    " | t.func.H (ms) | t.func/ours | ours grad (ms) | torch grad (ms) | torch/ours grad"
)


def _timing_cells(r: dict, *, reps: bool) -> list[str]:
    """The 13 cells of :data:`TIMING_HEAD` for row ``r`` ("—" for torch's without torch);
    ``reps``: torch's Hessian times say how many repeats they are when fewer than 5."""
    cells = [str(r["k"]), str(r["N"]), str(r["P"]), fmt_ms(r["ours_h"]), fmt_ms(r["floor"])]
    cells.append(f"{r['ours_h'] / r['floor']:.2f}")
    if "taf_h" not in r:  # no torch
        return [*cells, "—", "—", "—", "—", fmt_ms(r["ours_g"]), "—", "—"]
    taf = fmt_ms(r["taf_h"])
    if reps and r["taf_reps"] < 5:
        taf += f" ({r['taf_reps']} rep)"
    tf = fmt_ms(r["tfunc_h"])
    if r["tfunc_extrapolated_from"]:
        n_sub = r["tfunc_extrapolated_from"]
        tf = f"~{tf} (N′={n_sub}×{r['N'] // n_sub})"
    elif reps and r["tfunc_reps"] < 5:
        tf += f" ({r['tfunc_reps']} rep)"
    return [
        *cells,
        taf,
        f"{r['taf_h'] / r['ours_h']:.1f}",
        tf,
        f"{r['tfunc_h'] / r['ours_h']:.1f}",
        fmt_ms(r["ours_g"]),
        fmt_ms(r["torch_g"]),
        f"{r['torch_g'] / r['ours_g']:.2f}",
    ]


def _markdown(extra_head: str, rows: list[list[str]]) -> str:
    """A Markdown table: :data:`TIMING_HEAD` and the columns ``extra_head`` ("| a | b"),
    one line of cells a row."""
    n_cols = (TIMING_HEAD + extra_head).count("|")
    lines = [TIMING_HEAD + extra_head + " |", "|" + "---|" * n_cols]
    return "\n".join([*lines, *("| " + " | ".join(cells) + " |" for cells in rows)])


def table(rows: list[dict]) -> str:
    cells = []
    for r in rows:
        diff = f"{r['max_abs_diff_vs_torch']:.1e}" if "taf_h" in r else "—"
        cells.append([*_timing_cells(r, reps=True), diff])
    return _markdown(" | rel. diff vs torch", cells)


# ------------------------------------------------------------------- cross-entropy rows

CE_CLASSES = 3  # K softmax outputs of the cross-entropy rows


def torch_ce_problem(torch, spec, theta, x, labels):
    """Torch cross-entropy on flat θ (for the Hessians) and on leaf tensors (for ∇L).

    Logits f = W₂ softplus(W₁x + b₁) + b₂ (any depth of softplus layers, spec's layout),
    L = F.cross_entropy(f, c) = −(1/N) Σ_n log softmax(f_n)[c_n].
    """
    fn = torch.nn.functional
    xt = torch.tensor(np.asarray(x))
    ct = torch.tensor(np.asarray(labels), dtype=torch.long)
    off, shapes = spec.offsets(), spec.shapes

    def logits(get):
        h = xt
        for layer in range(1, spec.n_layers + 1):
            h = h @ get(f"w{layer}").T
            if f"b{layer}" in shapes:
                h = h + get(f"b{layer}")
            if layer < spec.n_layers:
                h = fn.softplus(h)
        return h

    def loss_flat(th):
        def get(name):
            return th[off[name]].reshape(shapes[name])

        return fn.cross_entropy(logits(get), ct)

    leaves = {
        name: torch.tensor(np.asarray(theta)[off[name]].reshape(shape), requires_grad=True)
        for name, shape in shapes.items()
    }

    def grad_step():
        for t in leaves.values():
            t.grad = None
        fn.cross_entropy(logits(leaves.__getitem__), ct).backward()
        return leaves["w1"].grad

    def flat_grad():
        grad_step()
        return np.concatenate([leaves[name].grad.numpy().ravel() for name in shapes])

    return loss_flat, grad_step, flat_grad


def timed_interleaved(fns: dict, repeats: int = 5, slow_s: float = 1.0) -> dict:
    """{name: (median CPU s, repeats)}: one warm-up each, then rounds that call every ``fns``
    entry once, in order, so that a change of machine load hits all of them alike.

    Rounds: ``repeats``, or 3 / 1 when the slowest first call took > ``slow_s`` / > 10 ``slow_s``.
    """
    for f in fns.values():
        f()  # warm-up: compilation / tracing
    times: dict = {name: [] for name in fns}
    rounds = repeats
    r = 0
    while r < rounds:
        for name, f in fns.items():
            t0 = time.process_time()
            f()
            times[name].append(time.process_time() - t0)
        if r == 0:
            slowest = max(ts[0] for ts in times.values())
            rounds = 1 if slowest > 10 * slow_s else 3 if slowest > slow_s else repeats
        r += 1
    return {name: (float(np.median(ts)), len(ts)) for name, ts in times.items()}


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def ce_point(k: int, n: int, repeats: int, torch=None) -> dict:
    """One cross-entropy row: value check against torch first, then interleaved timings."""
    from core.crossentropy import crossentropy_objective

    spec = make_spec(2, [k], "softplus", bias=True, output_dim=CE_CLASSES)
    P = spec.n_params
    keys = jax.random.split(jax.random.PRNGKey(k * 100_003 + n + 7), 4)
    theta = init_params(spec, keys[0])
    x = jax.random.normal(keys[1], (n, 2))
    labels = np.asarray(jax.random.randint(keys[2], (n,), 0, CE_CLASSES))
    obj = crossentropy_objective(spec, Dataset(x, jnp.asarray(labels)), gauge=False)
    jmat = jax.random.normal(keys[3], (n * CE_CLASSES, P))
    floor_fn = jax.jit(lambda j: j.T @ j)
    row: dict = {"k": k, "N": n, "P": P}
    ours = {"ours_h": jax_call(obj.hessian, theta), "floor": jax_call(floor_fn, jmat)}
    ours_g = {"ours_g": jax_call(obj.grad, theta)}
    if torch is not None:
        loss_flat, grad_step, flat_grad = torch_ce_problem(torch, spec, theta, x, labels)
        th_t = torch.tensor(np.asarray(theta))
        h_t = torch.autograd.functional.hessian(loss_flat, th_t).numpy()
        row["diff_loss"] = rel_diff(obj.loss(theta), loss_flat(th_t).item())
        row["diff_grad"] = rel_diff(obj.grad(theta), flat_grad())
        row["diff_h"] = rel_diff(obj.hessian(theta), h_t)
        worst = max(row["diff_loss"], row["diff_grad"], row["diff_h"])
        if not worst < 1e-10:
            sys.exit(f"cross-entropy k={k} N={n}: ours differs from torch by {worst:.1e}")
        n_sub = torch_func_rows(P, n, k)
        row["tfunc_extrapolated_from"] = None if n_sub == n else n_sub
        sub_loss = loss_flat
        if n_sub < n:
            sub_loss = torch_ce_problem(torch, spec, theta, x[:n_sub], labels[:n_sub])[0]
        hfn = torch.func.hessian(sub_loss)
        ours["taf_h"] = lambda: torch.autograd.functional.hessian(loss_flat, th_t)
        ours["tfunc_h"] = lambda: hfn(th_t)
        ours_g["torch_g"] = grad_step
    for name, (med, reps) in timed_interleaved(ours, repeats).items():
        row[name], row[f"{name}_reps"] = med, reps
    for name, (med, reps) in timed_interleaved(ours_g, max(repeats, 20)).items():
        row[name], row[f"{name}_reps"] = med, reps
    if torch is not None and row["tfunc_extrapolated_from"]:
        row["tfunc_h"] *= n / row["tfunc_extrapolated_from"]
    return row


def ce_table(rows: list[dict]) -> str:
    cells = []
    for r in rows:
        diff = "—"
        if "taf_h" in r:
            diff = f"{r['diff_loss']:.0e}, {r['diff_grad']:.0e}, {r['diff_h']:.0e}"
        rounds = f"{r['ours_h_reps']}, {r['ours_g_reps']}"
        cells.append([*_timing_cells(r, reps=False), diff, rounds])
    return _markdown(" | rel. diff L, ∇L, H vs torch | rounds H, grad", cells)


def ce_rows(quick: bool, torch) -> str:
    """The ``--crossentropy`` table, with the load average before and after."""
    ks = (10,) if quick else (10, 50)
    ns = (100, 1000) if quick else (1000, 10_000)
    load0 = os.getloadavg()[0]
    rows = []
    for k in ks:
        for n in ns:
            rows.append(ce_point(k, n, repeats=5, torch=torch))
            print(f"  done cross-entropy k={k} N={n}", file=sys.stderr, flush=True)
    load1 = os.getloadavg()[0]
    nproc = os.cpu_count()
    return (
        f"Cross-entropy, K = {CE_CLASSES} classes, d = 2, softplus, biases; load average (1 min)"
        f" {load0:.2f} before, {load1:.2f} after, on {nproc} cores\n" + ce_table(rows)
    )


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
    parser.add_argument(
        "--crossentropy", action="store_true", help="only the cross-entropy rows (K = 3)"
    )
    parser.add_argument(
        "--torch-site", help="a separate venv's site-packages holding torch (appended to sys.path)"
    )
    args = parser.parse_args()
    if args.numpy:
        print(f"jax {jax.__version__}, numpy {np.__version__}, 1 thread, float64")
        print(numpy_rows())
        return
    if args.peak_child:
        peak_memory_child(*args.peak_child)
        return

    torch = load_torch(args.torch_site)
    version = f"torch {torch.__version__}" if torch is not None else "no torch"
    print(f"jax {jax.__version__}, {version}, 1 thread each, float64", flush=True)
    if args.crossentropy:
        print(ce_rows(args.quick, torch))
        return
    ks = (10,) if args.quick else (10, 50, 100)
    ns = (100, 1000) if args.quick else (100, 1000, 10_000)
    rows = []
    for k in ks:
        for n in ns:
            rows.append(bench_point(k, n, repeats=5, torch=torch))
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
