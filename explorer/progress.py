"""The one-line terminal progress of a headless run (``explorer run``, ``explorer compare``).

:class:`ProgressBar` is the ``progress`` callable of :func:`core.runner.run_config`: it
receives every :class:`core.flow.Chunk` and draws t, the loss, ‖∇L‖∞ and a bar in log t.
"""

from __future__ import annotations

import math
import time
from typing import Any, TextIO


class ProgressBar:
    """One-line progress on a stream: t, loss, ‖∇L‖∞, elapsed, and a bar in log t.

    Redraws at most 10 times a second on a terminal (``\\r``), or prints a line every
    5 s otherwise (logs stay short).
    """

    def __init__(self, t_max: float, stream: TextIO, width: int = 24) -> None:
        self.t_max = t_max
        self.stream = stream
        self.width = width
        self.start = time.monotonic()
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last = -math.inf
        self._drawn = False

    def fraction(self, t: float) -> float:
        """Progress in log(1 + t) / log(1 + t_max) (flows spend most time at large t)."""
        if t <= 0:
            return 0.0
        return min(1.0, math.log1p(t) / math.log1p(self.t_max))

    def line(self, t: float, loss: float, gnorm: float) -> str:
        f = self.fraction(t)
        filled = round(f * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.monotonic() - self.start
        return f"[{bar}] t={t:.3e} loss={loss:.6e} |∇L|∞={gnorm:.3e} elapsed={elapsed:.1f}s"

    def __call__(self, chunk: Any) -> None:
        if not len(chunk.t):
            return
        now = time.monotonic()
        interval = 0.1 if self.tty else 5.0
        if not chunk.done and now - self._last < interval:
            return
        self._last = now
        text = self.line(float(chunk.t[-1]), float(chunk.loss[-1]), float(chunk.grad_norm[-1]))
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
