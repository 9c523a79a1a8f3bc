"""Shared test fixtures (small on purpose).

JAX's persistent compilation cache is switched on for the test session: most test time
on a small CPU box is XLA compilation of the same tiny programs, run after run.
Set ``LANDSCAPE_JAX_CACHE=""`` to disable it or to a folder to move it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from core.cache import ENV_VAR, enable_compilation_cache

# Exported, so that subprocesses (CLI tests, sweep workers) share the session's cache.
os.environ.setdefault(ENV_VAR, str(Path(tempfile.gettempdir()) / "landscape-explorer-jax-cache"))
enable_compilation_cache()

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


@pytest.fixture
def tiny_config_path(tmp_path: Path) -> Path:
    """A config file of a tiny problem (P = 9, N = 50, t_max = 100) that runs in ~1 s warm."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture(autouse=True)
def _narration_off_unless_asked(request, monkeypatch):
    """The narration line (explorer.widgets.narration) is computed in a worker, at a moment
    that depends on machine load; app tests that do not ask for it (``@pytest.mark.narration``)
    run with it hidden, so their frames stay deterministic."""
    if request.node.get_closest_marker("narration") is None:
        from explorer.widgets.narration import NarrationLine

        monkeypatch.setattr(NarrationLine, "enabled", False)
