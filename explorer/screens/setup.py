"""Setup screen: a form over the config TOML, validated by :func:`core.config.parse_config`.

Every form field is named by its dotted TOML key (``student.widths``); the form
builds the same mapping a TOML file would, so validation is exactly the CLI's.
A :class:`core.config.ConfigError` names the field: its message is shown inline
under that field and the Run button stays disabled until the form parses.

:func:`core.config.parse_config` stops at the first error; to list them all,
:func:`form_errors` puts the failing field (or, when that does not help, its table) back to
the loaded config's value and parses again — every rule stays core's.  Fields that a kind
does not use are hidden (``Field.only_for``); fields for keys core does not parse are not
in the form (:func:`parsed_keys`); an explicit teacher's ``params`` are typed as the TOML
of the ``[teacher.params]`` table; values no single choice expresses (per-neuron
activations, per-layer bias flags) are shown as loaded and kept.  Tab goes field to field
(:class:`FormScroll`) and the focused field's label is in reverse video.
"""

from __future__ import annotations

import copy
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static, TextArea

from explorer.watch import explanation
from explorer.widgets.narration import WatchPanel

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


@dataclass(frozen=True)
class Field:
    """One form field: dotted TOML key, label, widget kind, choices and value type."""

    key: str
    label: str
    kind: str  # "input" | "select" | "check" | "text"
    choices: tuple[str, ...] = ()
    value_type: str = "str"  # "int" | "float" | "str" | "ints" | "floats" | "toml"
    #: (key, values): shown only when the field ``key`` holds one of ``values``.  A hidden
    #: field keeps the loaded config's value while ``key`` keeps the loaded config's value;
    #: after ``key`` changes it is left out (core's default for the new kind applies).
    only_for: tuple[str, tuple[str, ...]] | None = None
    #: Keys of the loaded config that belong to this field's value and are left out when
    #: it changes or is left out (``data.sha256``, the hash core recorded for ``data.path``).
    companions: tuple[str, ...] = ()

    def shown(self, selector_value: Any) -> bool:
        """Whether the field applies when its ``only_for`` key holds ``selector_value``."""
        return self.only_for is None or selector_value in self.only_for[1]


#: Teacher kinds that are an MLP given by input_dim, widths, activation, bias, output_dim.
_MLP_TEACHERS = ("random", "file", "explicit")


def _teacher(*kinds: str) -> tuple[str, tuple[str, ...]]:
    return ("teacher.kind", kinds)


def _data(*kinds: str) -> tuple[str, tuple[str, ...]]:
    return ("data.kind", kinds)


def parsed_keys(table: str) -> set[str]:
    """The keys core.config parses in ``[table]`` (the fields of its dataclass): form
    fields for keys that core does not know (yet) are left out of the form."""
    from dataclasses import fields

    import core.config as c

    cls = {"student": c.StudentConfig, "data": c.DataConfig}[table]
    return {f.name for f in fields(cls)}


def _activations() -> tuple[str, ...]:
    from core.spec import activation_names

    return tuple(activation_names())


