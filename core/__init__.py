"""Pure JAX numerics for teacher-student MLP loss landscapes (no UI imports).

Importing :mod:`core` turns on float64 in JAX: every routine here assumes it.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
