"""Pieces shared by the jitted chunk loops of :mod:`core.flow.continuous` (diffrax) and
:mod:`core.flow.discrete` (optax): save buffers, the loop condition, recording a save."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from core.flow.settings import RUNNING


def _save_buffers(time_key: str, time_dtype, size: int, p: int) -> dict:
    """Empty save slots of one chunk: times (``time_key``), states, loss, ‖∇L‖∞, and the
    counters ``n`` (saves written) and ``attempts`` (loop iterations)."""
    return {
        time_key: jnp.zeros(size, time_dtype),
        "y": jnp.zeros((size, p)),
        "loss": jnp.zeros(size),
        "gnorm": jnp.zeros(size),
        "n": jnp.asarray(0, jnp.int64),
        "attempts": jnp.asarray(0, jnp.int64),
    }


def _chunk_cond(n_valid, budget):
    """The chunk loop runs while saves remain, the iteration budget lasts and no stop."""

    def cond(state):
        c, o = state
        return (o["n"] < n_valid) & (o["attempts"] < budget) & (c["status"] == RUNNING)

    return cond


def _record_save(out: dict, saved, time_key: str, time_value, y_new, value_and_grad):
    """Evaluate (L, ‖∇L‖∞) at a save point and write it into slot ``out["n"]`` of the buffers.

    Shared by the flow and the discrete loops.  A save whose loss or gradient is not
    finite is not recorded (``bad_save``): the caller stops with "nonfinite" and keeps the
    previous state.  Returns (out, record, bad_save, gnorm).
    """
    loss, g = jax.lax.cond(
        saved,
        lambda: value_and_grad(y_new),
        lambda: (jnp.zeros((), y_new.dtype), jnp.zeros_like(y_new)),
    )
    gnorm = jnp.max(jnp.abs(g))
    bad_save = saved & ~(jnp.isfinite(loss) & jnp.isfinite(gnorm))
    record = saved & ~bad_save
    n = out["n"]
    out = {
        time_key: out[time_key].at[n].set(jnp.where(record, time_value, out[time_key][n])),
        "y": out["y"].at[n].set(jnp.where(record, y_new, out["y"][n])),
        "loss": out["loss"].at[n].set(jnp.where(record, loss, out["loss"][n])),
        "gnorm": out["gnorm"].at[n].set(jnp.where(record, gnorm, out["gnorm"][n])),
        "n": n + record.astype(jnp.int64),
        "attempts": out["attempts"] + 1,
    }
    return out, record, bad_save, gnorm
