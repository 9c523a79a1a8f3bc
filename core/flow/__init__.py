"""Training dynamics on an objective, run in short chunks that a UI can stream.

Continuous gradient flow (``method="flow"``), with per-parameter inverse time scales τ⁻¹,

    dθ/dt = −τ⁻¹ ⊙ ∇L(θ),        θ(t0) = θ0,      θ, τ⁻¹ ∈ ℝ^P,

is integrated either by a diffrax Runge-Kutta solver stepped by hand in a jitted loop
(``solver.step`` plus a ``PIDController``; solver and controller state survive between
chunks), or by a scipy solver stepped on the host:

* explicit adaptive solvers ``tsit5``, ``dopri5``, ``dopri8``;
* stiff (L-stable ESDIRK) solvers ``kvaerno5``, ``kencarp5``.  Their Newton-chord root
  finder needs the Jacobian ∂f/∂θ = −diag(τ⁻¹) ∇²L(θ).  The vector field is a
  :func:`jax.custom_jvp` whose tangent rule is v ↦ −τ⁻¹ ⊙ (H(θ) v) with H =
  ``objective.hessian`` (the exact, structured Hessian): diffrax/lineax build the
  Jacobian with ``jax.linearize`` and materialise it by pushing the identity through the
  linear map, so H is evaluated once per Jacobian (once per step for Kvaerno5/KenCarp5,
  which linearise at the first stage) and never re-derived by nested autodiff of ∇L.

* scipy's ``lsoda`` (ODEPACK's LSODA: Adams ↔ BDF switching by stiffness) and ``bdf``
  (:class:`scipy.integrate.BDF`), stepped one step at a time from the chunk generator with
  jitted callbacks f = −τ⁻¹ ⊙ ∇L and the exact Jacobian ∂f/∂θ = −diag(τ⁻¹) H (one
  Jacobian and one LU factorisation reused over many steps, few f evaluations per step):
  see :func:`core.flow.driver._run_scipy`.

``solver="auto"`` picks ``lsoda`` for P ≤ :data:`AUTO_SCIPY_MAX_PARAMS` and ``tsit5``
above (measurements at that constant).

The diffrax solvers clip each step to land exactly on the next save time, so saved states
carry the full accuracy of the solver (no dense interpolation); the scipy solvers step
freely and save by their dense output (the method's own interpolant, of its order).
Save times are a fixed grid that depends only on the settings (see :func:`save_grid`),
log-spaced over [t_first, t_max]: a paused run resumed from (θ(t), t) saves on the same
grid as an uninterrupted one.

Discrete dynamics (``gd``, ``sgd``, ``adam``) use optax on the same time axis,
t = iterations × lr:  θ_{k+1} = θ_k + τ⁻¹ ⊙ u_k where u_k is the optax update for the
full-batch gradient (gd: u = −lr ∇L; adam) or for a minibatch gradient (sgd, ``batch_size``
samples drawn uniformly with replacement, key = fold_in(PRNGKey(seed), k), so runs are
reproducible and resumable; the gradient of the objective's own loss on the batch,
``extras["batch_grad"]``, whatever the loss: mse, cross-entropy, correlation).  Iterations
run inside ``lax.while_loop``.

For diffrax and optax, all iteration happens in one jitted function per (objective,
settings), compiled once and reused across chunks and across calls (see
:func:`compiled_chunk_functions`).  Each chunk's step budget adapts to the wall clock so
that a chunk takes ~0.2 s and never runs past ``max_seconds``; the budget only decides
where a chunk ends, never the solver's steps (the loop state carries over whole), so the
trajectory on the save grid is the same whatever the machine's load.  The scipy solvers
check the clock after every step and yield a chunk every ~0.2 s or 8 saves.  Runs that stop
early say why (:class:`StopReason`).

Constrained parameters (``student.unit_norm`` / ``train_output``, :mod:`core.manifold`):
the objective is then L∘N (N normalising each first-layer w_i), whose gradient is the
Riemannian one, so every solver above runs unchanged; its ``extras["retract"]`` puts the
state back on the spheres at t0, at every save time (diffrax: the solver's own state too;
scipy and the discrete methods: the saved states, and every optax step) and at the end.

Layout: :mod:`core.flow.settings` (settings, solver names and choice, save grid, stop
reasons), :mod:`core.flow.continuous` (diffrax loop, scipy callbacks),
:mod:`core.flow.discrete` (optax loops), :mod:`core.flow.loops` (their shared pieces),
:mod:`core.flow.driver` (:class:`Chunk`, :func:`run_dynamics`, the wall clock); the
public names are re-exported here.
"""

from core.flow.continuous import BoundConsts
from core.flow.driver import Chunk, compiled_chunk_functions, run_dynamics, run_to_end
from core.flow.settings import (
    AUTO_SCIPY_MAX_PARAMS,
    AUTO_SCIPY_SOLVER,
    AUTO_STIFF_MAX_PARAMS,
    AUTO_STIFF_SOLVER,
    CHUNK_SECONDS,
    EXPLICIT_SOLVERS,
    FIRST_BUDGET,
    JAX_SOLVERS,
    METHODS,
    NONFINITE_STREAK,
    RUNNING,
    SAVES_PER_CHUNK,
    SCIPY_SOLVERS,
    SOLVERS,
    STIFF_SOLVERS,
    DynamicsSettings,
    StopReason,
    resolve_solver,
    save_grid,
    tauinv_array,
)

__all__ = [
    "AUTO_SCIPY_MAX_PARAMS",
    "AUTO_SCIPY_SOLVER",
    "AUTO_STIFF_MAX_PARAMS",
    "AUTO_STIFF_SOLVER",
    "CHUNK_SECONDS",
    "EXPLICIT_SOLVERS",
    "FIRST_BUDGET",
    "JAX_SOLVERS",
    "METHODS",
    "NONFINITE_STREAK",
    "RUNNING",
    "SAVES_PER_CHUNK",
    "SCIPY_SOLVERS",
    "SOLVERS",
    "STIFF_SOLVERS",
    "BoundConsts",
    "Chunk",
    "DynamicsSettings",
    "StopReason",
    "compiled_chunk_functions",
    "resolve_solver",
    "run_dynamics",
    "run_to_end",
    "save_grid",
    "tauinv_array",
]
