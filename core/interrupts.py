"""Prompt, clean exits on SIGTERM / SIGHUP for a headless process (``explorer run``).

Python runs signal handlers only between bytecodes of the main thread, so a handler waits
for a long compiled computation (an XLA compile, an integration chunk, an eigensolver) to
return: seconds to minutes.  :func:`install` therefore also points the C-level
``signal.set_wakeup_fd`` at a pipe read by a watcher thread, which wakes within
milliseconds of the signal, whatever the main thread is doing, and

* calls the flush registered with :func:`on_signal` (the runner saves its session,
  marked "interrupted", under the recorder's lock), prints its one-line message, or
* when nothing is registered (start-up: imports, building the problem, compiling),
  prints ``interrupted during start-up: nothing written``,

then ends the process with ``os._exit(128 + signum)``.  :func:`install` is called
before JAX is imported, so the default action (death without a word) never applies.

Nothing here is active unless :func:`install` was called: library callers (tests, the
app, sweep workers) keep the runner's own between-chunks handling.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

#: Signals that end the process promptly (SIGINT keeps Python's KeyboardInterrupt).
EXIT_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))

_flush: Callable[[int], str] | None = None
_lock = threading.Lock()
_installed = False


def on_signal(flush: Callable[[int], str] | None) -> None:
    """Register ``flush(signum) -> message`` to run on SIGTERM/SIGHUP (None: unregister)."""
    global _flush
    with _lock:
        _flush = flush


def _noop(signum: int, frame: object) -> None:
    """The Python-level handler: the watcher thread does the work."""


def _exit(signum: int) -> None:
    with _lock:
        flush = _flush
    message = "interrupted during start-up: nothing written"
    if flush is not None:
        try:
            message = flush(signum)
        except BaseException as e:  # still exit; say why the flush failed
            message = f"interrupted: could not save the session ({type(e).__name__}: {e})"
    try:
        os.write(2, (" ".join(message.split()) + "\n").encode("utf-8", "replace"))
    finally:
        os._exit(128 + int(signum))


def _watch(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in EXIT_SIGNALS:
                _exit(signum)


def install() -> bool:
    """Make SIGTERM/SIGHUP end the process within milliseconds (see the module docstring).

    Main thread only; returns False (and does nothing) elsewhere or when already active.
    """
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return False
    r, w = os.pipe()
    os.set_blocking(w, False)
    for s in EXIT_SIGNALS:
        signal.signal(s, _noop)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(r,), name="signal-watcher", daemon=True).start()
    _installed = True
    return True
