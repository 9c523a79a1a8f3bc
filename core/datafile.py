"""Your own data: ``[data] kind = "file"``, an ``.npz`` archive of inputs and targets.

The archive holds

* ``x`` (N, d): the inputs, real and finite, 1 ≤ N ≤ :data:`MAX_FILE_SAMPLES`;
* ``y`` (optional): the targets — (N, K) (or (N,) for K = 1) for the MSE; for the
  cross-entropy integer class labels (N,) in [0, K) or non-negative target rows (N, K)
  (one-hot: the same loss).  Without ``y`` the config's teacher labels ``x``;
* ``w`` (optional, (N,)): non-negative sample weights, not all zero, normalised here to
  sum 1 (the losses are Σ_n w_n ℓ_n; without ``w`` every sample weighs 1/N).

and nothing else (a misspelt name is an error, not an ignored array).  The file is read
once, bounded (:func:`core.files.read_bytes`: a regular file — no symbolic link, FIFO or
device — of at most :data:`MAX_DATA_FILE_BYTES`), its members' uncompressed size capped
likewise, no pickles, and its SHA-256 taken of exactly the bytes parsed.  The config
records that hash (``data.sha256``): a config or session whose file has changed since is
refused, so a replay never silently runs on different data.

JAX-free (the setup screen validates configs without importing JAX); reads are cached by
the file's identity and change time, so re-validating a config does not re-read its data.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.files import FileReadError, npz_arrays, read_bytes, short

#: Largest data file (and largest total of its uncompressed members): 1 GiB holds
#: 10⁵ samples of d = 1000 in float64 with room for y.
MAX_DATA_FILE_BYTES = 1 << 30
#: Most samples in a file: the same cap as generated data (``data.samples``).
MAX_FILE_SAMPLES = 100_000
#: The arrays an archive may hold.
ARRAY_NAMES = ("x", "y", "w")


@dataclass(frozen=True, eq=False)
class DataFile:
    """A validated data file.

    Attributes:
        path: the absolute path read.
        sha256: hex SHA-256 of the file's bytes.
        x: inputs (N, d) float64, read-only.
        y: targets as stored (float64 (N,) or (N, K), read-only), or None.
        w: sample weights (N,) float64 normalised to sum 1 (read-only), or None (1/N each).
    """

    path: Path
    sha256: str
    x: np.ndarray
    y: np.ndarray | None
    w: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_dim(self) -> int:
        return int(self.x.shape[1])

    def labels(self, n_classes: int) -> np.ndarray | None:
        """``y`` as integer class labels (N,) int64 when it is a vector of integers in
        [0, n_classes), else None (not labels: target rows, or absent)."""
        y = self.y
        if y is None or y.ndim != 1 or np.any(y != np.round(y)):
            return None
        if y.min() < 0 or y.max() >= n_classes:
            return None
        return y.astype(np.int64)


def _real_finite(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype.kind not in "fiub":
        raise FileReadError(f"array {name!r} has dtype {a.dtype}, expected real numbers")
    out = a.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise FileReadError(f"array {name!r} contains NaN or inf")
    out.setflags(write=False)
    return out


def parse_data_file(data: bytes, path: Path) -> DataFile:
    """Validate the bytes of a data archive (see the module docstring); ``FileReadError``
    saying what is wrong (shapes, names, values) otherwise."""
    arrays = npz_arrays(io.BytesIO(data), MAX_DATA_FILE_BYTES, hint="np.savez of x and y")
    extra = sorted(set(arrays) - set(ARRAY_NAMES))
    if extra:
        msg = f"unexpected array {short(extra[0])!r} (holds x and optionally y and w)"
        raise FileReadError(msg)
    if "x" not in arrays:
        raise FileReadError("missing array 'x' (the inputs, shape (N, d))")
    x = _real_finite(arrays["x"], "x")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise FileReadError(f"array 'x' has shape {list(x.shape)}, expected (N, d) with N, d ≥ 1")
    n = x.shape[0]
    if n > MAX_FILE_SAMPLES:
        raise FileReadError(f"array 'x' holds {n} samples, more than {MAX_FILE_SAMPLES}")
    y = None
    if "y" in arrays:
        y = _real_finite(arrays["y"], "y")
        if y.ndim not in (1, 2) or y.shape[0] != n or (y.ndim == 2 and y.shape[1] < 1):
            raise FileReadError(
                f"array 'y' has shape {list(y.shape)}, expected ({n},) or ({n}, K): one row "
                "per row of x"
            )
    w = _sample_weights(arrays["w"], n) if "w" in arrays else None
    sha = hashlib.sha256(data).hexdigest()
    return DataFile(path, sha, x, y, w)


def _sample_weights(a: np.ndarray, n: int) -> np.ndarray:
    """``w`` (N,) checked (real, finite, ≥ 0, not all 0) and normalised to sum 1."""
    w = _real_finite(a, "w")
    if w.shape != (n,):
        raise FileReadError(
            f"array 'w' has shape {list(w.shape)}, expected ({n},): one weight per row of x"
        )
    if np.any(w < 0):
        raise FileReadError(f"array 'w' has negative weights (smallest {w.min():g}); need w ≥ 0")
    total = float(np.sum(w))
    if not total > 0:
        raise FileReadError("array 'w' is all zeros: at least one sample needs a weight > 0")
    out = w / total
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=4)  # a few files of ≤ 1 GiB each
def _cached(path: str, identity: tuple) -> DataFile:
    del identity  # part of the cache key only
    p = Path(path)
    return parse_data_file(read_bytes(p, MAX_DATA_FILE_BYTES, follow=False), p)


def read_data_file(path: str | Path) -> DataFile:
    """The validated data file at ``path`` (absolute; its last component no symbolic link).

    Cached by (device, inode, size, modification and change times): any write to the file
    changes its change time, so a changed file is read afresh (and its hash with it).
    Raises :class:`~core.files.FileReadError`.
    """
    p = Path(path)
    try:
        st = os.stat(p, follow_symlinks=False)
    except FileNotFoundError:
        raise FileReadError("missing file") from None
    except OSError as e:
        raise FileReadError(f"cannot open ({e.strerror})") from None
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return _cached(str(p), identity)
