"""Bounded, link-safe file I/O for everything read from users and session folders.

Reading (:func:`read_bytes`, :func:`open_regular`): the file is opened with
``O_NONBLOCK`` (a FIFO never blocks the open) and, for files inside a session folder,
``O_NOFOLLOW`` (no symbolic link out of the folder); ``fstat`` on the open descriptor
must show a regular file (no devices, FIFOs or sockets) of at most ``max_bytes``; at
most ``max_bytes + 1`` bytes are ever read, so a file that grows while we read is
caught too.  Every refusal is a :class:`FileReadError` with a short reason.

Parsing (:func:`load_json`, :func:`load_toml`): the bracket nesting depth is measured
first in one vectorised pass (strings and comments removed by a linear regular
expression, then a cumulative sum of ``+1`` per ``[``/``{`` and ``−1`` per ``]``/``}``),
and text nested deeper than the cap is refused before the recursive parsers see it.

Writing: :func:`write_bytes_atomic` (a fsynced temporary sibling and one ``os.replace``)
and :func:`write_new_files` (several files created all-or-nothing, each through a
temporary name and ``os.link``, which fails on any existing entry — a dangling
symbolic link included — and never follows one).

Messages: :func:`short` makes a user value safe to echo in a one-line error.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import stat
import tomllib
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MiB = 1 << 20
#: Size caps per kind of file (far above anything the program writes for a problem that
#: passes the config's size check; they only stop devices, runaway or hostile files).
MAX_CONFIG_BYTES = 16 * MiB
MAX_META_BYTES = 256 * MiB
MAX_ARRAY_FILE_BYTES = 4096 * MiB
#: Nesting caps: configs nest ≤ 4 deep (tables of arrays of arrays), meta.json ≤ 8.
MAX_TOML_DEPTH = 32
MAX_JSON_DEPTH = 64
#: Longest user value echoed in an error message.
ECHO_CHARS = 80


class FileReadError(ValueError):
    """A file that was refused or could not be read; ``str()`` is the reason alone."""


# ----------------------------------------------------------------------------- messages


def one_line(text: Any) -> str:
    """``text`` with control characters (newlines, tabs, escapes) written as ``\\n``…"""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def short(text: Any, limit: int = ECHO_CHARS) -> str:
    """One line of at most ``limit`` characters (``…`` marks a cut)."""
    s = one_line(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


# ----------------------------------------------------------------------------- reading


def open_regular(path: str | Path, max_bytes: int, *, follow: bool = True) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file of ≤ ``max_bytes`` bytes.

    ``follow=False`` refuses a symbolic link as the last component.  The returned file
    object is at offset 0; the caller closes it.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if not follow and os.path.islink(path):
            raise FileReadError("is a dangling symbolic link; refusing to follow it") from None
        raise FileReadError("missing file") from None
    except OSError as e:
        if not follow and os.path.islink(path):
            raise FileReadError("is a symbolic link; refusing to follow it") from None
        raise FileReadError(f"cannot open ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise FileReadError(f"is {kind} (device, FIFO or socket?); refusing to read it")
        if st.st_size > max_bytes:
            raise FileReadError(f"is {st.st_size} bytes, more than the {max_bytes}-byte limit")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, max_bytes: int, *, follow: bool = True) -> bytes:
    """The contents of a regular file of ≤ ``max_bytes`` bytes (see :func:`open_regular`)."""
    with open_regular(path, max_bytes, follow=follow) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise FileReadError(f"cannot read ({e.strerror})") from None
    if len(data) > max_bytes:
        raise FileReadError(f"grew past the {max_bytes}-byte limit while being read")
    return data


def read_text(path: str | Path, max_bytes: int, *, follow: bool = True) -> str:
    """UTF-8 text of a bounded regular file (see :func:`read_bytes`)."""
    data = read_bytes(path, max_bytes, follow=follow)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileReadError("not UTF-8 text") from None


# ----------------------------------------------------------------------------- nesting


_JSON_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_TOML_SKIP = re.compile(
    r'"""(?:[^\\]|\\.)*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*'
)


def bracket_depth(text: str, strip: re.Pattern[str]) -> int:
    """Deepest ``[``/``{`` nesting of ``text`` outside what ``strip`` matches (strings…)."""
    code = np.frombuffer(strip.sub("", text).encode("utf-8", "replace"), np.uint8)
    step = np.zeros(code.shape, np.int64)
    step[(code == ord("[")) | (code == ord("{"))] = 1
    step[(code == ord("]")) | (code == ord("}"))] = -1
    return int(np.cumsum(step).max(initial=0))


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"number {short(text, 40)} overflows a float")
    return x


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON (non-finite numbers are stored as null)")


def json_float(v: Any) -> float | None:
    """``float(v)``, or None where it is NaN or ±inf: how strict JSON stores a non-finite
    number (:func:`load_json` refuses NaN and Infinity)."""
    f = float(v)
    return f if math.isfinite(f) else None


