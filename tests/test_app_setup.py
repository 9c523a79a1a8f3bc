"""Pilot tests of the setup screen: inline validation, presets, keyboard-only use."""

from __future__ import annotations

import asyncio

from core.config import load_config


def test_invalid_field_is_flagged_inline_and_blocks_run() -> None:
    from explorer.app import ExplorerApp
    from explorer.screens.setup import SetupScreen

    app = ExplorerApp(autostart=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, SetupScreen)
            run = screen.query_one("#run")
            assert not run.disabled
            # Type a bad width by keys: the error comes from core.config and names the reason.
            screen.query_one("#f-student--widths").focus()
            await pilot.press("ctrl+a", "backspace", "0")  # select-all may be absent: clear
            widths = screen.query_one("#f-student--widths")
            widths.value = "0"
            await pilot.pause()
            err = screen.query_one("#e-student--widths")
            assert err.display
            assert "positive integers" in str(err.render())
            assert screen.error.field == "student.widths"
            assert run.disabled
            await pilot.press("ctrl+r")  # refused while invalid
            await pilot.pause()
            assert isinstance(app.screen, SetupScreen)
            # Unparseable numbers are reported by the validator too.
            widths.value = "3"
            screen.query_one("#f-dynamics--rtol").value = "abc"
            await pilot.pause()
            assert screen.error.field == "dynamics.rtol"
            assert screen.query_one("#e-dynamics--rtol").display
            assert not screen.query_one("#e-student--widths").display
            screen.query_one("#f-dynamics--rtol").value = "1e-9"
            await pilot.pause()
            assert screen.error is None and not run.disabled
            assert screen.config.student.widths == (3,)
            assert screen.config.dynamics.rtol == 1e-9

    asyncio.run(scenario())


def test_glu_fields_appear_only_for_glu_teacher() -> None:
    from explorer.app import ExplorerApp

    app = ExplorerApp(autostart=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            u_row = screen.query_one("#f-teacher--u-row")
            assert not u_row.display
            screen.query_one("#f-teacher--kind").value = "glu"
            await pilot.pause()
            assert u_row.display
            assert screen.error.field == "teacher.u"  # required for glu
            screen.query_one("#f-teacher--u").value = "1, 0"
            screen.query_one("#f-teacher--v").value = "0, 1"
            await pilot.pause()
            assert screen.error is None
            assert screen.config.teacher.u == (1.0, 0.0)

    asyncio.run(scenario())


def test_every_preset_loads_into_the_form_and_validates() -> None:
    from explorer.app import ExplorerApp
    from explorer.screens.setup import list_presets

    presets = list_presets()
    titles = [t for t, _ in presets]
    for needed in (
        "Teacher recovery",
        "Channel to infinity",
        "Copy or average",
        "Symmetry-induced saddle",
        "Saddle-to-saddle",
    ):
        assert needed in titles
    app = ExplorerApp(autostart=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            for _title, path in presets:
                screen.load_preset(path)
                await pilot.pause()
                assert screen.error is None, (path, screen.error)
                # The form reproduces the preset file exactly.
                assert screen.config == load_config(path)
            # Keyboard: ctrl+o focuses the preset menu, enter opens it, arrows pick.
            await pilot.press("ctrl+o")
            assert screen.focused is screen.query_one("#preset")
            await pilot.press("enter", "down", "enter")
            await pilot.pause()
            assert screen.config == load_config(presets[0][1])

    asyncio.run(scenario())
