"""Run configuration: the TOML file of DESIGN.md as validated, frozen dataclasses.

A configuration names everything a run depends on — teacher, student, data,
dynamics and refinement settings, and one integer ``seed`` — so that a run is
reproducible from its config alone.  Every key has a default (those of
:func:`default_config`'s tables), every value is checked with a reason, and
unknown keys are errors that name the closest known key.

Errors are :class:`ConfigError` whose ``str()`` is the single line
``"<file>: <field>: <problem>"``, e.g.
``cfg.toml: student.widths: must be a list of positive integers ([] for no hidden layer), got [0]``.

Paths (``teacher.path``, ``data.path``) are resolved relative to the config file and
stored absolute, so a config copied into a session folder still finds its files; a data
file's SHA-256 is stored beside its path (``data.sha256``) and checked at every parse.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core.datafile import DataFile, read_data_file
from core.files import ECHO_CHARS, FileReadError, load_params_npz, one_line, read_toml, short
from core.spec import NetworkSpec, activation_names, canonical_activation, make_spec

#: "none": no teacher — the targets are ``y`` of a data file (``data.kind = "file"``).
TEACHER_KINDS = ("random", "orthonormal", "glu", "rosenbrock", "file", "explicit", "none")
DATA_KINDS = ("gaussian", "uniform", "sobol", "gaussian-infinite", "file")
LOSSES = ("mse", "correlation", "crossentropy")
#: ``student.output``: the logits as they are, or softmax class probabilities (cross-entropy);
#: besides these, any activation name φ (MSE on finite data): f = φ(W_L h + b_L) elementwise.
OUTPUTS = ("identity", "softmax")
DYNAMICS_METHODS = ("flow", "gd", "sgd", "adam")
SOLVERS = ("auto", "tsit5", "dopri5", "dopri8", "kvaerno5", "kencarp5", "lsoda", "bdf")
REFINE_METHODS = ("newton", "trust-region", "auto", "none")
MIN_SAMPLES, MAX_SAMPLES = 10, 100_000
MAX_T = 1e10
#: Size caps (fixed, so a config valid on one machine is valid on all): the P×P float64
#: Hessian that refinement and analysis build, and the N×(d + widths + k) float64 inputs
#: and activations of one forward pass over the data.
MAX_HESSIAN_BYTES = 4 << 30
MAX_DATA_BYTES = 4 << 30

#: Named network parameters as nested tuples: (("w1", ((…), …)), ("b1", (…)), …).
ParamTuples = tuple[tuple[str, tuple], ...]
_T = TypeVar("_T")
#: ``activations``: per hidden layer, one name or a tuple of per-neuron names.
LayerActivations = tuple[str | tuple[str, ...], ...]
#: ``bias``: one flag for every layer, or one per layer (hidden layers in order, then the
#: output layer: :func:`core.spec.make_spec`'s convention); a list of equal flags is stored
#: as the one flag.
Bias = bool | tuple[bool, ...]


def per_layer_activations(
    widths: Sequence[int],
    activation: str | tuple[str, ...] | None,
    activations: LayerActivations | None = None,
) -> list[tuple[str, ...]]:
    """Per hidden layer, the tuple of per-neuron names, from ``activation`` (one name, or one
    per neuron of a single hidden layer) or ``activations`` (one entry per hidden layer)."""
    if activations is not None:
        pairs = zip(widths, activations, strict=True)
        return [(a,) * k if isinstance(a, str) else tuple(a) for k, a in pairs]
    if isinstance(activation, tuple):
        return [activation]
    return [(activation or "softplus",) * k for k in widths]


def layer_biases(widths: Sequence[int], bias: Bias) -> tuple[bool, ...]:
    """One flag per layer (hidden layers, then the output layer) from ``bias``."""
    return (bias,) * (len(widths) + 1) if isinstance(bias, bool) else tuple(bias)


def _linear(
    widths: Sequence[int], activation: str | tuple[str, ...] | None, activations: Any
) -> bool:
    """Whether every hidden activation is the identity (a deep linear network)."""
    layers = per_layer_activations(widths, activation, activations)
    return all(a == "identity" for layer in layers for a in layer)


class ConfigError(ValueError):
    """A configuration problem; ``str()`` is ``"<file>: <field>: <problem>"`` on one line."""

    def __init__(self, source: str, field: str | None, message: str) -> None:
        self.source = one_line(source)
        self.field = None if field is None else short(field)
        self.message = short(" ".join(str(message).split()), 400)  # one line, always
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.field:
            return f"{self.source}: {self.field}: {self.message}"
        return f"{self.source}: {self.message}"


@dataclass(frozen=True)
class TeacherConfig:
    """The target.  ``kind`` picks the builder in :mod:`core.teachers`.

    * random / file / explicit: an MLP (input_dim, widths, activation or activations, bias,
      output_dim, and optionally ``output``: the output layer's activation φ, None = linear);
      weights i.i.d. N(0,1) (random), from an ``.npz`` (file, ``path``) or inline (explicit,
      ``params``).
    * orthonormal: Σ_j σ(v_j·x), bias-free, one hidden layer with widths[0] ≤ input_dim.
    * glu: y = (v·x) σ′(u·x) with ``u``, ``v`` of length input_dim.
    * rosenbrock: the standardized Rosenbrock function of input_dim ≥ 2 variables.

    ``seed``: the seed of a random / orthonormal teacher's draw (default: the top-level seed).
    """

    kind: str = "random"
    input_dim: int = 2
    widths: tuple[int, ...] = (4,)
    activation: str | None = "softplus"
    bias: Bias = True
    output_dim: int = 1
    u: tuple[float, ...] | None = None
    v: tuple[float, ...] | None = None
    path: str | None = None
    params: ParamTuples | None = None
    activations: LayerActivations | None = None
    output: str | None = None
    seed: int | None = None

    @property
    def is_network(self) -> bool:
        """Whether the teacher is an MLP (and so has a spec and named parameters)."""
        return self.kind in ("random", "orthonormal", "file", "explicit")

    def spec(self) -> NetworkSpec:
        """The teacher network's spec (for network kinds)."""
        acts = per_layer_activations(self.widths, self.activation, self.activations)
        phi = self.output or "identity"
        return make_spec(self.input_dim, self.widths, acts, self.bias, self.output_dim, phi)


@dataclass(frozen=True)
class StudentConfig:
    """The student MLP; its input/output dimensions are the teacher's.

    ``activation`` is one name or (one hidden layer) one name per neuron; ``activations``
    (instead of ``activation``, which is then ``None``) one entry per hidden layer, each a
    name or a per-neuron list of names.  ``params`` optionally fixes θ₀ (named view);
    otherwise θ₀ is LeCun-normal × ``init_scale``.  ``output = "softmax"`` (with
    ``data.loss = "crossentropy"``) reads the k_L outputs as class probabilities; any other
    activation name φ (MSE, finite data) is the output layer's activation, f = φ(W_L h + b_L).
    ``unit_norm``: each first-layer weight vector w_i stays on the unit sphere (bias-free
    first layer; Riemannian flow, :mod:`core.manifold`); ``train_output = false``: the
    output layer's weights stay at their initial values (``params``, else all ones).
    ``seed``: the seed of θ₀'s random draw (default: the top-level ``seed``), so that a
    sweep can vary the initialisation with the teacher fixed.
    """

    widths: tuple[int, ...] = (4,)
    activation: str | tuple[str, ...] | None = "softplus"
    bias: Bias = True
    init_scale: float = 1.0
    params: ParamTuples | None = None
    activations: LayerActivations | None = None
    output: str = "identity"
    unit_norm: bool = False
    train_output: bool = True
    seed: int | None = None


@dataclass(frozen=True)
class DataConfig:
    """Inputs: ``samples`` draws of ``kind`` (seeded by ``seed``, default the top-level seed),
    the exact Gaussian expectation (``gaussian-infinite``, where ``samples`` is unused), or
    the ``.npz`` at ``path`` (``file``: :mod:`core.datafile`; ``samples`` is its N, ``sha256``
    its content hash, recorded at the first parse and required to match at every later one).
    """

    kind: str = "gaussian"
    samples: int = 1000
    loss: str = "mse"
    seed: int | None = None
    path: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class DynamicsFields:
    """How to run the dynamics: the ``[dynamics]`` keys of the run itself, one field table
    for :class:`DynamicsConfig` (the TOML table) and :class:`core.flow.DynamicsSettings`
    (what the flow runs).

    Attributes:
        method: "flow" | "gd" | "sgd" | "adam".
        solver: "auto" | "tsit5" | "dopri5" | "dopri8" | "kvaerno5" | "kencarp5" | "lsoda" |
            "bdf" (flow only; see :func:`core.flow.resolve_solver`).
        t_max: final time (flow time, or iterations × lr).
        rtol, atol: step-size controller tolerances (and the stiff root finder's).
        max_seconds: wall-clock budget, compilation included; checked after every scipy
            step and bounding every jitted chunk's step budget, so a run stops within a
            step or a chunk of it, with reason "max_seconds".
        max_steps: accepted solver steps / optimizer iterations.
        grad_tol: stop as "converged" once ‖∇L‖∞ < grad_tol at a save time.
        lr: learning rate of gd / sgd / adam.
        batch_size: sgd minibatch size.
        tauinv: per-parameter inverse time scales τ⁻¹ (P,), or None for ones.
        n_saves: number of log-spaced save times over [t_first, t_max].
    """

    method: str = "flow"
    solver: str = "auto"
    t_max: float = 1e6
    rtol: float = 1e-8
    atol: float = 1e-10
    max_seconds: float = 60.0
    max_steps: int = 10**7
    grad_tol: float = 1e-12
    lr: float = 1e-2
    batch_size: int = 32
    tauinv: tuple[float, ...] | None = None
    n_saves: int = 200


@dataclass(frozen=True)
class DynamicsConfig(DynamicsFields):
    """The ``[dynamics]`` table: :class:`DynamicsFields` and ``maxnorm``, the weight-norm
    barrier's radius (part of the objective, :func:`core.objectives.barrier`; None: none)."""

    maxnorm: float | None = None


@dataclass(frozen=True)
class RefineConfig:
    """Refinement to the exact critical point (:func:`core.refine.refine`), during the flow
    once it is in a minimum's basin and after it (:mod:`core.fixed_point`).

    ``method = "auto"``: trust region, then a Newton polish; "none": the flow alone.
    """

    method: str = "auto"
    gtol: float = 1e-12
    max_iter: int = 200


@dataclass(frozen=True)
class Config:
    """A whole run configuration.  ``source`` (the file it came from) is not compared."""

    seed: int = 1
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    source: str = field(default="<default>", compare=False)

    @property
    def data_seed(self) -> int:
        """Seed of the input sample: ``data.seed`` or else the top-level seed."""
        return self.seed if self.data.seed is None else self.data.seed

    def student_spec(self) -> NetworkSpec:
        """Student spec: teacher's input/output dimensions, student widths/activation/bias."""
        t, s = self.teacher, self.student
        return _Validator._student_spec(t, s.widths, s.activation, s.bias, s.activations, s.output)


# ----------------------------------------------------------------------------- public API


def default_config() -> Config:
    """The teacher-recovery demo: a problem that reaches an exact global minimum in seconds.

    d = 2, teacher: 3 softplus neurons with biases (random N(0,1) weights, seed 3),
    student of width 3, N = 500 Gaussian inputs, gradient flow to t = 10⁶, then
    trust-region + Newton refinement (loss ~1e-28).  Identical to
    ``explorer/presets/teacher_recovery.toml`` and ``examples/teacher_recovery.toml``
    (a test checks both).
    """
    return Config(
        seed=3,
        teacher=TeacherConfig(widths=(3,)),
        student=StudentConfig(widths=(3,)),
        data=DataConfig(kind="gaussian", samples=500),
        dynamics=DynamicsConfig(t_max=1e6, max_seconds=120.0),
        refine=RefineConfig(method="auto"),
    )


def read_toml_mapping(path: str | Path, error: Callable[[str], ConfigError]) -> dict[str, Any]:
    """The TOML mapping of a config-like file (configs, sweeps, a sweep's base).

    Bounded, regular files only, nesting capped (:func:`core.files.read_toml`); any
    problem ("file not found", "not a file", "invalid TOML: …") raises ``error(problem)``,
    an exception worded by the caller (which file, which field).
    """
    p = Path(path)
    if not p.is_file():
        raise error("file not found" if not p.exists() else "not a file")
    try:
        return read_toml(p)
    except FileReadError as e:
        raise error(str(e)) from None


def load_toml_file(path: str | Path, parse: Callable[..., _T], error: type[ConfigError]) -> _T:
    """``parse(mapping, str(path), base_dir=path's folder)`` of the TOML file ``path``
    (a config, a sweep); a read problem raises ``error(str(path), None, problem)``."""
    src = str(path)
    mapping = read_toml_mapping(path, lambda problem: error(src, None, problem))
    return parse(mapping, src, base_dir=Path(path).parent)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; raise :class:`ConfigError` on any problem."""
    return load_toml_file(path, parse_config, ConfigError)


def parse_config(
    mapping: Mapping[str, Any], source: str = "<config>", base_dir: str | Path | None = None
) -> Config:
    """Validate a TOML-like mapping into a :class:`Config`.

    ``base_dir`` resolves relative ``teacher.path`` (default: the folder of ``source``
    when that is a file path, else the current directory).
    """
    if base_dir is None:
        sp = Path(source)
        base_dir = sp.parent if sp.suffix else Path.cwd()
    v = _Validator(str(source), Path(base_dir))
    return v.config(mapping)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The TOML mapping of a config (lists, no ``None``): ``parse_config`` inverts it.

    ``tomli_w.dumps(config_to_dict(cfg))`` is a complete config file.
    """
    out: dict[str, Any] = {"seed": cfg.seed}
    for name in ("teacher", "student", "data", "dynamics", "refine"):
        if name == "teacher" and cfg.teacher.kind == "none":  # its dimensions only
            t = cfg.teacher
            out[name] = {"kind": "none", "input_dim": t.input_dim, "output_dim": t.output_dim}
            continue
        table = {}
        for f in fields(getattr(cfg, name)):
            value = getattr(getattr(cfg, name), f.name)
            if value is None:
                continue  # TOML has no null: absent means default/None
            table[f.name] = _to_toml(value, f.name)
        out[name] = table
    return out


def config_to_toml(cfg: Config) -> str:
    """The config as TOML text."""
    import tomli_w

    return tomli_w.dumps(config_to_dict(cfg))


def with_overrides(cfg: Config, **tables: Mapping[str, Any]) -> Config:
    """A copy of ``cfg`` with some table keys replaced, re-validated (e.g. for resuming)."""
    d = config_to_dict(cfg)
    for name, values in tables.items():
        if name == "seed":
            d["seed"] = values
        else:
            d[name] = {**d[name], **dict(values)}
    return parse_config(d, cfg.source, base_dir=Path.cwd())


def params_dict(params: ParamTuples) -> dict[str, np.ndarray]:
    """Named parameter arrays from the nested-tuple form stored in configs."""
    return {k: np.asarray(v, dtype=np.float64) for k, v in params}


# ----------------------------------------------------------------------------- internals


def _to_toml(value: Any, name: str) -> Any:
    if name == "params":
        return {k: np.asarray(v, dtype=np.float64).tolist() for k, v in value}
    if isinstance(value, tuple):
        return [list(x) if isinstance(x, tuple) else x for x in value]
    return value


def _nested_tuple(a: np.ndarray) -> tuple:
    return tuple(_nested_tuple(x) for x in a) if a.ndim > 1 else tuple(float(x) for x in a)


def _fmt(value: Any) -> str:
    """Short repr of a user value for messages (TOML-ish: lists, true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    return short(repr(value), ECHO_CHARS)


class _Validator:
    """Checks one mapping; every error names ``table.key``."""

    TABLES = ("teacher", "student", "data", "dynamics", "refine")

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, field_name: str | None, message: str) -> ConfigError:
        return ConfigError(self.source, field_name, message)

    # -- generic checks

    def check_keys(self, table: Mapping, known: Sequence[str], prefix: str) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                where = f"{prefix}.{key}" if prefix else str(key)
                raise self.fail(where, f"unknown key{hint} (known: {', '.join(known)})")

    def table(self, mapping: Mapping, name: str) -> Mapping:
        value = mapping.get(name, {})
        if not isinstance(value, Mapping):
            raise self.fail(name, f"must be a table, got {_fmt(value)}")
        return value

    def integer(self, value: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise self.fail(name, f"must be an integer, got {_fmt(value)}")
        if lo is not None and value < lo:
            raise self.fail(name, f"must be ≥ {lo}, got {value}")
        if hi is not None and value > hi:
            raise self.fail(name, f"must be ≤ {hi}, got {value}")
        return int(value)

    def number(
        self,
        value: Any,
        name: str,
        *,
        positive: bool = False,
        hi: float | None = None,
        lt: float | None = None,
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise self.fail(name, f"must be a number, got {_fmt(value)}")
        x = float(value)
        if not math.isfinite(x):
            raise self.fail(name, f"must be finite, got {value}")
        if positive and x <= 0:
            raise self.fail(name, f"must be > 0, got {value}")
        if hi is not None and x > hi:
            raise self.fail(name, f"must be ≤ {hi:g}, got {value}")
        if lt is not None and x >= lt:
            raise self.fail(name, f"must be < {lt:g}, got {value}")
        return x

    def boolean(self, value: Any, name: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {_fmt(value)}")
        return value

    def bias(self, value: Any, name: str, widths: tuple[int, ...]) -> Bias:
        """One flag, or one per layer: the hidden layers in order, then the output layer."""
        if not isinstance(value, list | tuple):
            return self.boolean(value, name)
        n = len(widths) + 1
        if len(value) != n:
            raise self.fail(
                name,
                f"needs one flag per layer, hidden layers then output ({n} for widths = "
                f"{list(widths)}), got {len(value)}",
            )
        flags = tuple(self.boolean(b, f"{name}[{i}]") for i, b in enumerate(value))
        return flags[0] if len(set(flags)) == 1 else flags

    def choice(self, value: Any, name: str, options: Sequence[str]) -> str:
        if not isinstance(value, str) or value not in options:
            close = (
                difflib.get_close_matches(value, list(options), n=1, cutoff=0.6)
                if isinstance(value, str)
                else []
            )
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(name, f"must be one of {', '.join(options)}, got {_fmt(value)}{hint}")
        return value

    def widths(self, value: Any, name: str) -> tuple[int, ...]:
        """Hidden widths; ``[]`` is a net with no hidden layer (one layer, input to output)."""
        ok = isinstance(value, list | tuple) and all(
            isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in value
        )
        if not ok:
            msg = f"must be a list of positive integers ([] for no hidden layer), got {_fmt(value)}"
            raise self.fail(name, msg)
        if sum(value) > 10_000:
            raise self.fail(name, f"total width {sum(value)} is too large (≤ 10000)")
        return tuple(int(k) for k in value)

    def activation_name(self, value: Any, name: str) -> str:
        """The canonical name (aliases resolved: configs and sessions store canonical names)."""
        if not isinstance(value, str):
            raise self.fail(name, f"must be an activation name, got {_fmt(value)}")
        try:
            canonical = canonical_activation(value)
        except ValueError:
            close = difflib.get_close_matches(value, activation_names(), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(
                name,
                f"unknown activation {_fmt(value)}{hint} "
                f"(choose one of {', '.join(activation_names())})",
            ) from None
        return canonical

    def vector(self, value: Any, name: str, length: int | None = None) -> tuple[float, ...]:
        if not isinstance(value, list | tuple) or not value:
            raise self.fail(name, f"must be a non-empty list of numbers, got {_fmt(value)}")
        out = tuple(self.number(x, f"{name}[{i}]") for i, x in enumerate(value))
        if length is not None and len(out) != length:
            raise self.fail(name, f"must have length {length}, got {len(out)}")
        return out

    def params(self, value: Any, name: str, spec: NetworkSpec) -> ParamTuples:
        """Named network parameters; each must have the spec's shape and be finite."""
        if not isinstance(value, Mapping):
            raise self.fail(name, f"must be a table like {{w1 = [[...]], ...}}, got {_fmt(value)}")
        shapes = spec.shapes
        self.check_keys(value, list(shapes), name)
        out = []
        for key, shape in shapes.items():
            if key not in value:
                raise self.fail(f"{name}.{key}", f"missing (expected shape {list(shape)})")
            try:
                arr = np.asarray(value[key], dtype=np.float64)
            except (ValueError, TypeError):
                raise self.fail(
                    f"{name}.{key}", f"must be a (nested) list of numbers of shape {list(shape)}"
                ) from None
            if arr.shape != shape:
                raise self.fail(
                    f"{name}.{key}", f"has shape {list(arr.shape)}, expected {list(shape)} (out×in)"
                )
            if not np.all(np.isfinite(arr)):
                raise self.fail(f"{name}.{key}", "must be finite")
            out.append((key, _nested_tuple(arr)))
        return tuple(out)

    # -- tables

    def config(self, mapping: Mapping) -> Config:
        if not isinstance(mapping, Mapping):
            raise self.fail(None, "a config must be a table of tables")
        self.check_keys(mapping, ("seed", *self.TABLES), "")
        seed = self.integer(mapping.get("seed", 1), "seed", 0, 2**63 - 1)
        data = self.data(self.table(mapping, "data"))
        teacher = self.teacher_for(mapping, data)
        student = self.student(self.table(mapping, "student"), teacher)
        dynamics = self.dynamics(self.table(mapping, "dynamics"), teacher, student)
        refine = self.refine(self.table(mapping, "refine"))
        cfg = Config(seed, teacher, student, data, dynamics, refine, source=self.source)
        self.cross_checks(cfg)
        return cfg

    def teacher_for(self, mapping: Mapping, data: DataConfig) -> TeacherConfig:
        """The ``[teacher]`` table, or no teacher (kind "none", the dimensions of the data
        file) when the file holds targets ``y`` and the table is omitted or says "none"."""
        table = self.table(mapping, "teacher")
        file = read_data_file(data.path) if data.kind == "file" else None  # cached, checked
        labelled = file is not None and file.y is not None
        if table.get("kind") == "none" or (labelled and "teacher" not in mapping):
            return self.no_teacher(table, data, file)
        teacher = self.teacher(table)
        if file is None:
            return teacher
        name = short(Path(file.path).name)
        if labelled:
            raise self.fail(
                "data.path",
                f"{name} holds targets y, so there is no teacher to label x: omit the [teacher] "
                "table (or set teacher.kind = 'none'), or drop y from the file",
            )
        if file.input_dim != teacher.input_dim:
            raise self.fail(
                "data.path",
                f"{name}: x has {file.input_dim} columns, teacher.input_dim = {teacher.input_dim}",
            )
        return teacher

    def no_teacher(self, t: Mapping, data: DataConfig, file: DataFile | None) -> TeacherConfig:
        """Teacher kind "none": d from x; K from y's columns, else 1 (mse) or, for class
        labels, ``teacher.output_dim`` if given, else the largest label + 1."""
        if file is None or file.y is None:
            raise self.fail(
                "teacher.kind",
                "'none' needs data.kind = 'file' with targets y in data.path (or a teacher "
                "to label x)",
            )
        for key in t:
            if key not in ("kind", "input_dim", "output_dim"):
                raise self.fail(
                    f"teacher.{key}", "not used by kind = 'none' (data.path gives the targets)"
                )
        name, y, d = short(Path(file.path).name), file.y, file.input_dim
        if self.integer(t.get("input_dim", d), "teacher.input_dim", 1, 10_000) != d:
            got = t["input_dim"]
            raise self.fail("teacher.input_dim", f"must equal x's {d} columns in {name}, got {got}")
        if y.ndim == 2:
            k = y.shape[1]
        elif data.loss == "crossentropy":
            if np.any(y != np.round(y)) or y.min() < 0:
                raise self.fail("data.path", f"{name}: class labels y must be integers ≥ 0")
            k = int(y.max()) + 1
        else:
            k = 1
        k = self.integer(t.get("output_dim", k), "teacher.output_dim", 1, 1000)
        return TeacherConfig("none", d, (), None, False, k)

    def teacher(self, t: Mapping) -> TeacherConfig:
        known = [f.name for f in fields(TeacherConfig)]
        self.check_keys(t, known, "teacher")
        default_kind = "explicit" if "params" in t else "random"
        kind = self.choice(t.get("kind", default_kind), "teacher.kind", TEACHER_KINDS)
        d = self.integer(t.get("input_dim", 2), "teacher.input_dim", 1, 10_000)
        widths = self.widths(t.get("widths", [4]), "teacher.widths")
        act: str | None = None
        activations = None
        if "activations" in t:
            if kind not in ("random", "file", "explicit"):
                raise self.fail(
                    "teacher.activations", f"only for kind = random, file or explicit, not {kind!r}"
                )
            activations = self.layer_activations(t, "teacher", widths)
        else:
            act = self.activation_name(t.get("activation", "softplus"), "teacher.activation")
        bias = self.bias(t.get("bias", kind != "orthonormal"), "teacher.bias", widths)
        if not isinstance(bias, bool) and kind not in ("random", "file", "explicit"):
            msg = f"one flag per layer only for kind = random, file or explicit, not {kind!r}"
            raise self.fail("teacher.bias", msg)
        out_dim = self.integer(t.get("output_dim", 1), "teacher.output_dim", 1, 1000)
        output = None  # the output layer's activation φ; None (stored so) when linear
        if "output" in t:
            if kind not in ("random", "file", "explicit"):
                msg = f"only for kind = random, file or explicit, not {kind!r}"
                raise self.fail("teacher.output", msg)
            output = self.activation_name(t["output"], "teacher.output")
            output = None if output == "identity" else output
        u = v = path = params = None
        if kind != "glu":
            for key in ("u", "v"):
                if key in t:
                    raise self.fail(f"teacher.{key}", f"only used by kind = 'glu', not {kind!r}")
        if kind != "file" and "path" in t:
            raise self.fail("teacher.path", f"only used by kind = 'file', not {kind!r}")
        if kind != "explicit" and "params" in t:
            raise self.fail("teacher.params", f"only used by kind = 'explicit', not {kind!r}")
        if kind in ("glu", "rosenbrock") and out_dim != 1:
            raise self.fail("teacher.output_dim", f"a {kind} teacher has output_dim = 1")
        if kind == "orthonormal":
            if len(widths) != 1:
                raise self.fail("teacher.widths", "an orthonormal teacher has one hidden layer")
            if widths[0] > d:
                raise self.fail(
                    "teacher.widths", f"orthonormal teacher needs width ≤ input_dim = {d}"
                )
            if bias:
                raise self.fail("teacher.bias", "an orthonormal teacher is bias-free; set false")
            if out_dim != 1:
                raise self.fail("teacher.output_dim", "an orthonormal teacher has output_dim = 1")
        elif kind == "glu":
            for key in ("u", "v"):
                if key not in t:
                    raise self.fail(f"teacher.{key}", "required for kind = 'glu'")
            u = self.vector(t["u"], "teacher.u", d)
            v = self.vector(t["v"], "teacher.v", d)
        elif kind == "rosenbrock":
            if d < 2:
                raise self.fail("teacher.input_dim", "a rosenbrock teacher needs input_dim ≥ 2")
        elif kind == "file":
            p = self.file_path(t, "teacher.path", "an .npz file", follow=True)
            acts = per_layer_activations(widths, act, activations)
            try:  # format, names, shapes and finite values, now rather than mid-run
                load_params_npz(p, make_spec(d, widths, acts, bias, out_dim).shapes)
            except FileReadError as e:
                raise self.fail("teacher.path", f"{short(p.name)}: {e}") from None
            path = str(p)
        elif kind == "explicit":
            if "params" not in t:
                raise self.fail("teacher.params", "required for kind = 'explicit'")
            acts = per_layer_activations(widths, act, activations)
            spec = make_spec(d, widths, acts, bias, out_dim)
            params = self.params(t["params"], "teacher.params", spec)
        seed = None
        if "seed" in t:
            seed = self.integer(t["seed"], "teacher.seed", 0, 2**63 - 1)
            if kind not in ("random", "orthonormal"):
                raise self.fail(
                    "teacher.seed", f"only for kind = random or orthonormal, not {kind!r}"
                )
        return TeacherConfig(
            kind, d, widths, act, bias, out_dim, u, v, path, params, activations=activations,
            output=output, seed=seed,
        )  # fmt: skip

    def student(self, s: Mapping, teacher: TeacherConfig) -> StudentConfig:
        known = [f.name for f in fields(StudentConfig)]
        self.check_keys(s, known, "student")
        widths = self.widths(s.get("widths", [4]), "student.widths")
        raw_act = s.get("activation", "softplus")
        act: str | tuple[str, ...] | None
        activations = None
        if "activations" in s:
            activations = self.layer_activations(s, "student", widths)
            act = None
        elif isinstance(raw_act, list | tuple):
            if len(widths) != 1:
                raise self.fail(
                    "student.activation", "a per-neuron list needs exactly one hidden layer"
                )
            if len(raw_act) != widths[0]:
                raise self.fail(
                    "student.activation",
                    f"per-neuron list has {len(raw_act)} names for {widths[0]} neurons",
                )
            act = tuple(
                self.activation_name(a, f"student.activation[{i}]") for i, a in enumerate(raw_act)
            )
        else:
            act = self.activation_name(raw_act, "student.activation")
        bias = self.bias(s.get("bias", True), "student.bias", widths)
        scale = self.number(s.get("init_scale", 1.0), "student.init_scale", hi=1e6)
        if scale < 0:
            raise self.fail("student.init_scale", f"must be ≥ 0, got {scale}")
        params = None
        if "params" in s:
            spec = self._student_spec(teacher, widths, act, bias, activations)
            params = self.params(s["params"], "student.params", spec)
        output = s.get("output", "identity")
        if output != "softmax":  # an activation name (canonical): f = φ(W_L h + b_L)
            output = self.activation_name(output, "student.output")
        unit_norm = self.boolean(s.get("unit_norm", False), "student.unit_norm")
        train_output = self.boolean(s.get("train_output", True), "student.train_output")
        for key, on in (("unit_norm", unit_norm), ("train_output", not train_output)):
            if on and not widths:
                raise self.fail(
                    f"student.{key}",
                    "needs a hidden layer (with widths = [] the only layer is the output layer)",
                )
        if unit_norm and layer_biases(widths, bias)[0]:
            raise self.fail(
                "student.unit_norm",
                "needs a bias-free first layer: set student.bias = false (w_i·x has no offset "
                "on the sphere)",
            )
        if unit_norm and params is None and scale == 0:
            raise self.fail("student.init_scale", "must be > 0 with unit_norm (w_i = 0 has no "
                            "direction to normalise)")  # fmt: skip
        if unit_norm and params is not None:
            w1 = np.asarray(params_dict(params)["w1"], dtype=np.float64)
            if np.any(np.linalg.norm(w1, axis=1) == 0):
                raise self.fail("student.params", "unit_norm needs every row of w1 nonzero")
        seed = None
        if "seed" in s:
            seed = self.integer(s["seed"], "student.seed", 0, 2**63 - 1)
            if params is not None:
                raise self.fail("student.seed", "draws θ₀, which student.params already fixes")
        return StudentConfig(
            widths, act, bias, scale, params, activations=activations, output=output,
            unit_norm=unit_norm, train_output=train_output, seed=seed,
        )  # fmt: skip

    def layer_activations(
        self, table: Mapping, prefix: str, widths: tuple[int, ...]
    ) -> LayerActivations:
        """``<prefix>.activations``: one entry per hidden layer, a name or per-neuron names."""
        name = f"{prefix}.activations"
        if "activation" in table:
            raise self.fail(name, f"give {prefix}.activation or {prefix}.activations, not both")
        value = table["activations"]
        n = len(widths)
        if not isinstance(value, list | tuple) or len(value) != n:
            got = f"{len(value)} entries" if isinstance(value, list | tuple) else _fmt(value)
            raise self.fail(
                name,
                f"needs one activation per hidden layer ({n} for {prefix}.widths = "
                f"{list(widths)}), got {got}",
            )
        out: list[str | tuple[str, ...]] = []
        for l, (k, entry) in enumerate(zip(widths, value, strict=True)):
            where = f"{name}[{l}]"
            if isinstance(entry, list | tuple):
                if len(entry) != k:
                    msg = f"per-neuron list has {len(entry)} names for {k} neurons"
                    raise self.fail(where, msg)
                names = (self.activation_name(a, f"{where}[{i}]") for i, a in enumerate(entry))
                out.append(tuple(names))
            else:
                out.append(self.activation_name(entry, where))
        return tuple(out)

    @staticmethod
    def _student_spec(
        teacher: TeacherConfig,
        widths,
        act,
        bias,
        activations: LayerActivations | None = None,
        output: str = "identity",
    ) -> NetworkSpec:
        """The student's spec; ``output = "softmax"`` is a linear (logit) output layer."""
        acts = per_layer_activations(widths, act, activations)
        phi = "identity" if output == "softmax" else output
        return make_spec(teacher.input_dim, widths, acts, bias, teacher.output_dim, phi)

    def data(self, t: Mapping) -> DataConfig:
        known = [f.name for f in fields(DataConfig)]
        self.check_keys(t, known, "data")
        kind = self.choice(t.get("kind", "gaussian"), "data.kind", DATA_KINDS)
        samples = self.integer(t.get("samples", 1000), "data.samples", MIN_SAMPLES, MAX_SAMPLES)
        loss = self.choice(t.get("loss", "mse"), "data.loss", LOSSES)
        if loss == "crossentropy" and kind == "gaussian-infinite":
            raise self.fail(
                "data.loss",
                "'crossentropy' needs finite data (data.kind = gaussian, uniform or sobol): "
                "the softmax has no closed-form Gaussian expectation",
            )
        seed = None
        if "seed" in t:
            seed = self.integer(t["seed"], "data.seed", 0, 2**63 - 1)
        path = sha = None
        if kind == "file":
            file = self.data_file(t)
            path, sha, samples = str(file.path), file.sha256, file.n_samples
        else:
            for key in ("path", "sha256"):
                if key in t:
                    raise self.fail(f"data.{key}", f"only used by kind = 'file', not {kind!r}")
        return DataConfig(kind, samples, loss, seed, path, sha)

    def file_path(self, t: Mapping, field: str, what: str, *, follow: bool) -> Path:
        """The file named by ``t["path"]`` (the key ``field``, a file holding ``what``),
        ``~`` expanded, relative names resolved against the config's folder.

        ``follow``: links are followed and the target must be a regular file; otherwise a
        link is refused (the file itself must be named) and only its folder is resolved.
        """
        if "path" not in t:
            raise self.fail(field, f"required for kind = 'file' ({what})")
        raw = t["path"]
        if not isinstance(raw, str) or not raw:
            raise self.fail(field, f"must be a file name, got {_fmt(raw)}")
        try:
            p = Path(raw).expanduser()
            if not p.is_absolute():
                p = self.base_dir / p
            if follow:
                p = p.resolve()
                found = p.is_file()
            else:
                if p.is_symlink():
                    raise self.fail(field, f"{short(p, 160)} is a symbolic link; name the file")
                p = p.parent.resolve() / p.name
                found = p.exists()
        except (OSError, RuntimeError) as e:  # a name too long, a link loop…
            why = getattr(e, "strerror", None) or type(e).__name__
            raise self.fail(field, f"cannot use {_fmt(raw)}: {why}") from None
        if not found:
            raise self.fail(field, f"file not found: {short(p, 160)}")
        return p

    def data_file(self, t: Mapping) -> DataFile:
        """``data.path`` resolved against the config's folder, read and validated
        (:func:`core.datafile.read_data_file`), and its hash checked against ``data.sha256``."""
        p = self.file_path(t, "data.path", "an .npz with x and y", follow=False)
        try:  # regular file, size, npz, names, shapes, finite values
            file = read_data_file(p)
        except FileReadError as e:
            raise self.fail("data.path", f"{short(p.name)}: {e}") from None
        if "sha256" in t:
            given = t["sha256"]
            if not isinstance(given, str):
                raise self.fail("data.sha256", f"must be a hex string, got {_fmt(given)}")
            if given.lower() != file.sha256:
                raise self.fail(
                    "data.path",
                    f"{short(p.name)} has changed since this config was recorded (sha256 "
                    f"{file.sha256[:12]}… ≠ data.sha256 {short(given, 12)}…)",
                )
        return file

    def dynamics(
        self, t: Mapping, teacher: TeacherConfig, student: StudentConfig
    ) -> DynamicsConfig:
        known = [f.name for f in fields(DynamicsConfig)]
        self.check_keys(t, known, "dynamics")
        d = DynamicsConfig()
        method = self.choice(t.get("method", d.method), "dynamics.method", DYNAMICS_METHODS)
        solver = self.choice(t.get("solver", d.solver), "dynamics.solver", SOLVERS)
        t_max = self.number(t.get("t_max", d.t_max), "dynamics.t_max", positive=True, hi=MAX_T)
        rtol = self.number(t.get("rtol", d.rtol), "dynamics.rtol", positive=True, lt=1.0)
        atol = self.number(t.get("atol", d.atol), "dynamics.atol", positive=True, lt=1.0)
        max_seconds = self.number(
            t.get("max_seconds", d.max_seconds), "dynamics.max_seconds", positive=True, hi=1e7
        )
        max_steps = self.integer(t.get("max_steps", d.max_steps), "dynamics.max_steps", 1, 10**12)
        grad_tol = self.number(t.get("grad_tol", d.grad_tol), "dynamics.grad_tol", lt=1.0)
        if grad_tol < 0:
            raise self.fail("dynamics.grad_tol", f"must be ≥ 0, got {grad_tol}")
        lr = self.number(t.get("lr", d.lr), "dynamics.lr", positive=True, hi=1e3)
        batch = self.integer(t.get("batch_size", d.batch_size), "dynamics.batch_size", 1)
        n_saves = self.integer(t.get("n_saves", d.n_saves), "dynamics.n_saves", 2, 100_000)
        maxnorm = None
        if "maxnorm" in t:
            maxnorm = self.number(t["maxnorm"], "dynamics.maxnorm", positive=True)
        tauinv = None
        if "tauinv" in t:
            spec = self._student_spec(
                teacher, student.widths, student.activation, student.bias, student.activations
            )
            tauinv = self.vector(t["tauinv"], "dynamics.tauinv", spec.n_params)
            if any(x <= 0 for x in tauinv):
                raise self.fail("dynamics.tauinv", "every entry must be > 0")
        return DynamicsConfig(
            method=method, solver=solver, t_max=t_max, rtol=rtol, atol=atol,
            max_seconds=max_seconds, max_steps=max_steps, grad_tol=grad_tol, lr=lr,
            batch_size=batch, tauinv=tauinv, n_saves=n_saves, maxnorm=maxnorm,
        )  # fmt: skip

    def refine(self, t: Mapping) -> RefineConfig:
        known = [f.name for f in fields(RefineConfig)]
        self.check_keys(t, known, "refine")
        d = RefineConfig()
        method = self.choice(t.get("method", d.method), "refine.method", REFINE_METHODS)
        gtol = self.number(t.get("gtol", d.gtol), "refine.gtol", positive=True, lt=1.0)
        max_iter = self.integer(t.get("max_iter", d.max_iter), "refine.max_iter", 1, 100_000)
        return RefineConfig(method, gtol, max_iter)

    def cross_checks(self, cfg: Config) -> None:
        t, s, data, dyn = cfg.teacher, cfg.student, cfg.data, cfg.dynamics
        n_params = cfg.student_spec().n_params
        hessian = 8 * n_params * n_params
        if hessian > MAX_HESSIAN_BYTES:
            raise self.fail(
                "student.widths",
                f"P = {n_params} parameters: the P×P Hessian needs {hessian / 2**30:.1f} GiB "
                f"(limit {MAX_HESSIAN_BYTES / 2**30:g} GiB)",
            )
        if data.kind != "gaussian-infinite":
            width = max(sum(s.widths), sum(t.widths))
            need = 8 * data.samples * (t.input_dim + width + t.output_dim)
            if need > MAX_DATA_BYTES:
                raise self.fail(
                    "data.samples",
                    f"{data.samples} samples × (input_dim + widths + output_dim) need "
                    f"{need / 2**30:.1f} GiB per pass (limit {MAX_DATA_BYTES / 2**30:g} GiB)",
                )
        self.output_checks(cfg)
        if data.kind == "gaussian-infinite":
            if not t.is_network:
                raise self.fail(
                    "data.kind",
                    f"'gaussian-infinite' needs a network teacher, not kind = {t.kind!r}",
                )
            t_bias = any(layer_biases(t.widths, t.bias))
            s_bias = any(layer_biases(s.widths, s.bias))
            two_layer = len(t.widths) == 1 and not t_bias and t.output_dim == 1
            two_layer = two_layer and len(s.widths) == 1 and not s_bias
            if not two_layer and _linear(s.widths, s.activation, s.activations):
                # a deep linear student (core.linear_gaussian): any depth, outputs, biases
                if not _linear(t.widths, t.activation, t.activations):
                    raise self.fail(
                        "teacher.activations" if t.activations else "teacher.activation",
                        "a linear student (every activation 'identity') on 'gaussian-infinite' "
                        "data needs a linear teacher: set 'identity' (or use finite data)",
                    )
                if data.loss != "mse":
                    raise self.fail(
                        "data.loss",
                        f"a deep linear student on 'gaussian-infinite' data needs 'mse', not "
                        f"{data.loss!r} (−E[f g] of a linear net is unbounded below)",
                    )
            elif len(t.widths) != 1 or t_bias:
                raise self.fail(
                    "data.kind",
                    "'gaussian-infinite' needs a bias-free one-hidden-layer teacher "
                    "(teacher.bias = false, one entry in teacher.widths)",
                )
            elif len(s.widths) != 1 or s_bias:
                raise self.fail(
                    "data.kind",
                    "'gaussian-infinite' needs a bias-free one-hidden-layer student "
                    "(student.bias = false, one entry in student.widths) unless every student "
                    "activation is 'identity' (a deep linear net)",
                )
            elif t.output_dim != 1:
                raise self.fail("data.kind", "'gaussian-infinite' needs teacher.output_dim = 1")
            if dyn.method == "sgd":
                raise self.fail(
                    "dynamics.method",
                    "'sgd' needs finite data, not data.kind = 'gaussian-infinite'",
                )
        elif dyn.method == "sgd" and dyn.batch_size > data.samples:
            raise self.fail(
                "dynamics.batch_size",
                f"must be ≤ data.samples = {data.samples}, got {dyn.batch_size}",
            )
        self.classification_checks(cfg)

    def output_checks(self, cfg: Config) -> None:
        """An output activation φ (``student.output`` neither identity nor softmax) needs the
        MSE on finite data, and a teacher's (``teacher.output``) finite data: the
        Gaussian-kernel (infinite-data) objectives and the correlation loss assume a linear
        output layer."""
        s, data = cfg.student, cfg.data
        if cfg.teacher.output is not None and data.kind == "gaussian-infinite":
            raise self.fail(
                "teacher.output",
                f"an output activation ({cfg.teacher.output!r}) needs finite data, not "
                "data.kind = 'gaussian-infinite' (its Gaussian-kernel losses assume a linear "
                "output layer)",
            )
        if s.output in OUTPUTS:
            return
        if data.loss != "mse":
            raise self.fail(
                "student.output",
                f"an output activation ({s.output!r}) needs data.loss = 'mse', not {data.loss!r}",
            )
        if data.kind == "gaussian-infinite":
            raise self.fail(
                "student.output",
                f"an output activation ({s.output!r}) needs finite data, not data.kind = "
                "'gaussian-infinite' (its Gaussian-kernel losses assume a linear output layer)",
            )

    def data_file_targets(self, cfg: Config) -> None:
        """A data file's ``y`` against the student's K outputs: (N, K) rows (or (N,) for
        K = 1); for cross-entropy integer labels (N,) in [0, K) or non-negative rows."""
        data, k = cfg.data, cfg.teacher.output_dim
        file = read_data_file(data.path)
        y, name = file.y, short(Path(file.path).name)
        if y is None:
            return
        if data.loss == "crossentropy":
            if k < 2:
                raise self.fail(
                    "data.path", f"{name}: 'crossentropy' needs ≥ 2 classes, got output_dim {k}"
                )
            if y.ndim == 1:
                if file.labels(k) is None:
                    raise self.fail(
                        "data.path",
                        f"{name}: class labels y must be integers in [0, {k}), got values "
                        f"{y.min():g}..{y.max():g}",
                    )
                return
            if np.any(y < 0):
                raise self.fail("data.path", f"{name}: target rows y must be ≥ 0 (one-hot)")
        elif y.ndim == 1 and k == 1:
            return
        if y.ndim != 2 or y.shape[1] != k:
            raise self.fail(
                "data.path",
                f"{name}: y has shape {list(y.shape)}, expected ({file.n_samples}, {k}) for "
                f"output_dim = {k}",
            )

    def classification_checks(self, cfg: Config) -> None:
        """``data.loss = "crossentropy"`` ⇔ ``student.output = "softmax"``; labels need classes."""
        t, s, data = cfg.teacher, cfg.student, cfg.data
        if data.loss == "crossentropy" and s.output != "softmax":
            raise self.fail("data.loss", "'crossentropy' needs student.output = 'softmax'")
        if s.output == "softmax" and data.loss != "crossentropy":
            raise self.fail(
                "student.output", f"'softmax' needs data.loss = 'crossentropy', not {data.loss!r}"
            )
        if data.kind == "file":
            self.data_file_targets(cfg)
        if data.loss != "crossentropy":
            return
        if t.kind == "none":
            return  # the file's labels, checked against the K classes above
        if not t.is_network:
            raise self.fail(
                "teacher.kind",
                f"'crossentropy' labels are a network teacher's argmax output, not {t.kind!r}",
            )
        if t.output_dim < 2:
            raise self.fail(
                "teacher.output_dim",
                "'crossentropy' needs ≥ 2 classes (one teacher output per class, label = "
                f"argmax), got {t.output_dim}",
            )
