"""One-line run status: state, t, loss, ‖∇L‖∞, solver steps, elapsed time."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def format_status(
    state: str,
    t: float,
    loss: float,
    grad_norm: float,
    steps: int,
    elapsed: str | None,
    frame: int = 0,
) -> str:
    """The status text; ``elapsed=None`` leaves the clock out (deterministic snapshots)."""
    mark = SPINNER[frame % len(SPINNER)] + " " if state in ("compiling", "running") else ""
    parts = [
        f"{mark}[b]{state}[/b]",
        f"t={t:.4g}",
        f"loss={loss:.4e}",
        f"‖∇L‖∞={grad_norm:.2e}",
        f"steps={steps}",
    ]
    if elapsed is not None:
        parts.append(elapsed)
    return "  ".join(parts)


class StatusLine(Static):
    """The run status; ``show_clock`` false hides elapsed time (used by snapshot tests)."""

    show_clock = True
    _shown: object = None

    def update(self, content: Any = "", *, layout: bool = False) -> None:
        """Repaint only when the text changed, and without a layout pass: the line's
        size is fixed, and a screen-wide layout 5×/s costs the event loop ~30 ms each."""
        if content == self._shown:
            return
        self._shown = content
        super().update(content, layout=layout)
