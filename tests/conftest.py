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
from helpers import TINY_CONFIG  # tests import it from here too (conftest)

from core.cache import ENV_VAR, enable_compilation_cache

# Exported, so that subprocesses (CLI tests, sweep workers) share the session's cache.
os.environ.setdefault(ENV_VAR, str(Path(tempfile.gettempdir()) / "landscape-explorer-jax-cache"))
enable_compilation_cache()


@pytest.fixture
def tiny_config_path(tmp_path: Path) -> Path:
    """A config file of a tiny problem (P = 9, N = 50, t_max = 100) that runs in ~1 s warm."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture
def synchronous_plots(monkeypatch):
    """Figures built on the event loop (``LinePlot.background = False``): a frame never
    shows a plot still being drawn (snapshot and pilot tests of the plots use it)."""
    from explorer.widgets.plots import LinePlot

    monkeypatch.setattr(LinePlot, "background", False)


@pytest.fixture(autouse=True)
def _narration_off_unless_asked(request, monkeypatch):
    """The narration line (explorer.widgets.narration) is computed in a worker, at a moment
    that depends on machine load; app tests that do not ask for it (``@pytest.mark.narration``)
    run with it hidden, so their frames stay deterministic."""
    if request.node.get_closest_marker("narration") is None:
        from explorer.widgets.narration import NarrationLine

        monkeypatch.setattr(NarrationLine, "enabled", False)