def load_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Strict ``json.loads`` with a nesting cap: no NaN/Infinity (nor numbers that overflow
    to them); raises ``ValueError`` (``JSONDecodeError`` too)."""
    depth = bracket_depth(text, _JSON_STRINGS)
    if depth > max_depth:
        raise ValueError(f"nested {depth} deep, more than the limit of {max_depth}")
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:  # a backstop: the scan above bounds the depth
        raise ValueError(f"nested more than {max_depth} deep") from None


def load_toml(text: str, max_depth: int = MAX_TOML_DEPTH) -> dict[str, Any]:
    """``tomllib.loads`` with a nesting cap; raises ``ValueError`` (``TOMLDecodeError`` too)."""
    depth = bracket_depth(text, _TOML_SKIP)
    if depth > max_depth:
        raise ValueError(f"nested {depth} deep, more than the limit of {max_depth}")
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ValueError(f"nested more than {max_depth} deep") from None


def read_toml(path: str | Path, max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """A bounded, depth-capped TOML file; :class:`FileReadError` says what is wrong."""
    text = read_text(path, max_bytes)
    try:
        return load_toml(text)
    except tomllib.TOMLDecodeError as e:
        raise FileReadError(f"invalid TOML: {e}") from None
    except ValueError as e:
        raise FileReadError(f"invalid TOML: {e}") from None


# ----------------------------------------------------------------------------- arrays


def npz_arrays(
    f: BinaryIO, max_bytes: int, *, hint: str = "a zip of .npy arrays"
) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` archive open as ``f`` (seekable, positioned at its start),
    bounded: members that uncompress to ≤ ``max_bytes`` in total; no pickles.

    ``hint`` says what the archive should be in the "not an .npz archive (…)" error.
    Raises :class:`FileReadError` for anything else (a bare ``.npy``, a broken zip…).
    """
    try:
        with zipfile.ZipFile(f) as z:
            total = sum(i.file_size for i in z.infolist())
        if total > max_bytes:
            raise FileReadError(f"uncompresses to {total} bytes, more than the limit")
        f.seek(0)
        with np.load(f, allow_pickle=False) as arrays:
            return {k: np.asarray(arrays[k]) for k in arrays.files}
    except FileReadError:
        raise
    except zipfile.BadZipFile:
        raise FileReadError(f"not an .npz archive ({hint})") from None
    except ValueError as e:
        if "pickle" in str(e):
            raise FileReadError("holds object arrays (pickles); refusing to load") from None
        raise FileReadError(f"unreadable array file ({short(e, 120)})") from None
    except Exception as e:  # zlib.error, EOFError, struct.error… from a damaged archive
        raise FileReadError(f"unreadable array file ({type(e).__name__})") from None


def load_npz(
    path: str | Path, max_bytes: int = MAX_ARRAY_FILE_BYTES, *, follow: bool = True
) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, bounded: a regular file of ≤ ``max_bytes``
    whose members uncompress to ≤ ``max_bytes`` in total; no pickles (:func:`npz_arrays`).

    Raises :class:`FileReadError` for anything else (a bare ``.npy``, a broken zip…).
    """
    with open_regular(path, max_bytes, follow=follow) as f:
        return npz_arrays(f, max_bytes)


def load_params_npz(path: str | Path, shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """Named network parameters (``w1``, ``b1``, …) from an ``.npz``, checked against
    ``shapes`` (name → shape): no missing or extra names, real numbers, finite values.

    Returns float64 arrays; raises :class:`FileReadError` naming the array.
    """
    arrays = load_npz(path)
    missing = [k for k in shapes if k not in arrays]
    if missing:
        raise FileReadError(f"missing array {missing[0]!r} (needs {', '.join(shapes)})")
    extra = [k for k in arrays if k not in shapes]
    if extra:
        raise FileReadError(f"unexpected array {short(extra[0])!r} (needs {', '.join(shapes)})")
    out = {}
    for name, shape in shapes.items():
        a = arrays[name]
        if a.dtype.kind not in "fiu":
            raise FileReadError(f"array {name!r} has dtype {a.dtype}, expected real numbers")
        if a.shape != tuple(shape):
            raise FileReadError(
                f"array {name!r} has shape {list(a.shape)}, expected {list(shape)} (out×in)"
            )
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise FileReadError(f"array {name!r} contains NaN or inf")
        out[name] = a
    return out


# ----------------------------------------------------------------------------- writing


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    """``.NAME.tag-PID-RANDOM`` beside ``path`` (same folder, so renames are atomic)."""
    return path.parent / f".{path.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def write_fsynced(path: Path, data: bytes) -> None:
    """Create the new file ``path`` (never replacing or following anything) holding
    ``data``, flushed to disk before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: readers see the old file or the new one."""
    p = Path(path)
    tmp = temp_sibling(p)
    try:
        write_fsynced(tmp, data)
        os.replace(tmp, p)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_new_files(files: Mapping[Path, bytes]) -> None:
    """Create every file of ``files`` (path → bytes), all or nothing, never replacing or
    following anything already there (a dangling symbolic link counts as there).

    Raises ``FileExistsError`` naming the first path that exists; then nothing is left.
    """
    done: list[Path] = []
    try:
        for path, data in files.items():
            tmp = temp_sibling(path)
            try:
                write_fsynced(tmp, data)
                os.link(tmp, path, follow_symlinks=False)
            finally:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
            done.append(path)
    except BaseException:
        for path in done:
            os.unlink(path)
        raise
