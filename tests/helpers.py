"""What several test files (and ``bench/sweep.py``) share: tiny problems, a reference
minimiser, pilot waiting, async test bodies and counting what JAX traces.

Imported as ``helpers`` by the tests (pytest puts ``tests/`` on ``sys.path``) and as
``tests.helpers`` from the repository root.  Nothing here imports JAX or Textual at
module level, so a benchmark can take a config text without paying for either.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

# ----------------------------------------------------------------------------- tiny problems

#: A config file of a tiny problem (d = 2, widths 2, P = 9, N = 50, t_max = 100, no
#: refinement) that runs in ~1 s warm (the ``tiny_config_path`` fixture writes it).
TINY_CONFIG = """\
seed = 3

[teacher]
kind = "random"
input_dim = 2
widths = [2]
activation = "softplus"
bias = true

[student]
widths = [2]
activation = "softplus"
bias = true

[data]
kind = "gaussian"
samples = 50

[dynamics]
method = "flow"
t_max = 100.0
n_saves = 20
max_seconds = 120

[refine]
method = "none"
"""

#: The app tests' problem as a mapping (d = 1, two softplus neurons, N = 50, Tsit5 to
#: t = 1000, Newton refinement): its compilation costs a few seconds.
TINY = {
    "seed": 1,
    "teacher": {"kind": "random", "input_dim": 1, "widths": [2], "activation": "softplus"},
    "student": {"widths": [2], "activation": "softplus", "bias": True},
    "data": {"kind": "gaussian", "samples": 50},
    "dynamics": {"method": "flow", "solver": "tsit5", "t_max": 1e3, "max_seconds": 60},
    "refine": {"method": "newton"},
}


def tiny_mapping(dynamics: dict | None = None, **tables: Any) -> dict:
    """A copy of :data:`TINY` with ``dynamics`` keys updated and whole tables replaced."""
    mapping = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    mapping["dynamics"].update(dynamics or {})
    mapping.update(tables)
    return mapping


def tiny_config(**dynamics: Any) -> Any:
    """:data:`TINY` parsed (a :class:`core.config.Config`), with ``dynamics`` overrides."""
    from core.config import parse_config

    return parse_config(tiny_mapping(dynamics), "tiny")


#: The base config of the sweep tests and ``bench/sweep.py`` (d = 2, widths 2, N = 100,
#: Newton refinement); fill in ``method`` and ``t_max`` with ``str.format``.  The sweep's
#: grid sets the seed.
SWEEP_BASE = """\
seed = 1
[teacher]
kind = "random"
input_dim = 2
widths = [2]
[student]
widths = [2]
[data]
kind = "gaussian"
samples = 100
[dynamics]
method = "{method}"
lr = 0.05
t_max = {t_max}
n_saves = 20
max_seconds = 600
[refine]
method = "newton"
"""


def trust_exact(objective: Any, theta0: Any, gtol: float, maxiter: int) -> Any:
    """scipy's exact-Hessian trust region on ``objective`` (its loss, grad and hessian) from
    ``theta0``: an independent reference minimiser (not :mod:`core.refine`); the
    ``OptimizeResult``."""
    import numpy as np
    import scipy.optimize

    return scipy.optimize.minimize(
        lambda t: float(objective.loss(t)),
        np.asarray(theta0),
        jac=lambda t: np.asarray(objective.grad(t)),
        hess=lambda t: np.asarray(objective.hessian(t)),
        method="trust-exact",
        options={"gtol": gtol, "maxiter": maxiter},
    )


# ----------------------------------------------------------------------------- pilot tests


def sweep_app(folder: Any) -> Any:
    """A bare Textual app showing the sweep view of ``folder`` (``SweepScreen``) with the
    explorer's layout (app.tcss, as in ``ExplorerApp``)."""
    from pathlib import Path

    from textual.app import App

    from explorer.screens.sweep import SweepScreen

    class SweepApp(App):
        CSS_PATH = Path(__file__).resolve().parents[1] / "explorer" / "app.tcss"

        def on_mount(self) -> None:
            self.push_screen(SweepScreen(folder))

    return SweepApp()


async def wait_for(pilot: Any, cond: Callable[[], Any], what: str, timeout: float = 120.0) -> None:
    """Let the app run (the flow and the workers run in threads) until ``cond()`` holds;
    fail naming ``what`` after ``timeout`` seconds (generous: only a failing test waits)."""
    if not isinstance(what, str) or isinstance(timeout, str):
        raise TypeError(f"wait_for(pilot, cond, what: str, timeout), got {what!r}, {timeout!r}")
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        await pilot.pause(0.05)


async def start_run(
    pilot: Any,
    until: str | tuple[str, ...] | None = "done",
    timeout: float = 240.0,
    *,
    config: Any = None,
) -> Any:
    """Press ctrl+r (the setup screen's run), or start ``config`` with ``app.start_run`` (an
    app made with ``autostart=False``: the run screen builds the problem, then pauses);
    wait for the run screen and, unless ``until`` is None, for its state to be ``until``
    (or one of them); return the run screen."""
    from explorer.screens.run import RunScreen

    app = pilot.app
    if config is None:
        await pilot.press("ctrl+r")
    else:
        await pilot.pause(0.1)
        app.start_run(config)
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen", 60.0)
    screen = app.screen
    if until is not None:
        states = (until,) if isinstance(until, str) else until
        await wait_for(pilot, lambda: screen.state in states, f"run state {until}", timeout)
    return screen


async def replay_ready(pilot: Any, timeout: float = 120.0) -> Any:
    """Wait for the replay screen and for its problem (rebuilt in a worker); return it."""
    from explorer.screens.replay import ReplayScreen

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen), "the replay screen", 60)
    screen = app.screen
    await wait_for(pilot, lambda: screen.problem is not None, "the replay's problem", timeout)
    return screen


def sync(fn: Callable) -> Callable:
    """Run an async test body with ``asyncio.run`` (no pytest async plugin is installed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


# ----------------------------------------------------------------------------- JAX tracing

#: JAX's monitoring event for tracing a function to a jaxpr (``jax._src.dispatch``).
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


@contextlib.contextmanager
def jax_traces() -> Iterator[list[str]]:
    """The names of the functions JAX traces inside the block, in order, seen from outside
    the code under test: a :mod:`jax.monitoring` listener on :data:`TRACE_EVENT`, which
    every ``jit`` trace (a cache miss of any jitted function, eager primitives included)
    records.  A program served from a compiled or exported cache is not traced."""
    import jax

    names: list[str] = []

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event == TRACE_EVENT:
            names.append(str(kwargs.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
