"""Setup screen: a form over the config TOML, validated by :func:`core.config.parse_config`.

Every form field is named by its dotted TOML key (``student.widths``); the form
builds the same mapping a TOML file would, so validation is exactly the CLI's.
A :class:`core.config.ConfigError` names the field: its message is shown inline
under that field and the Run button stays disabled until the form parses.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from explorer.watch import explanation
from explorer.widgets.narration import WatchPanel

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


@dataclass(frozen=True)
class Field:
    """One form field: dotted TOML key, label, widget kind, choices and value type."""

    key: str
    label: str
    kind: str  # "input" | "select" | "check"
    choices: tuple[str, ...] = ()
    value_type: str = "str"  # "int" | "float" | "str" | "ints" | "floats"
    only_for: tuple[str, str] | None = None  # (key, value): shown only when key == value


def _activations() -> tuple[str, ...]:
    from core.spec import activation_names

    return tuple(activation_names())


def form_fields() -> list[tuple[str, list[Field]]]:
    """The form, section by section (choices from :mod:`core.config`, so new kinds appear)."""
    from core.config import DATA_KINDS, DYNAMICS_METHODS, REFINE_METHODS, SOLVERS, TEACHER_KINDS

    acts = _activations()
    return [
        (
            "Teacher",
            [
                Field("teacher.kind", "kind", "select", TEACHER_KINDS),
                Field("teacher.input_dim", "input dim d", "input", value_type="int"),
                Field("teacher.widths", "widths", "input", value_type="ints"),
                Field("teacher.activation", "activation", "select", acts),
                Field("teacher.bias", "bias", "check"),
                Field(
                    "teacher.u",
                    "GLU u",
                    "input",
                    value_type="floats",
                    only_for=("teacher.kind", "glu"),
                ),
                Field(
                    "teacher.v",
                    "GLU v",
                    "input",
                    value_type="floats",
                    only_for=("teacher.kind", "glu"),
                ),
                Field("teacher.path", "file (.npz)", "input", only_for=("teacher.kind", "file")),
            ],
        ),
        (
            "Student",
            [
                Field("student.widths", "widths", "input", value_type="ints"),
                Field("student.activation", "activation", "select", acts),
                Field("student.bias", "bias", "check"),
                Field("student.init_scale", "init scale", "input", value_type="float"),
                Field("seed", "seed", "input", value_type="int"),
            ],
        ),
        (
            "Data",
            [
                Field("data.kind", "kind", "select", DATA_KINDS),
                Field("data.samples", "samples N", "input", value_type="int"),
            ],
        ),
        (
            "Dynamics",
            [
                Field("dynamics.method", "method", "select", DYNAMICS_METHODS),
                Field("dynamics.solver", "solver", "select", SOLVERS),
                Field("dynamics.rtol", "rtol", "input", value_type="float"),
                Field("dynamics.atol", "atol", "input", value_type="float"),
                Field("dynamics.lr", "learning rate", "input", value_type="float"),
                Field("dynamics.t_max", "t max", "input", value_type="float"),
                Field("dynamics.max_seconds", "wall budget s", "input", value_type="float"),
                Field("refine.method", "refine", "select", REFINE_METHODS),
            ],
        ),
    ]


def check_label(value: bool) -> str:
    """A checkbox's label: its state in words."""
    return "on" if value else "off"


def widget_id(key: str) -> str:
    """DOM id of the widget for a dotted key (ids cannot contain dots)."""
    return "f-" + key.replace(".", "--").replace("_", "-")


def error_id(key: str) -> str:
    return "e-" + key.replace(".", "--").replace("_", "-")


def list_presets() -> list[tuple[str, Path]]:
    """(title, path) of the shipped teaching presets, title from the file's first comment."""
    out = []
    for path in sorted(PRESET_DIR.glob("*.toml")):
        title = path.stem.replace("_", " ")
        first = path.read_text(encoding="utf-8").splitlines()[:1]
        if first and first[0].startswith("#"):
            title = first[0].lstrip("# ").split(":")[0].strip() or title
        out.append((title, path))
    return out


