"""Finite input samples and data sets.

Input distributions on ℝ^d:
  * ``gaussian``: x ~ N(0, I_d);
  * ``uniform``: x ~ U([−√3, √3]^d) (zero mean, unit variance per coordinate);
  * ``sobol``: a scrambled Sobol sequence (scipy.stats.qmc) pushed through the standard
    normal quantile function, i.e. a quasi-Monte-Carlo sample of N(0, I_d).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri

from core.objectives import Dataset
from core.teachers import Teacher

INPUT_KINDS = ("gaussian", "uniform", "sobol")


def sample_inputs(kind: str, n_samples: int, input_dim: int, seed: int) -> jax.Array:
    """N input points of shape (N, d) from the named distribution, reproducible from ``seed``."""
    if kind == "gaussian":
        return jax.random.normal(jax.random.PRNGKey(seed), (n_samples, input_dim))
    if kind == "uniform":
        s3 = np.sqrt(3.0)
        return jax.random.uniform(
            jax.random.PRNGKey(seed), (n_samples, input_dim), minval=-s3, maxval=s3
        )
    if kind == "sobol":
        # Imported here: scipy.stats costs ~1 s of start-up, and only Sobol needs it.
        from scipy.stats import qmc

        with warnings.catch_warnings():
            # Sobol balance is best at powers of two, but any N is a valid QMC sample.
            warnings.simplefilter("ignore", UserWarning)
            u = qmc.Sobol(d=input_dim, scramble=True, seed=seed).random(n_samples)
        u = np.clip(u, 1e-12, 1 - 1e-12)
        return jnp.asarray(ndtri(u))  # Φ⁻¹(u)
    raise ValueError(f"unknown input kind {kind!r}; choose one of {', '.join(INPUT_KINDS)}")


def make_dataset(teacher: Teacher, kind: str, n_samples: int, seed: int) -> Dataset:
    """Inputs from :func:`sample_inputs` labelled by the teacher: y = teacher(x), shape (N, k)."""
    x = sample_inputs(kind, n_samples, teacher.input_dim, seed)
    return Dataset(x, teacher(x))
