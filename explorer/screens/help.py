"""Help overlay: every key of the app, collected from the screens' own bindings."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static


def key_table(screens: list[type[Screen]]) -> str:
    """One line per binding: key and description; grouped by screen.

    Each screen lists the bindings it declares itself (``vars(cls)["BINDINGS"]``), so keys
    shared through a base class (the run and replay screens' ``TrajectoryScreen``) are
    listed once, under the base — pass it in ``screens`` too.  A screen's ``HELP_TITLE``,
    if it declares one, names its group.
    """
    from textual.keys import format_key

    lines = []
    for screen in screens:
        title = vars(screen).get("HELP_TITLE") or screen.__name__.removesuffix("Screen")
        lines.append(f"[b]{title}[/b]")
        for b in vars(screen).get("BINDINGS", []):
            if isinstance(b, Binding):
                # Readable names ("?", "pgdn", "]"), not Textual's ("question_mark", …).
                keys = " / ".join(format_key(k.strip()) for k in b.key.split(","))
                # Pad first, then escape "[" (Textual markup), so columns stay aligned.
                line = f"  {keys:<12} {b.description or b.action}"
                lines.append(line.replace("[", "\\["))
        lines.append("")
    return "\n".join(lines)


#: What the glyphs on the time plots mean (explorer.widgets.plots.MARKER_GLYPHS).
MARKER_HELP = (
    "[b]Plot markers[/b] (vertical lines, glyph on top)\n"
    "  events: R refine · S surgery · P pause · > resume · ▼ cursor\n"
    "  phases: = plateau · \\ descent · ~ channel · * converged\n"
    "  ↓n below: points under the fitted y window (f: full range)"
)


class HelpScreen(ModalScreen[None]):
    """Lists every key; any of Esc, q, ? or F1 closes it."""

    BINDINGS: ClassVar[list] = [
        Binding("escape,q,question_mark,f1", "close", "Close", id="help.close")
    ]

    def __init__(self, screens: list[type[Screen]]) -> None:
        super().__init__()
        self.screens = screens

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Label("Keys", classes="dialog-title")
            yield Static(
                key_table(self.screens) + MARKER_HELP + "\n\n"
                "App-wide: ? or F1 help · ctrl+q quit at once\n"
                "Remap keys by binding id (App.set_keymap).",
                id="help-text",
            )
            yield Static("Esc / ? closes", classes="dialog-keys")

    def action_close(self) -> None:
        self.dismiss(None)
