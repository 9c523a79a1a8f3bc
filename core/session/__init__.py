"""Sessions: a run saved as a folder, written atomically, loaded with full validation."""

from core.session.load import (
    SCHEMA_VERSION,
    Segment,
    Session,
    SessionError,
    SessionRecorder,
    SpectrumSnapshot,
    check_writable_target,
    is_session_dir,
    jsonable,
    load_session,
    now_iso,
    save_session,
    session_target,
    subsample_indices,
)

__all__ = [
    "SCHEMA_VERSION",
    "Segment",
    "Session",
    "SessionError",
    "SessionRecorder",
    "SpectrumSnapshot",
    "check_writable_target",
    "is_session_dir",
    "jsonable",
    "load_session",
    "now_iso",
    "save_session",
    "session_target",
    "subsample_indices",
]