def form_fields() -> list[tuple[str, list[Field]]]:
    """The form, section by section (choices from :mod:`core.config`, so new kinds appear)."""
    from core.config import DATA_KINDS, DYNAMICS_METHODS, REFINE_METHODS, SOLVERS, TEACHER_KINDS

    acts = _activations()
    student_keys, data_keys = parsed_keys("student"), parsed_keys("data")
    constraints = [
        Field("student.unit_norm", "unit-norm w", "check"),
        Field("student.train_output", "train output", "check"),
    ]
    data_file = [
        Field(
            "data.path",
            "file (.npz)",
            "input",
            only_for=_data("file"),
            companions=("data.sha256",),
        )
    ]
    return [
        (
            "Teacher",
            [
                Field("teacher.kind", "kind", "select", TEACHER_KINDS),
                Field("teacher.input_dim", "input dim d", "input", value_type="int"),
                Field(
                    "teacher.widths",
                    "widths",
                    "input",
                    value_type="ints",
                    only_for=_teacher(*_MLP_TEACHERS, "orthonormal"),
                ),
                Field(
                    "teacher.activation",
                    "activation",
                    "select",
                    acts,
                    only_for=_teacher(*_MLP_TEACHERS, "orthonormal", "glu"),
                ),
                Field("teacher.bias", "bias", "check", only_for=_teacher(*_MLP_TEACHERS)),
                Field(
                    "teacher.output_dim",
                    "outputs",
                    "input",
                    value_type="int",
                    only_for=_teacher(*_MLP_TEACHERS, "none"),  # none: the data file's targets
                ),
                Field("teacher.u", "GLU u", "input", value_type="floats", only_for=_teacher("glu")),
                Field("teacher.v", "GLU v", "input", value_type="floats", only_for=_teacher("glu")),
                Field("teacher.path", "file (.npz)", "input", only_for=_teacher("file")),
                Field(
                    "teacher.params",
                    "params (TOML)",
                    "text",
                    value_type="toml",
                    only_for=_teacher("explicit"),
                ),
            ],
        ),
        (
            "Student",
            [
                Field("student.widths", "widths", "input", value_type="ints"),
                Field("student.activation", "activation", "select", acts),
                Field("student.bias", "bias", "check"),
                *[f for f in constraints if f.key.split(".")[1] in student_keys],
                Field("student.init_scale", "init scale", "input", value_type="float"),
                # empty: θ₀ drawn from the seed below; a number varies θ₀ alone
                Field("student.seed", "init seed", "input", value_type="int"),
                # seeds the teacher, θ₀ and the data sample unless they have their own seed
                Field("seed", "seed (all)", "input", value_type="int"),
            ],
        ),
        (
            "Data",
            [
                Field("data.kind", "kind", "select", DATA_KINDS),
                # N is the file's for "file", unused for the exact Gaussian expectation.
                Field(
                    "data.samples",
                    "samples N",
                    "input",
                    value_type="int",
                    only_for=_data(
                        *(k for k in DATA_KINDS if k not in ("file", "gaussian-infinite"))
                    ),
                ),
                *[f for f in data_file if "path" in data_keys],
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


#: The select value that stands for the loaded config's own value when the choices cannot
#: express it (per-neuron or per-layer activations): kept as loaded until another is picked.
AS_LOADED = "<as loaded>"


def select_options(f: Field, base: dict) -> tuple[list[tuple[str, Any]], Any]:
    """The (label, value) options of a select field and its value for the config ``base``.

    A value that is no single choice — per-neuron names (``activation = ["relu", …]``), one
    entry per layer (``activations``) or a kind the form does not list — is one more option
    labelled with what it holds, so the form shows it and keeps it (:data:`AS_LOADED`).
    """
    value = get_dotted(base, f.key)
    opts: list[tuple[str, Any]] = [(c, c) for c in f.choices]
    layers = get_dotted(base, f.key + "s") if f.key.endswith(".activation") else None
    if layers is not None or isinstance(value, list):

        def names(v: Any) -> str:
            return ", ".join(v) if isinstance(v, list) else str(v)

        label = (
            "per layer: " + " | ".join(names(e) for e in layers)
            if layers is not None
            else "per neuron: " + names(value)
        )
        return [*opts, (label, AS_LOADED)], AS_LOADED
    if value is None:
        return opts, opts[0][1]
    if value not in f.choices:
        opts.append((str(value), value))
    return opts, value


def check_label(value: Any) -> str:
    """A checkbox's label: its state in words; a list of flags (``bias`` per layer) is shown
    as loaded, ``per layer: on | off | …``."""
    if isinstance(value, list):
        return "per layer: " + " | ".join(check_label(v) for v in value)
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
    """A config value as the text a user types (floats short, but never rounded)."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def format_params(params: Any) -> str:
    """A ``[teacher.params]`` table as TOML lines, one array per line (``w1 = [[…], …]``);
    JSON's number syntax is TOML's and keeps every digit (repr of each float)."""
    if not isinstance(params, dict):
        return ""
    return "\n".join(f"{name} = {json.dumps(value)}" for name, value in params.items())


def parse_text(text: str, value_type: str) -> Any:
    """Form text → TOML value.  Unparseable text is passed through as the raw
    string so that :func:`core.config.parse_config` reports it with its reason; TOML text
    (``value_type = "toml"``) that is no TOML raises :class:`tomllib.TOMLDecodeError`."""
    text = text.strip()
    if value_type == "toml":
        return tomllib.loads(text)  # a TOMLDecodeError is the form's to report
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


def form_errors(mapping: dict, source: str, fallback: dict, keys: set[str]) -> tuple[Any, list]:
    """``(config, [])`` when ``mapping`` parses, else ``(None, errors)``: every
    :class:`core.config.ConfigError` of the form, found one at a time.

    :func:`core.config.parse_config` stops at the first error, so the failing form field
    (the one of ``keys`` that encloses the error's field) gets its value from ``fallback``
    (the last valid config's mapping; left out when it has none) and the mapping is parsed
    again.  When that field fails again (the error is then the fallback's and is not listed:
    a required field the fallback lacks, a rule across fields it still breaks) or the error
    names no form field, the whole table (``[teacher]``…) goes back to the fallback's, so
    the tables after it are still checked.  Stops when it parses or nothing is left to put
    back.  The rules are core's alone; a later error may depend on a fallback value.
    """
    from core.config import ConfigError, parse_config

    mapping = copy.deepcopy(mapping)
    errors: list = []
    tried: set[str] = set()  # form keys and tables put back
    while True:
        try:
            cfg = parse_config(mapping, source)
        except ConfigError as exc:
            field = exc.field or ""
            key = form_key(field, keys)
            if (key is None or key not in tried) and str(exc) not in map(str, errors):
                errors.append(exc)
            if key is not None and key not in tried:
                tried.add(key)
                value = get_dotted(fallback, key)
                if value is None:
                    del_dotted(mapping, key)
                else:
                    set_dotted(mapping, key, copy.deepcopy(value))
                continue
            table = field.split(".")[0] if "." in field else None
            if table is None or table in tried or not isinstance(fallback.get(table), dict):
                return None, errors
            tried.add(table)
            mapping[table] = copy.deepcopy(fallback[table])
        else:
            return (None, errors) if errors else (cfg, [])


def form_key(field: str, keys: set[str]) -> str | None:
    """The form field that holds a config field (``teacher.params.w1`` → ``teacher.params``,
    ``student.activation[2]`` → ``student.activation``), or None."""
    probe = field
    while probe:
        base = probe.split("[")[0]
        if base in keys:
            return base
        if "." not in probe:
            return None
        probe = probe.rsplit(".", 1)[0]
    return None


class FormScroll(VerticalScroll, can_focus=False):
    """The form's scroll container: no Tab stop of its own (Tab goes field to field, and a
    focused field scrolls itself into view)."""


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
        self.error: Any = None  # the first of ``errors``
        self.errors: list = []  # every core.config.ConfigError of the form
        self._fields = [f for _, fs in form_fields() for f in fs]
        self._keys = {f.key for f in self._fields}
        self._text_errors: dict[str, str] = {}  # form key → why its text is not TOML
        self._as_loaded: set[str] = set()  # check fields holding the loaded per-layer list

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
        with FormScroll(id="setup-form"):
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
        if f.kind == "text":
            classes += " tall"
        with Horizontal(classes=classes, id=widget_id(f.key) + "-row"):
            yield Label(f.label, classes="field-label")
            if f.kind == "select":
                opts, current = select_options(f, self.base)
                yield Select(opts, value=current, allow_blank=False, id=widget_id(f.key))
            elif f.kind == "check":
                # The label spells the state: the check mark alone is told apart only by
                # colour, which 16-colour terminals and screen readers lose.
                if isinstance(value, list):  # per-layer flags: kept until the box is ticked
                    self._as_loaded.add(f.key)
                yield Checkbox(check_label(value), value=value is True, id=widget_id(f.key))
            elif f.kind == "text":
                yield TextArea(
                    format_params(value),
                    placeholder="w1 = [[…], …]  (one array per line)",
                    id=widget_id(f.key),
                )
            else:
                yield Input(format_value(value), id=widget_id(f.key))
        yield Static("", id=error_id(f.key), classes="field-error")

    def on_mount(self) -> None:
        self._update_conditional()
        self.validate()
        # `explorer explorer/presets/NAME.toml` opens a preset as the menu does: with its text
        self.query_one("#preset-watch", WatchPanel).show_for(explanation(self.config_path))

    # -- form <-> mapping --------------------------------------------------------

    def form_mapping(self) -> dict:
        """The TOML mapping described by the form (base config + edited fields).

        A hidden field (``Field.only_for``) keeps the base value while its selector keeps
        the base's value, and is left out once the selector changed.  Text that is not
        TOML is passed on as the raw string (core then refuses the field) and its reason
        kept in ``_text_errors``.
        """
        mapping = copy.deepcopy(self.base)
        self._text_errors = {}
        for f in self._fields:
            if f.only_for is not None:
                selector = f.only_for[0]
                value = self._value_of(selector)
                if not f.shown(value):
                    if value != get_dotted(self.base, selector):
                        for key in (f.key, *f.companions):
                            del_dotted(mapping, key)
                    continue
            widget = self.query_one("#" + widget_id(f.key))
            if isinstance(widget, Select) and widget.value == AS_LOADED:
                continue  # the loaded per-neuron / per-layer names, kept
            if f.key in self._as_loaded:
                continue  # the loaded per-layer flags, kept
            if isinstance(widget, (Select, Checkbox)):
                value = widget.value
                if f.key.endswith(".activation"):
                    del_dotted(mapping, f.key + "s")  # one name now stands for every layer
            else:
                text = widget.text if isinstance(widget, TextArea) else widget.value
                if text.strip() == "" and f.kind != "text" and get_dotted(self.base, f.key) is None:
                    del_dotted(mapping, f.key)
                    continue
                try:
                    value = parse_text(text, f.value_type)
                except tomllib.TOMLDecodeError as exc:
                    self._text_errors[f.key] = f"not TOML: {exc}"
                    value = text
            if value != get_dotted(self.base, f.key):
                for key in f.companions:
                    del_dotted(mapping, key)
            set_dotted(mapping, f.key, value)
        return mapping

    def _value_of(self, key: str) -> Any:
        widget = self.query_one("#" + widget_id(key))
        return widget.value  # type: ignore[attr-defined]

    def validate(self) -> Any:
        """Parse the form; mark every invalid field inline; enable Run only when valid."""
        for f in self._fields:
            label = self.query_one("#" + error_id(f.key), Static)
            label.update("")
            label.display = False
        general = self.query_one("#form-error", Static)
        general.update("")
        source = str(self.config_path) if self.config_path else "form"
        try:
            cfg, errors = form_errors(self.form_mapping(), source, self.base, self._keys)
        except Exception as exc:  # a builder bug must not freeze the form
            self.error, self.errors = exc, [exc]
            general.update(f"⚠ {type(exc).__name__}: {exc}")
            self.query_one("#run", Button).disabled = True
            return None
        self.errors = errors
        self.error = errors[0] if errors else None
        if cfg is not None:
            self.config = cfg
        marked, unplaced = [], []
        for exc in errors:
            field = getattr(exc, "field", "") or ""
            message = getattr(exc, "message", None) or str(exc)
            key = form_key(field, self._keys)
            if key is None:
                unplaced.append(f"{field}: {message}" if field else message)
                continue
            message = self._text_errors.get(key, message)
            if key != field:
                message = f"{field}: {message}"  # e.g. teacher.params.w1
            target = self.query_one("#" + error_id(key), Static)
            target.update(f"⚠ {message}", layout=True)
            target.display = True
            marked.append(key)
        lines = [f"⚠ {line}" for line in unplaced]
        if marked:
            s = "s" if len(marked) != 1 else ""
            lines.append(f"⚠ fix the marked field{s}: {', '.join(marked)}")
        general.update("\n".join(lines))
        self.query_one("#run", Button).disabled = cfg is None
        return cfg

    def _update_conditional(self) -> None:
        for f in self._fields:
            if f.only_for is not None:
                row = self.query_one("#" + widget_id(f.key) + "-row")
                row.display = f.shown(self._value_of(f.only_for[0]))

    # -- events -----------------------------------------------------------------

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Mark the focused field's row (its label shows in reverse video, app.tcss): an
        input's cursor is visible in every colour mode, a select's or checkbox's focus is
        only a shade, which NO_COLOR and 16-colour terminals lose."""
        for row in self.query(".field-row.-focused"):
            row.remove_class("-focused")
        for node in event.widget.ancestors_with_self:
            if node.has_class("field-row"):
                node.add_class("-focused")
                break

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        for row in self.query(".field-row.-focused"):
            row.remove_class("-focused")

    @on(Input.Changed)
    @on(TextArea.Changed)
    def _changed(self) -> None:
        self.validate()

    @on(Checkbox.Changed)
    def _checked(self, event: Checkbox.Changed) -> None:
        self._as_loaded -= {k for k in self._as_loaded if widget_id(k) == event.checkbox.id}
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
        with self.prevent(Input.Changed, Select.Changed, Checkbox.Changed, TextArea.Changed):
            for f in self._fields:
                value = get_dotted(self.base, f.key)
                widget = self.query_one("#" + widget_id(f.key))
                if isinstance(widget, Select):
                    opts, current = select_options(f, self.base)
                    widget.set_options(opts)
                    widget.value = current
                elif isinstance(widget, Checkbox):
                    if isinstance(value, list):
                        self._as_loaded.add(f.key)
                    else:
                        self._as_loaded.discard(f.key)
                    widget.value = value is True
                    widget.label = check_label(value)
                elif isinstance(widget, TextArea):
                    widget.text = format_params(value)
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
            self.notify("fix the marked fields first", severity="warning")
            return
        self.app.start_run(cfg, self.config_path)  # type: ignore[attr-defined]

    def action_focus_presets(self) -> None:
        self.query_one("#preset", Select).focus()
