"""Pure JAX numerics for teacher-student MLP loss landscapes (no UI imports).

Importing :mod:`core` turns on float64 in JAX: every routine here assumes it.  When JAX
is not imported yet (the explorer's setup screen imports only the JAX-free
:mod:`core.config` and :mod:`core.spec`), the switch is the ``JAX_ENABLE_X64``
environment variable that JAX reads at import, so that the first frame does not wait
~1 s for JAX.
"""

import os
import sys

if "jax" in sys.modules:
    sys.modules["jax"].config.update("jax_enable_x64", True)
else:
    os.environ["JAX_ENABLE_X64"] = "True"

__version__ = "0.1.0"
