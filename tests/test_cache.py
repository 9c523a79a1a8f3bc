"""Tests of core.cache: the persistent compilation cache is on, stores programs, lazy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core import cache

ROOT = Path(__file__).resolve().parents[1]

# core/__init__ imports jax (to turn on float64), so load core/cache.py on its own to
# exercise the route a UI takes before anything has imported jax.
SCRIPT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("cache_alone", sys.argv[2])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
folder = mod.enable_compilation_cache(sys.argv[1])
assert "jax" not in sys.modules, "enabling the cache must not import jax"
import jax, jax.numpy as jnp
assert jax.config.jax_compilation_cache_dir == str(folder), jax.config.jax_compilation_cache_dir
jax.jit(lambda x: jnp.sin(x) * 3.0 + x)(jnp.arange(5.0)).block_until_ready()
print("ok")
"""


def test_enable_before_jax_import_caches_compiled_programs(tmp_path):
    folder = tmp_path / "jax-cache"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("LANDSCAPE_JAX_CACHE", None)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), str(ROOT / "core" / "cache.py")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert any(folder.iterdir()), "no compiled program was written to the cache"


def test_default_dir_and_disable(monkeypatch, tmp_path):
    monkeypatch.setenv("LANDSCAPE_JAX_CACHE", "")
    assert cache.default_cache_dir() is None
    assert cache.enable_compilation_cache() is None
    monkeypatch.delenv("LANDSCAPE_JAX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.default_cache_dir() == tmp_path / "landscape-explorer" / "jax"


def test_enable_after_jax_import_updates_config(tmp_path, monkeypatch):
    import jax

    old = jax.config.jax_compilation_cache_dir
    try:
        folder = cache.enable_compilation_cache(tmp_path / "c")
        assert folder == tmp_path / "c" and folder.is_dir()
        assert jax.config.jax_compilation_cache_dir == str(folder)
    finally:
        jax.config.update("jax_compilation_cache_dir", old)


def test_unwritable_folder_disables_instead_of_failing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cache.enable_compilation_cache(blocker / "sub") is None
