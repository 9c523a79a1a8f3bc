"""Saving a session: where a save to a path writes, what it may replace, and the write itself.

A save never replaces anything but a session folder or an empty folder (the CLI's
``--force`` decides whether an existing *session* may go; see :func:`check_writable_target`).
A save through a symbolic link writes the folder it points to.  The folder is replaced
atomically (:mod:`core.session.atomic`).
"""

from __future__ import annotations

from pathlib import Path

from core.files import MAX_META_BYTES, load_json, read_text
from core.session.atomic import replace_folder
from core.session.layout import FORMAT, META, session_to_files
from core.session.model import Session, SessionError


def is_session_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a meta.json with the session format marker."""
    try:
        d = load_json(read_text(Path(path) / META, MAX_META_BYTES, follow=False))
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and d.get("format") == FORMAT


def session_target(path: str | Path) -> Path:
    """The folder a save to ``path`` writes: ``path`` itself, or the folder a symbolic
    link at ``path`` points to (the link stays).  A dangling link is refused."""
    p = Path(path).absolute()
    if p.is_symlink():
        if not p.exists():
            raise SessionError(p, "is a dangling symbolic link; refusing to write through it")
        p = p.resolve()
    return p


def check_writable_target(path: str | Path) -> None:
    """Raise :class:`SessionError` unless ``path`` is absent, an empty folder or a session.

    Missing parent folders are fine (:func:`save_session` makes them, as ``mkdir -p``)
    unless the nearest existing one is not a folder."""
    p = session_target(path)
    if not p.exists():
        ancestor = next(a for a in p.parents if a.exists())
        if not ancestor.is_dir():
            raise SessionError(p, f"{ancestor} is not a folder")
        return
    if not p.is_dir():
        raise SessionError(p, "exists and is not a folder; refusing to overwrite it")
    if any(p.iterdir()) and not is_session_dir(p):
        raise SessionError(p, "exists and is not a session folder; refusing to overwrite it")


def save_session(path: str | Path, session: Session) -> Path:
    """Write ``session`` to the folder ``path`` atomically and return ``path``.

    Refuses (``SessionError``) to replace anything that is not a session folder or an
    empty folder; a symbolic link at ``path`` is written through (the folder it points
    to is replaced, the link stays).  Steps: write every file into
    ``.NAME.tmp-PID-RANDOM`` beside the target, fsync files and folder, then exchange
    it with the target in one atomic rename (or rename it into place for a first save),
    fsync the parent, and delete the previous version.  Temporary folders of savers that
    were killed are removed from the parent first (:func:`core.session.atomic.replace_folder`).
    """
    p = session_target(path)
    check_writable_target(p)
    replace_folder(p, session_to_files(session))
    return Path(path).absolute()
