"""Sessions: a run saved as a folder, written atomically, loaded with full validation.

Submodules, one concept each:

- :mod:`core.session.model`: the in-memory session (:class:`Session`, :class:`Segment`,
  :class:`SpectrumSnapshot`) and its one error type, :class:`SessionError`;
- :mod:`core.session.layout`: the files of a session folder and the bytes each holds
  (names, :data:`SCHEMA_VERSION`, JSON encoding, :func:`~core.session.layout.session_to_files`);
- :mod:`core.session.schema`: the schema of every stored record of meta.json and
  :func:`~core.session.schema.check_fields`;
- :mod:`core.session.migrations`: older schemas upgraded in memory (schema 3: ``g`` read
  as ``erf`` before it);
- :mod:`core.session.load`: :func:`load_session`, bounded reads and every field checked;
- :mod:`core.session.save`: :func:`save_session`, what a save may replace, links written
  through;
- :mod:`core.session.atomic`: a folder replaced atomically (renameat2 exchange) and the
  temporaries of killed savers removed;
- :mod:`core.session.recorder`: :class:`SessionRecorder`, a run recorded as it goes in
  bounded memory.
"""

from core.session.layout import SCHEMA_VERSION, jsonable, now_iso
from core.session.load import load_session
from core.session.model import Segment, Session, SessionError, SpectrumSnapshot
from core.session.recorder import SessionRecorder, subsample_indices
from core.session.save import check_writable_target, is_session_dir, save_session, session_target

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
