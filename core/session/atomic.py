"""Replacing a session folder atomically: a fsynced temporary sibling swapped into place.

:func:`replace_folder` writes the whole folder into a temporary sibling, fsyncs every
file and the folder, then swaps it into place with one ``renameat2(RENAME_EXCHANGE)``
(Linux) or ``rename`` (first save), so killing the process at any instant leaves either
the previous or the new complete folder.  Where the exchange is unsupported, the old
folder is first renamed to a backup sibling ``.NAME.old-*`` that
:func:`core.session.load.load_session` falls back to.

A killed saver leaves at most a temporary sibling ``.NAME.tmp-PID-*``; the next save
into the same parent removes those whose process is gone (and that hold only session
files).
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from core.files import temp_sibling, write_fsynced
from core.session.layout import SESSION_FILES


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _load_renameat2() -> Callable | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE).

    Returns False where the OS or file system does not support it.
    """
    if _renameat2 is None:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), f"{a} <-> {b}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_temp(entry: Path) -> bool:
    """Whether ``entry`` is a temporary ``.NAME.tmp-PID-RANDOM`` of a saver that died:
    its PID is gone (or is ours), and it is a link or a folder holding only session files."""
    try:
        pid = int(entry.name.rsplit(".tmp-", 1)[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    if pid != os.getpid() and _pid_alive(pid):
        return False
    try:
        st = entry.lstat()
        if stat.S_ISLNK(st.st_mode):
            return True
        if not stat.S_ISDIR(st.st_mode):
            return False
        return all(child.name in SESSION_FILES for child in entry.iterdir())
    except OSError:
        return False


_CLEANED_PARENTS: set[Path] = set()


def clean_stale_temps(folder: str | Path, name: str | None = None) -> None:
    """Remove temporary session folders left in ``folder`` by killed savers (never a
    session, never anything that holds other files): those of ``name``, or all."""
    try:
        entries = list(Path(folder).glob(f".{glob.escape(name) if name else '*'}.tmp-*"))
    except OSError:
        return
    for entry in entries:
        if _stale_temp(entry):
            _remove(entry)


def _remove(path: Path) -> None:
    """Delete a link or a folder tree (what a temporary sibling is)."""
    if path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def replace_folder(p: Path, files: Mapping[str, bytes]) -> None:
    """Make the folder ``p`` hold ``files`` (name → bytes) and nothing else, atomically.

    ``p`` must be absent, an empty folder or a folder the caller may replace; missing
    parent folders are made.  Temporary folders of savers that were killed are removed
    from the parent first.
    """
    p.parent.mkdir(parents=True, exist_ok=True)
    # this folder's temporaries at every save; the parent's (a killed run beside it) at the
    # first save of this process there (a sweep's folder can hold 10⁵ runs: list it once)
    clean_stale_temps(p.parent, p.name)
    if p.parent not in _CLEANED_PARENTS:
        _CLEANED_PARENTS.add(p.parent)
        clean_stale_temps(p.parent)
    tmp = temp_sibling(p)
    tmp.mkdir()
    try:
        for name, data in files.items():
            write_fsynced(tmp / name, data)
        _fsync_dir(tmp)
        if p.exists() and not any(p.iterdir()):
            p.rmdir()  # an empty target folder: rename the new one into its place
        if not p.exists():
            os.rename(tmp, p)
        elif exchange_paths(tmp, p):
            pass  # tmp now holds the previous version
        else:
            # No atomic exchange: keep the old version as a backup sibling until the new
            # one is in place; load_session falls back to it if we die in between.
            backup = temp_sibling(p, "old")
            os.rename(p, backup)
            os.rename(tmp, p)
            _fsync_dir(p.parent)
            shutil.rmtree(backup, ignore_errors=True)
        _fsync_dir(p.parent)
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)
