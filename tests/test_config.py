"""core.config: validation (one-line errors naming file and field), defaults, TOML round trip."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from core.config import (
    ConfigError,
    config_to_dict,
    default_config,
    load_config,
    parse_config,
)

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))


def roundtrip(cfg):
    text = tomli_w.dumps(config_to_dict(cfg))
    return parse_config(tomllib.loads(text), "rt.toml")


def test_examples_exist_and_load():
    names = {p.name for p in EXAMPLES}
    assert {"teacher_recovery.toml", "infinite_erf.toml"} <= names
    for method in ("flow", "gd", "sgd", "adam"):
        assert f"dynamics_{method}.toml" in names
        assert load_config(EXAMPLES[0].parent / f"dynamics_{method}.toml").dynamics.method == method


def test_default_is_the_teacher_recovery_example():
    cfg = default_config()
    assert cfg == load_config(EXAMPLES[0].parent / "teacher_recovery.toml")
    preset = Path(__file__).parent.parent / "explorer" / "presets" / "teacher_recovery.toml"
    assert cfg == load_config(preset)
    assert cfg.teacher.input_dim == 2 and cfg.teacher.widths == (3,) and cfg.teacher.bias
    assert cfg.teacher.activation == "softplus" and cfg.student.widths == (3,)
    assert cfg.data.samples == 500


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_toml_round_trip_examples(path):
    cfg = load_config(path)
    assert roundtrip(cfg) == cfg


def test_toml_round_trip_every_optional_field(tmp_path):
    npz = tmp_path / "t.npz"
    np.savez(npz, w1=np.ones((3, 2)), b1=np.zeros(3), w2=np.ones((1, 3)), b2=np.zeros(1))
    mapping = {
        "seed": 7,
        "teacher": {"kind": "file", "path": "t.npz", "widths": [3], "activation": "tanh"},
        "student": {
            "widths": [2],
            "activation": ["relu", "erf"],
            "params": {"w1": [[1, 2], [3, 4]], "b1": [0, 1], "w2": [[1, -1]], "b2": [0.5]},
        },
        "data": {"kind": "sobol", "samples": 64, "seed": 11},
        "dynamics": {"method": "sgd", "batch_size": 8, "maxnorm": 50, "tauinv": [1.0] * 9},
        "refine": {"method": "trust-region", "gtol": 1e-10, "max_iter": 30},
    }
    cfg = parse_config(mapping, str(tmp_path / "c.toml"))
    assert cfg.teacher.path == str(npz.resolve())  # resolved relative to the config file
    assert cfg.student.activation == ("relu", "erf")
    assert cfg.data_seed == 11
    assert cfg.student_spec().n_params == 9
    assert roundtrip(cfg) == cfg
    assert config_to_dict(roundtrip(cfg)) == config_to_dict(cfg)


def write(tmp_path, text):
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    return p


BAD = [
    # (TOML text, field named in the message, a word of the reason)
    ("[student]\nwidths = [0]", "student.widths", "list of positive integers"),
    ("[student]\nwidths = [2, 0]", "student.widths", "([] for no hidden layer)"),
    ("[student]\nwidth = [3]", "student.width", "did you mean 'widths'"),
    ("[studnt]\nwidths = [3]", "studnt", "did you mean 'student'"),
    ("seed = -1", "seed", "≥ 0"),
    ("seed = 1.5", "seed", "integer"),
    ('[teacher]\nkind = "randm"', "teacher.kind", "did you mean 'random'"),
    ('[teacher]\nactivation = "softplu"', "teacher.activation", "softplus"),
    ("[teacher]\ninput_dim = 0", "teacher.input_dim", "≥ 1"),
    ("[teacher]\nbias = 1", "teacher.bias", "true or false"),
    ('[teacher]\nkind = "glu"\nu = [1.0, 0.0]', "teacher.v", "required"),
    ('[teacher]\nkind = "glu"\nu = [1.0]\nv = [0.0, 1.0]', "teacher.u", "length 2"),
    ('[teacher]\nkind = "file"\npath = "nope.npz"', "teacher.path", "not found"),
    (
        '[teacher]\nkind = "orthonormal"\nwidths = [3]\nbias = false',
        "teacher.widths",
        "≤ input_dim",
    ),
    ('[teacher]\nkind = "orthonormal"\nwidths = [2]\nbias = true', "teacher.bias", "bias-free"),
    ('[teacher]\nkind = "rosenbrock"\ninput_dim = 1', "teacher.input_dim", "≥ 2"),
    ("[teacher]\nu = [1.0, 2.0]", "teacher.u", "glu"),
    ('[student]\nactivation = ["relu"]', "student.activation", "1 names for 4 neurons"),
    ("[student]\ninit_scale = -1", "student.init_scale", "≥ 0"),
    ("[student]\nparams = {w1 = [[1, 2]]}", "student.params.w1", "shape"),
    ("[data]\nsamples = 5", "data.samples", "≥ 10"),
    ("[data]\nsamples = 100001", "data.samples", "≤ 100000"),
    ('[data]\nkind = "gaussian-infinite"', "data.kind", "bias-free"),
    ('[data]\nkind = "gaussian-infinite"\n[teacher]\nkind = "rosenbrock"', "data.kind", "network"),
    ("[dynamics]\nt_max = 1e11", "dynamics.t_max", "≤ 1e+10"),
    ("[dynamics]\nt_max = 0", "dynamics.t_max", "> 0"),
    ("[dynamics]\nrtol = 2.0", "dynamics.rtol", "< 1"),
    ('[dynamics]\nmethod = "rk4"', "dynamics.method", "flow, gd, sgd, adam"),
    ('[dynamics]\nsolver = "euler"', "dynamics.solver", "kvaerno5"),
    ("[dynamics]\ntauinv = [1.0, 2.0]", "dynamics.tauinv", "length 17"),
    ('[dynamics]\nmethod = "sgd"\nbatch_size = 5000', "dynamics.batch_size", "≤ data.samples"),
    ("[dynamics]\nmaxnorm = -3", "dynamics.maxnorm", "> 0"),
    ('[refine]\nmethod = "bfgs"', "refine.method", "newton"),
    ("[refine]\nmax_iter = 0", "refine.max_iter", "≥ 1"),
    ("teacher = 3", "teacher", "must be a table"),
]


@pytest.mark.parametrize(("text", "field", "reason"), BAD, ids=[b[1] for b in BAD])
def test_each_mistake_names_file_and_field(tmp_path, text, field, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {field}: "), msg
    assert reason in msg, msg
    assert info.value.field == field


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.toml: file not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"cfg\.toml: invalid TOML"):
        load_config(write(tmp_path, "seed = = 1"))


def test_explicit_teacher_params_checked(tmp_path):
    good = (
        '[teacher]\nkind = "explicit"\nwidths = [1]\ninput_dim = 1\n'
        "params = {w1 = [[2.0]], b1 = [0.5], w2 = [[3.0]], b2 = [-1.0]}"
    )
    cfg = load_config(write(tmp_path, good))
    assert dict(cfg.teacher.params)["w1"] == ((2.0,),)
    bad = good.replace("b2 = [-1.0]", "b3 = [-1.0]")
    with pytest.raises(ConfigError, match=r"teacher\.params\.b3: unknown key"):
        load_config(write(tmp_path, bad))


def test_config_validation_does_not_import_jax() -> None:
    """The setup screen validates configs before JAX is loaded (≈1 s of the first frame);
    float64 is still switched on for whoever imports JAX afterwards."""
    code = (
        "import sys\n"
        "from core.config import default_config, parse_config\n"
        "default_config()\n"
        "assert 'jax' not in sys.modules, 'core.config imported jax'\n"
        "import jax.numpy as jnp\n"
        "assert jnp.zeros(1).dtype == jnp.float64\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True)


def test_every_dynamics_key_reaches_the_flow_settings() -> None:
    """core.config.DynamicsConfig (JAX-free, validated TOML) and core.flow.DynamicsSettings
    share one field table (DynamicsFields); a config whose every shared key differs from
    its default gives flow settings with those values (runner.dynamics_settings)."""
    import dataclasses

    from core.config import DynamicsConfig, DynamicsFields
    from core.flow import DynamicsSettings
    from core.runner import dynamics_settings

    shared = [f.name for f in dataclasses.fields(DynamicsFields)]
    assert [f.name for f in dataclasses.fields(DynamicsSettings)] == shared
    assert [f.name for f in dataclasses.fields(DynamicsConfig)] == [*shared, "maxnorm"]
    table = {
        "method": "adam", "solver": "tsit5", "t_max": 7.0, "rtol": 1e-5, "atol": 1e-7,
        "max_seconds": 9.0, "max_steps": 123, "grad_tol": 1e-9, "lr": 0.3, "batch_size": 5,
        "tauinv": [0.5] * 9, "n_saves": 17, "maxnorm": 4.0,
    }  # fmt: skip
    assert sorted(table) == sorted([*shared, "maxnorm"])
    cfg = parse_config({"student": {"widths": [2]}, "dynamics": table})
    settings = dynamics_settings(cfg.dynamics, cfg.student_spec().n_params)
    defaults = DynamicsSettings()
    for name in shared:
        want = tuple(table[name]) if name == "tauinv" else table[name]
        assert getattr(settings, name) == want != getattr(defaults, name), name
