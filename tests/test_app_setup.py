"""Pilot tests of the setup screen: inline validation, presets, keyboard-only use."""

from __future__ import annotations

import asyncio

import pytest

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


def _visible_field_ids(screen) -> list[str]:
    """DOM ids of the form's input widgets whose rows are shown, in form order."""
    from explorer.screens.setup import widget_id

    ids = []
    for f in screen._fields:
        row = screen.query_one("#" + widget_id(f.key) + "-row")
        if row.display:
            ids.append(widget_id(f.key))
    return ids


def test_tab_goes_field_to_field_without_a_stop_on_the_scroll_container() -> None:
    """Tab from the preset menu visits Run, then exactly the shown fields in order, then
    wraps to the preset menu (the form's scroll container used to take a Tab stop of its
    own between Run and the first field, where nothing visible looked focused)."""
    from textual.widgets import Button, Checkbox, Input, Select, TextArea

    from explorer.app import ExplorerApp

    app = ExplorerApp(autostart=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            for kind in ("random", "glu", "explicit"):
                screen.query_one("#f-teacher--kind").value = kind
                await pilot.pause()
                run = [] if screen.query_one("#run").disabled else ["run"]  # glu: u, v unset
                expected = [*run, *_visible_field_ids(screen), "preset"]
                screen.query_one("#preset").focus()
                await pilot.pause()
                seen = []
                for _ in expected:
                    await pilot.press("tab")
                    focused = screen.focused
                    assert isinstance(focused, Input | Select | Checkbox | TextArea | Button), (
                        focused
                    )
                    assert focused.region.height > 0  # on screen: scrolled into view
                    seen.append(focused.id)
                    # Its label in reverse video (focus seen without colour), no other's.
                    marked = [r.id for r in screen.query(".field-row.-focused")]
                    assert marked == ([focused.id + "-row"] if focused.id.startswith("f-") else [])
                    for row_id in marked:
                        label = screen.query_one(f"#{row_id} .field-label")
                        assert label.styles.text_style.reverse
                assert seen == expected, kind
            # Shift+Tab goes back the same way.
            await pilot.press("shift+tab")
            assert screen.focused.id == expected[-2]

    asyncio.run(scenario())


def test_every_invalid_field_is_marked_and_listed() -> None:
    """core.config stops at its first error; the form shows all of them at once."""
    from explorer.app import ExplorerApp
    from explorer.screens.setup import error_id, widget_id

    app = ExplorerApp(autostart=False)
    bad = {"teacher.input_dim": "x", "student.widths": "0", "dynamics.rtol": "abc"}

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            for key, text in bad.items():
                screen.query_one("#" + widget_id(key)).value = text
            await pilot.pause()
            assert [e.field for e in screen.errors] == list(bad)
            assert screen.error.field == "teacher.input_dim"
            for key in bad:
                assert screen.query_one("#" + error_id(key)).display, key
            assert "must be an integer" in str(
                screen.query_one("#" + error_id("teacher.input_dim")).render()
            )
            assert "positive integers" in str(
                screen.query_one("#" + error_id("student.widths")).render()
            )
            general = str(screen.query_one("#form-error").render())
            assert all(key in general for key in bad), general
            assert screen.query_one("#run").disabled
            # Fixing one leaves the others marked.
            screen.query_one("#" + widget_id("student.widths")).value = "3"
            await pilot.pause()
            assert [e.field for e in screen.errors] == ["teacher.input_dim", "dynamics.rtol"]
            assert not screen.query_one("#" + error_id("student.widths")).display
            screen.query_one("#" + widget_id("teacher.input_dim")).value = "2"
            screen.query_one("#" + widget_id("dynamics.rtol")).value = "1e-9"
            await pilot.pause()
            assert screen.errors == [] and not screen.query_one("#run").disabled
            assert str(screen.query_one("#form-error").render()).strip() == ""

    asyncio.run(scenario())


def test_teacher_fields_that_do_not_apply_are_hidden_and_left_out() -> None:
    from explorer.app import ExplorerApp
    from explorer.screens.setup import widget_id

    app = ExplorerApp(autostart=False)
    shown = {
        "random": {"widths", "activation", "bias", "output_dim"},
        "orthonormal": {"widths", "activation"},
        "glu": {"activation", "u", "v"},
        "rosenbrock": set(),
        "file": {"widths", "activation", "bias", "output_dim", "path"},
        "explicit": {"widths", "activation", "bias", "output_dim", "params"},
    }
    optional = {"widths", "activation", "bias", "output_dim", "u", "v", "path", "params"}

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            for kind, keys in shown.items():
                screen.query_one("#f-teacher--kind").value = kind
                await pilot.pause()
                visible = {
                    k
                    for k in optional
                    if screen.query_one("#" + widget_id("teacher." + k) + "-row").display
                }
                assert visible == keys, kind
            # Orthonormal: the hidden bias is left out, so core's default (bias-free)
            # applies; it used to keep bias = true and fail on a field that is not shown.
            screen.query_one("#f-teacher--kind").value = "orthonormal"
            screen.query_one("#f-teacher--widths").value = "2"
            await pilot.pause()
            assert screen.error is None, screen.error
            assert screen.config.teacher.kind == "orthonormal"
            assert screen.config.teacher.bias is False
            # Rosenbrock uses input_dim only.
            screen.query_one("#f-teacher--kind").value = "rosenbrock"
            await pilot.pause()
            assert screen.error is None and screen.config.teacher.kind == "rosenbrock"

    asyncio.run(scenario())


def test_explicit_teacher_params_are_typed_as_toml_and_validated_by_core() -> None:
    from explorer.app import ExplorerApp
    from explorer.screens.setup import error_id, widget_id

    app = ExplorerApp(autostart=False)
    params = "w1 = [[1.0, -2.0]]\nb1 = [0.5]\nw2 = [[3.0]]\nb2 = [0.0]\n"

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            screen.query_one("#f-teacher--kind").value = "explicit"
            screen.query_one("#f-teacher--widths").value = "1"
            await pilot.pause()
            area = screen.query_one("#" + widget_id("teacher.params"))
            err = screen.query_one("#" + error_id("teacher.params"))
            # Empty: core names the first array it needs and its shape.
            assert screen.error.field == "teacher.params.w1" and err.display
            assert "missing (expected shape [1, 2])" in str(err.render())
            # A field that has no last valid value does not hide later errors.
            screen.query_one("#f-student--widths").value = "0"
            await pilot.pause()
            assert [e.field for e in screen.errors] == ["teacher.params.w1", "student.widths"]
            screen.query_one("#f-student--widths").value = "3"
            area.text = params.replace("[[3.0]]", "[[3.0, 1.0]]")  # wrong shape
            await pilot.pause()
            assert screen.error.field == "teacher.params.w2"
            assert "expected [1, 1]" in str(err.render())
            area.text = "w1 = [[1.0, -2.0]"  # not TOML: the form says so
            await pilot.pause()
            assert screen.error.field == "teacher.params" and "not TOML" in str(err.render())
            area.text = params
            await pilot.pause()
            assert screen.error is None and not screen.query_one("#run").disabled
            assert dict(screen.config.teacher.params)["w1"] == ((1.0, -2.0),)
            assert dict(screen.config.teacher.params)["w2"] == ((3.0,),)

    asyncio.run(scenario())


def test_new_config_keys_have_form_fields_validated_by_core(tmp_path) -> None:
    """student.unit_norm / train_output and data.kind = "file" with data.path, where
    core.config parses them (the form lists only keys core knows)."""
    import numpy as np

    from explorer.app import ExplorerApp
    from explorer.screens.setup import error_id, parsed_keys, widget_id

    if not {"unit_norm", "train_output"} <= parsed_keys("student") or "path" not in parsed_keys(
        "data"
    ):
        pytest.skip("core.config does not parse student.unit_norm / data.path here")
    data, labelled = tmp_path / "points.npz", tmp_path / "labelled.npz"
    x = np.random.default_rng(0).standard_normal((40, 2))
    np.savez(data, x=x)  # the teacher labels x
    np.savez(labelled, x=x, y=np.sin(x[:, :1]))
    app = ExplorerApp(autostart=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            q = screen.query_one
            # unit_norm needs a bias-free first layer: core says so on the field.
            q("#" + widget_id("student.unit_norm")).value = True
            await pilot.pause()
            assert screen.error.field == "student.unit_norm"
            assert q("#" + error_id("student.unit_norm")).display
            q("#" + widget_id("student.bias")).value = False
            q("#" + widget_id("student.train_output")).value = False
            await pilot.pause()
            assert screen.error is None, screen.error
            assert screen.config.student.unit_norm and not screen.config.student.train_output
            # Data from a file: the path row appears, N rows go, the file is checked on entry.
            assert not q("#" + widget_id("data.path") + "-row").display
            q("#" + widget_id("data.kind")).value = "file"
            await pilot.pause()
            assert q("#" + widget_id("data.path") + "-row").display
            assert not q("#" + widget_id("data.samples") + "-row").display
            assert screen.error.field == "data.path"  # required
            q("#" + widget_id("data.path")).value = str(tmp_path / "missing.npz")
            await pilot.pause()
            assert "file not found" in str(q("#" + error_id("data.path")).render())
            q("#" + widget_id("data.path")).value = str(data)
            await pilot.pause()
            assert screen.error is None, screen.error
            assert screen.config.data.kind == "file" and screen.config.data.samples == 40
            assert screen.config.teacher.kind == "random"
            from core.config import TEACHER_KINDS

            if "none" not in TEACHER_KINDS:
                return
            # Targets in the file: teacher kind "none" keeps only the dimensions.
            q("#" + widget_id("data.path")).value = str(labelled)
            q("#" + widget_id("teacher.kind")).value = "none"
            await pilot.pause()
            assert screen.error is None, screen.error
            assert screen.config.teacher.kind == "none"
            shown = [
                f.key for f in screen._fields
                if f.key.startswith("teacher.")
                and screen.query_one("#" + widget_id(f.key) + "-row").display
            ]  # fmt: skip
            assert shown == ["teacher.kind", "teacher.input_dim", "teacher.output_dim"]

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_setup_screen_with_an_explicit_teacher_and_two_errors(snap_compare, size) -> None:
    """The frame: only the fields an explicit teacher uses, its params as TOML, and both
    invalid fields marked at once with the list above the form."""
    from core.config import default_config
    from explorer.app import ExplorerApp

    async def fill(pilot) -> None:
        screen = pilot.app.screen
        screen.query_one("#f-teacher--kind").value = "explicit"
        screen.query_one("#f-teacher--widths").value = "1"
        screen.query_one("#f-teacher--params").text = "w1 = [[1.0, -2.0]]\nb1 = [0.5]\nw2 = [[3.0]]"
        screen.query_one("#f-student--widths").value = "0"
        await pilot.pause()

    assert snap_compare(ExplorerApp(config=default_config()), terminal_size=size, run_before=fill)


def test_per_neuron_and_per_layer_activations_are_shown_and_kept() -> None:
    """A config whose student names an activation per neuron (or teacher per layer) kept it
    only by accident of the first choice: the select showed 'cube' and the form's config
    had activation = 'cube'.  Now the select says what is loaded and keeps it."""
    from core.config import parse_config
    from explorer.app import ExplorerApp
    from explorer.screens.setup import AS_LOADED

    cfg = parse_config(
        {
            "teacher": {
                "kind": "random",
                "input_dim": 1,
                "widths": [2, 2],
                "activations": ["tanh", ["relu", "erf"]],
            },
            "student": {"widths": [2], "activation": ["relu", "tanh"]},
        },
        "cfg",
    )
    app = ExplorerApp(config=cfg, autostart=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            screen = app.screen
            student = screen.query_one("#f-student--activation")
            teacher = screen.query_one("#f-teacher--activation")
            assert student.value == AS_LOADED and teacher.value == AS_LOADED
            shown = [str(w.query_one("SelectCurrent #label").render()) for w in (student, teacher)]
            assert shown == ["per neuron: relu, tanh", "per layer: tanh | relu, erf"]
            assert screen.error is None and screen.config == cfg
            student.value = "gelu"  # another choice replaces the list
            teacher.value = "silu"
            await pilot.pause()
            assert screen.config.student.activation == "gelu"
            assert screen.config.teacher.activation == "silu"
            assert screen.config.teacher.activations is None

    asyncio.run(scenario())


def test_init_seed_varies_theta0_alone_and_empty_means_the_seed() -> None:
    from explorer.app import ExplorerApp
    from explorer.screens.setup import SetupScreen

    app = ExplorerApp(autostart=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, SetupScreen)
            field = screen.query_one("#f-student--seed")
            assert field.value == ""  # absent from the default config: θ₀ from `seed`
            assert screen.config.student.seed is None
            field.value = "11"
            await pilot.pause()
            assert screen.error is None and screen.config.student.seed == 11
            assert screen.config.seed == app.config.seed  # the teacher's draw unchanged
            field.value = "-2"
            await pilot.pause()
            assert screen.error.field == "student.seed"
            assert screen.query_one("#e-student--seed").display
            field.value = ""
            await pilot.pause()
            assert screen.error is None and screen.config.student.seed is None

    asyncio.run(scenario())