def get_dotted(mapping: dict, key: str, default: Any = None) -> Any:
    node: Any = mapping
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(mapping: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = mapping
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def del_dotted(mapping: dict, key: str) -> None:
    parts = key.split(".")
    node = mapping
    for part in parts[:-1]:
        if part not in node:
            return
        node = node[part]
    node.pop(parts[-1], None)


def format_value(value: Any) -> str:
    """A config value as the text a user types."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_text(text: str, value_type: str) -> Any:
    """Form text → TOML value.  Unparseable text is passed through as the raw
    string so that :func:`core.config.parse_config` reports it with its reason."""
    text = text.strip()
    try:
        if value_type == "int":
            return int(text)
        if value_type == "float":
            return float(text)
        if value_type in ("ints", "floats"):
            conv = int if value_type == "ints" else float
            parts = [p for p in text.replace("[", "").replace("]", "").split(",") if p.strip()]
            return [conv(p) for p in parts]
    except ValueError:
        return text
    return text


class SetupScreen(Screen):
    """Configure a run; Run stays disabled until the config is valid."""

    BINDINGS: ClassVar[list] = [
        Binding("ctrl+r", "run", "Run", id="setup.run"),
        Binding("ctrl+o", "focus_presets", "Presets", id="setup.presets"),
        Binding("f1", "app.help", "Help", id="setup.help"),
    ]

    def __init__(self, config: Any, config_path: Path | None = None) -> None:
        super().__init__()
        from core.config import config_to_dict

        self.base = config_to_dict(config)
        self.config = config
        self.config_path = config_path
        self.error: Any = None
        self._fields = [f for _, fs in form_fields() for f in fs]

    def compose(self) -> ComposeResult:
        presets = list_presets()
        with Horizontal(id="setup-top"):
            yield Label("Preset", classes="field-label")
            yield Select(
                [(title, str(path)) for title, path in presets],
                prompt="load a teaching demo…",
                id="preset",
            )
            yield Button("Run ▶", id="run", variant="success", disabled=True)
        yield Static("", id="form-error")
        yield WatchPanel(id="preset-watch")
        with VerticalScroll(id="setup-form"):
            for title, fields in form_fields():
                with Vertical(classes="form-section") as section:
                    section.border_title = title
                    for f in fields:
                        yield from self._compose_field(f)
        yield Footer()

    def _compose_field(self, f: Field) -> ComposeResult:
        value = get_dotted(self.base, f.key)
        classes = "field-row"
        if f.only_for is not None:
            classes += " conditional"
        with Horizontal(classes=classes, id=widget_id(f.key) + "-row"):
            yield Label(f.label, classes="field-label")
            if f.kind == "select":
                opts = list(f.choices)
                if isinstance(value, str) and value not in opts:
                    opts.append(value)
                yield Select(
                    [(c, c) for c in opts],
                    value=value if value in opts else opts[0],
                    allow_blank=False,
                    id=widget_id(f.key),
                )
            elif f.kind == "check":
                # The label spells the state: the check mark alone is told apart only by
                # colour, which 16-colour terminals and screen readers lose.
                yield Checkbox(check_label(bool(value)), value=bool(value), id=widget_id(f.key))
            else:
                yield Input(format_value(value), id=widget_id(f.key))
        yield Static("", id=error_id(f.key), classes="field-error")

    def on_mount(self) -> None:
        self._update_conditional()
        self.validate()

    # -- form <-> mapping --------------------------------------------------------

    def form_mapping(self) -> dict:
        """The TOML mapping described by the form (base config + edited fields)."""
        mapping = copy.deepcopy(self.base)
        kind = self.query_one("#" + widget_id("teacher.kind"), Select).value
        for f in self._fields:
            if f.only_for is not None and self._value_of(f.only_for[0]) != f.only_for[1]:
                del_dotted(mapping, f.key)
                continue
            if f.key.endswith(".activation") and get_dotted(mapping, f.key + "s") is not None:
                continue  # the config names one activation per layer (``activations``) instead
            widget = self.query_one("#" + widget_id(f.key))
            if isinstance(widget, (Select, Checkbox)):
                value = widget.value
            else:
                text = widget.value
                if text.strip() == "" and get_dotted(self.base, f.key) is None:
                    del_dotted(mapping, f.key)
                    continue
                value = parse_text(text, f.value_type)
            set_dotted(mapping, f.key, value)
        if kind != get_dotted(self.base, "teacher.kind"):
            del_dotted(mapping, "teacher.params")  # inline weights belong to the old kind
        return mapping

    def _value_of(self, key: str) -> Any:
        widget = self.query_one("#" + widget_id(key))
        return widget.value  # type: ignore[attr-defined]

    def validate(self) -> Any:
        """Parse the form; show the error inline; enable Run only when valid."""
        from core.config import ConfigError, parse_config

        for f in self._fields:
            label = self.query_one("#" + error_id(f.key), Static)
            label.update("")
            label.display = False
        general = self.query_one("#form-error", Static)
        general.update("")
        source = str(self.config_path) if self.config_path else "form"
        try:
            cfg = parse_config(self.form_mapping(), source)
        except ConfigError as exc:
            self.error = exc
            cfg = None
            field = getattr(exc, "field", "") or ""
            message = getattr(exc, "message", None) or str(exc)
            target = self._error_target(field)
            if target is not None:
                target.update(f"⚠ {message}")
                target.display = True
                general.update(f"⚠ {field}: fix the marked field")
            else:
                general.update(f"⚠ {field}: {message}")
        except Exception as exc:  # a builder bug must not freeze the form
            self.error = exc
            cfg = None
            general.update(f"⚠ {type(exc).__name__}: {exc}")
        else:
            self.error = None
            self.config = cfg
        self.query_one("#run", Button).disabled = cfg is None
        return cfg

    def _error_target(self, field: str) -> Static | None:
        """The inline error label for a field, or for its closest enclosing form field."""
        keys = {f.key for f in self._fields}
        probe = field
        while probe:
            base = probe.split("[")[0]
            if base in keys:
                return self.query_one("#" + error_id(base), Static)
            if "." not in probe:
                break
            probe = probe.rsplit(".", 1)[0]
        return None

    def _update_conditional(self) -> None:
        for f in self._fields:
            if f.only_for is not None:
                row = self.query_one("#" + widget_id(f.key) + "-row")
                row.display = self._value_of(f.only_for[0]) == f.only_for[1]

    # -- events -----------------------------------------------------------------

    @on(Input.Changed)
    def _changed(self) -> None:
        self.validate()

    @on(Checkbox.Changed)
    def _checked(self, event: Checkbox.Changed) -> None:
        event.checkbox.label = check_label(event.value)
        self.validate()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset":
            if event.value is not Select.NULL:
                self.load_preset(Path(str(event.value)))
            return
        self._update_conditional()
        self.validate()

    def load_preset(self, path: Path) -> None:
        """Replace the form with a preset config file."""
        from core.config import ConfigError, config_to_dict, load_config

        try:
            cfg = load_config(path)
        except ConfigError as exc:
            self.query_one("#form-error", Static).update(f"⚠ {exc}")
            return
        self.base = config_to_dict(cfg)
        self.config_path = path
        with self.prevent(Input.Changed, Select.Changed, Checkbox.Changed):
            for f in self._fields:
                value = get_dotted(self.base, f.key)
                widget = self.query_one("#" + widget_id(f.key))
                if isinstance(widget, Select):
                    if value is not None:
                        if value not in {v for _, v in widget._options}:
                            # A value the form does not list (e.g. a newer config kind).
                            opts = [v for _, v in widget._options if v is not Select.NULL]
                            widget.set_options([(c, c) for c in [*opts, value]])
                        widget.value = value
                elif isinstance(widget, Checkbox):
                    widget.value = bool(value)
                    widget.label = check_label(bool(value))
                else:
                    widget.value = format_value(value)
        self._update_conditional()
        self.validate()
        self.query_one("#preset-watch", WatchPanel).show_for(explanation(path))
        self.notify(f"loaded preset {path.stem}", timeout=2)

    @on(Button.Pressed, "#run")
    def _run_pressed(self) -> None:
        self.action_run()

    def action_run(self) -> None:
        cfg = self.validate()
        if cfg is None:
            self.notify("fix the marked field first", severity="warning")
            return
        self.app.start_run(cfg, self.config_path)  # type: ignore[attr-defined]

    def action_focus_presets(self) -> None:
        self.query_one("#preset", Select).focus()
