"""The explorer: a Textual app to configure, watch, inspect and replay gradient-flow runs.

``ExplorerApp(config=cfg, config_path=path)`` opens the setup screen on a config
(default: :func:`core.config.default_config`); ``ExplorerApp(replay=session)``
opens the replay screen on a loaded :class:`core.session.Session`;
``ExplorerApp(sweep=folder)`` opens the sweep view on a sweep's output folder
(``explorer replay DIR`` when DIR holds ``summary.csv``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding

SWITCH_INTERVAL = 0.001  # seconds (CPython's default is 0.005)


class ExplorerApp(App):
    """Setup → run → inspect/refine/surgery → save; or replay a saved session."""

    CSS_PATH = Path(__file__).resolve().parent / "app.tcss"  # absolute: subclasses elsewhere
    TITLE = "landscape explorer"
    HORIZONTAL_BREAKPOINTS: ClassVar[list] = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list] = [(0, "-short"), (32, "-tall")]
    BINDINGS: ClassVar[list] = [
        Binding("f1", "help", "Help", id="app.help", show=False),
        Binding("question_mark", "help", "Help", id="app.help2", show=False),
    ]

    def __init__(
        self,
        config: Any = None,
        config_path: str | Path | None = None,
        replay: Any = None,
        *,
        sweep: str | Path | None = None,
        autostart: bool = True,
        show_clock: bool = True,
    ) -> None:
        super().__init__()
        if config is None and replay is None and sweep is None:
            from core.config import default_config

            config = default_config()
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.replay = replay
        self.sweep = Path(sweep) if sweep is not None else None
        self.autostart = autostart
        self.show_clock = show_clock

    def on_mount(self) -> None:
        # Worker threads (flow bookkeeping, figure building) run Python too; a short GIL
        # switch interval lets the event loop take the GIL back within ~1 ms, not 5 ms,
        # each time it wakes — the difference between a snappy and a sticky key press.
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._enable_compilation_cache()
        from explorer.widgets.plots import LinePlot, start_drawing_process

        if LinePlot.background:
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                start_drawing_process()  # figures are drawn there, off the GIL
        if self.sweep is not None:
            from explorer.screens.sweep import SweepScreen

            self.push_screen(SweepScreen(self.sweep))
        elif self.replay is not None:
            from explorer.screens.replay import ReplayScreen

            self.push_screen(ReplayScreen(self.replay))
        else:
            from explorer.screens.setup import SetupScreen

            self.push_screen(SetupScreen(self.config, self.config_path))

    @staticmethod
    def _enable_compilation_cache() -> None:
        """Switch on the persistent JAX compilation cache (:mod:`core.cache`), unless the
        caller (the CLI, a test session) has already chosen a cache folder."""
        if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            return
        if "jax" in sys.modules and sys.modules["jax"].config.jax_compilation_cache_dir:
            return
        from core.cache import enable_compilation_cache

        with contextlib.suppress(Exception):  # a cache problem must never stop the app
            enable_compilation_cache()

    def start_run(self, config: Any, config_path: Path | None = None) -> None:
        """Open a run screen on a validated config (called by the setup screen)."""
        from explorer.screens.run import RunScreen

        screen = RunScreen(config, config_path, autostart=self.autostart)
        screen.show_clock = self.show_clock
        self.push_screen(screen)

    async def action_quit(self) -> None:
        """Quit — by ctrl+q, the command palette or a screen's ``q`` alike: a run with
        unsaved work anywhere in the screen stack asks first (its "discard?" question),
        and a second ctrl+q while that question is shown does not stack another."""
        from explorer.screens.dialogs import ConfirmScreen
        from explorer.screens.run import RunScreen

        if isinstance(self.screen, ConfirmScreen):
            return
        unsaved = [s for s in self.screen_stack if isinstance(s, RunScreen) and s.unsaved]
        if unsaved:
            unsaved[-1].action_quit_run()
            return
        self.exit()

    def action_help(self) -> None:
        from explorer.screens.help import HelpScreen
        from explorer.screens.replay import ReplayScreen
        from explorer.screens.run import RunScreen
        from explorer.screens.setup import SetupScreen
        from explorer.screens.sweep import SweepScreen
        from explorer.screens.trajectory import TrajectoryScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        screens = [SetupScreen, RunScreen, ReplayScreen, TrajectoryScreen, SweepScreen]
        self.push_screen(HelpScreen(screens))
