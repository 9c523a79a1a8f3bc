"""A disk cache of traced programs (:mod:`jax.export`), beside the compilation cache.

JAX's persistent compilation cache (:mod:`core.cache`) skips XLA compilation on a second
launch, but not tracing and lowering: for the flow's chunk function with Kvaerno5 that
is ≈0.6 s of Python in diffrax, optimistix and equinox on every launch.  An
:class:`ExportCached` function is exported once (StableHLO, serialized) into
``<compilation cache>/exported/`` and later launches deserialize it instead of tracing.

A stale program would silently integrate the wrong equations, so the key covers every
input the trace depends on: the caller's ``key_parts`` (for the flow: its solver
settings, the source of :mod:`core.flow` and the printed jaxprs of the objective's
functions, which fix the loss being integrated), the versions of jax, jaxlib, diffrax,
equinox, optimistix and lineax, the backend and x64 mode, and the shapes, dtypes and tree
structure of the arguments.  The packages enter by version *and* by a hash of their
installed ``RECORD`` (the SHA-256 of every installed file), so a reinstall with the same
version string changes the key.  Files carry a SHA-256 of their content; an unreadable or
corrupted file is replaced, never trusted.  Anything that fails here (no cache folder, a
program that cannot be serialized, no ``flatbuffers``) falls back to the plain jitted
function: the cache is only an optimisation.

A deserialized program is code that runs, so the cache is used only in a folder that is
the user's alone: created with mode 0700, owned by the user, not a link, no group or
other permissions; and only files owned by the user, regular, not writable by others,
at most :data:`MAX_FILE_BYTES`.  Otherwise the cache is off for that call (``"off"``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

SUBFOLDER = "exported"
MAX_FILE_BYTES = 512 << 20
_PACKAGES = ("jax", "jaxlib", "diffrax", "equinox", "optimistix", "lineax")
_DIGEST = hashlib.sha256().digest_size


def cache_folder() -> Path | None:
    """``<JAX compilation cache>/exported`` when that cache is on, else ``None``."""
    base = jax.config.jax_compilation_cache_dir
    return Path(base) / SUBFOLDER if base else None


@functools.cache
def _versions() -> str:
    """``name=version:hash-of-RECORD`` of every package the traced program depends on."""
    out = []
    for name in _PACKAGES:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            out.append(f"{name}=?")
            continue
        record = dist.read_text("RECORD") or ""
        digest = hashlib.sha256(record.encode()).hexdigest()[:16]
        out.append(f"{name}={dist.version}:{digest}")
    return ";".join(out)


def _private(folder: Path) -> bool:
    """Create ``folder`` (mode 0700) if needed; whether it is a real folder owned by this
    user with no group/other permissions (a folder of ours from before is tightened to
    0700), inside a parent that only its owner (this user or root) can rename things in."""
    uid = os.getuid()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        parent = os.stat(folder.parent)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if st.st_uid != uid:
            return False
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.fchmod(fd, 0o700)
    except OSError:
        return False
    finally:
        os.close(fd)
    shared = parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not parent.st_mode & stat.S_ISVTX
    return parent.st_uid in (uid, 0) and not shared


def _signature(args: tuple) -> str:
    """Tree structure, shapes, dtypes and weak types of the arguments."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    avals = []
    for leaf in leaves:
        weak = isinstance(leaf, bool | int | float | complex)
        avals.append(f"{np.shape(leaf)}:{jax.numpy.result_type(leaf)}:{weak}")
    return f"{tree}|{','.join(avals)}"


class ExportCached:
    """``jitted(*args)``, served from an exported program on disk when one matches.

    Args:
        jitted: a :func:`jax.jit` function (kept as ``self.jitted``; used directly for
            anything this cache cannot serve).
        key_parts: strings that, with the package versions and the argument
            signature, determine the traced program (see the module docstring).
    """

    def __init__(self, jitted: Callable, key_parts: Sequence[str]) -> None:
        self.jitted = jitted
        self._parts = (
            _versions(),
            jax.default_backend(),
            f"x64={jax.config.jax_enable_x64}",
            *key_parts,
        )
        self._calls: dict[str, Callable] = {}

    def __call__(self, *args: Any) -> Any:
        sig = _signature(args)
        call = self._calls.get(sig)
        if call is None:
            call = self._calls[sig] = self._resolve(sig, args)
        return call(*args)

    def _key(self, sig: str) -> str:
        """The file name: a hash of the key parts and the argument signature."""
        return hashlib.sha256("\n".join((*self._parts, sig)).encode()).hexdigest()

    def _resolve(self, sig: str, args: tuple) -> Callable:
        folder = cache_folder()
        if folder is None or not _private(folder):
            return self.jitted
        path = folder / f"{self._key(sig)}.jaxexport"
        loaded = _load(path)
        if loaded is not None:
            return _jit(loaded)
        try:
            exported = jax.export.export(self.jitted)(*args)
            _store(path, bytes(exported.serialize()))
        except Exception:  # unserializable program, no flatbuffers, disk full, ...
            return self.jitted
        return _jit(exported)


def _jit(exported) -> Callable:
    """The exported program as a jitted function, on the default device.

    Explicit shardings: otherwise the arrays it returns (committed to the device) would
    be lowered differently from the first call's fresh inputs when fed back (the flow's
    carry), and that second program compiled again.
    """
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.jit(exported.call, in_shardings=device, out_shardings=device)


def _load(path: Path):
    """The exported program in ``path``, or ``None`` (missing, corrupted, incompatible,
    not the user's own regular file, writable by others, too large)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.getuid()
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            or st.st_size > MAX_FILE_BYTES
        ):
            return None
        try:
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError:
            return None
    digest, blob = data[:_DIGEST], data[_DIGEST:]
    if len(data) <= _DIGEST or hashlib.sha256(blob).digest() != digest:
        return None
    try:
        return jax.export.deserialize(bytearray(blob))
    except Exception:  # any failure means "not usable": export again
        return None


def _store(path: Path, blob: bytes) -> None:
    """Write digest + blob atomically (a temporary file, mode 0600, renamed into place)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".jaxexport")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(hashlib.sha256(blob).digest() + blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
