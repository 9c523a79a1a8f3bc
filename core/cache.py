"""JAX's persistent compilation cache, shared by the app, the CLI, benchmarks and tests.

XLA compilation of a problem's kernels (the flow's jitted chunk function, the Hessian)
costs seconds on a small CPU, every launch.  With a persistent cache the compiled
executables are stored on disk keyed by a hash of the program (shapes, constants,
compiler flags), so the second launch of the same problem skips compilation.

Call :func:`enable_compilation_cache` once, early (before the first jit runs), from an
entry point: the app, sweep workers (:mod:`core.sweep.execute`), the test session
(``tests/conftest.py``) and benchmarks all set the cache up through it.  The folder is,
in order: the ``path`` argument, ``$LANDSCAPE_JAX_CACHE`` (an empty value disables the
cache), ``$XDG_CACHE_HOME/landscape-explorer/jax``, or ``~/.cache/landscape-explorer/jax``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "LANDSCAPE_JAX_CACHE"


def default_cache_dir() -> Path | None:
    """The cache folder from the environment (``None`` when disabled by an empty env var)."""
    value = os.environ.get(ENV_VAR)
    if value is not None:
        return Path(value).expanduser() if value.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "landscape-explorer" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Switch on JAX's persistent compilation cache; return its folder (or ``None``).

    Every compiled program is cached (``jax_persistent_cache_min_compile_time_secs = 0``):
    on a busy 2-core machine even "fast" compilations take a second.  An unwritable
    folder disables the cache instead of failing: a cache is an optimisation.
    """
    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return None
    settings = {
        "jax_compilation_cache_dir": str(folder),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    if "jax" in sys.modules:
        import jax

        for name, value in settings.items():
            jax.config.update(name, value)
    else:
        # Importing jax takes 1–3 s; a UI calling this before its first frame should not
        # pay for it.  JAX reads its options from upper-case environment variables at
        # import, so set those instead.
        for name, value in settings.items():
            os.environ[name.upper()] = str(value)
    return folder
