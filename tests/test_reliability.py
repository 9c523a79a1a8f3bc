"""Reliability (issue 14): no session lost or left unreadable, no input that hangs,
crashes or exhausts the machine.  Real files, FIFOs, links and subprocesses in tmp_path.

* kill -9 of ``explorer run`` at several moments (start-up, first chunk, mid-run) leaves
  no folder or one that loads and resumes; the next run into the parent removes temps;
* SIGTERM during start-up and during a long compiled computation exits within 2 s;
* hostile session files: a link to /dev/zero, a FIFO, JSON/TOML nested 100 000 deep,
  wrong-typed stored fields (fuzzed with hypothesis) → one-line SessionError;
* teacher files (.npy, broken zip, NaN weights, /etc/passwd, pickles) refused at parse;
* a resumed state whose loss overflows is refused with nothing written;
* sweeps too large or with 10⁵ values are refused at once;
* ``run --out`` over a session, through a link; export beside a dangling link;
* messages stay one line and short; oversized problems are refused by the parser.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CONFIG
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import ConfigError, load_config, parse_config
from core.export import format_report
from core.files import MAX_TOML_DEPTH, load_json, load_toml, short
from core.runner import run_config
from core.session import SessionError, is_session_dir, load_session, save_session
from core.sweep import MAX_RUNS, SweepError, parse_sweep
from explorer.cli import main

ROOT = Path(__file__).parent.parent
#: A run that lasts: many save points over a long horizon (killed or signalled before t_max).
LONG_CONFIG = TINY_CONFIG.replace("t_max = 100.0", "t_max = 1e9").replace(
    "n_saves = 20", "n_saves = 4000"
)


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory) -> Path:
    """A finished session of the tiny problem (with a report), made once."""
    root = tmp_path_factory.mktemp("rel")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_CONFIG)
    out = root / "s"
    run_config(load_config(cfg), out)
    return out


def copy_session(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


def finishes_within(fn, seconds: float):
    """Run ``fn`` in a thread; fail if it has not returned within ``seconds``."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed back to the test
            box["error"] = e

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(seconds)
    assert not th.is_alive(), f"still running after {seconds} s (blocked or unbounded read)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def explorer(*args: str | Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "explorer", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **kw,
    )


def wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


# ----------------------------------------------------------------------------- kill -9


def test_kill_9_at_several_moments_leaves_a_loadable_session_or_none(tmp_path):
    """Start-up (JAX import), right after the first save (θ₀ only, first compilation),
    and mid-run: every kill leaves no folder or one that loads and can be resumed."""
    cfg = tmp_path / "long.toml"
    cfg.write_text(LONG_CONFIG)
    # name → seconds after launch (startup) or after the first save appeared
    moments = {"startup": 0.3, "first-save": 0.0, "first-chunk": 0.5, "mid-run": 2.5}
    procs = {n: explorer("run", cfg, "--out", tmp_path / n, "--quiet") for n in moments}
    launched, saved_at, outcomes = time.monotonic(), {}, {}
    while procs:  # all run at once (the machine is small: one start-up cost in wall time)
        now = time.monotonic()
        assert now - launched < 180, f"runs {list(procs)} never reached their moment"
        for name, proc in list(procs.items()):
            out = tmp_path / name
            if name != "startup" and name not in saved_at and (out / "meta.json").exists():
                saved_at[name] = now
            start = launched if name == "startup" else saved_at.get(name)
            if start is None or now - start < moments[name]:
                continue
            proc.kill()
            proc.wait(timeout=30)
            proc.stderr.close()
            del procs[name]
            if not out.exists():
                outcomes[name] = "none"
                continue
            s = load_session(out)  # must load: θ₀ at least
            assert len(s.final_segment) >= 1 and s.final_segment.t[0] == 0.0
            outcomes[name] = len(s.final_segment)
        time.sleep(0.01)
    assert outcomes["startup"] == "none"
    assert outcomes["first-save"] != "none"  # the folder appeared, so it must load
    # resume the earliest one: the session is accepted as a starting point
    resumed = tmp_path / "resumed"
    short_cfg = tmp_path / "short.toml"
    short_cfg.write_text(LONG_CONFIG.replace("t_max = 1e9", "t_max = 50.0"))
    s = load_session(run_config(load_config(short_cfg), resumed, resume=tmp_path / "first-save"))
    assert s.final_t == pytest.approx(50.0) and s.report is not None
    assert np.all(np.diff(s.segments[0].t) > 0)  # θ₀ saved early is not repeated
    # temporaries of the killed savers are gone once a run saves into the same parent
    left = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert not left, left


@pytest.mark.slow
def test_kill_9_at_200_random_moments():
    """bench/kill9.py: 200 kills (half timed from launch, half from the first save)."""
    res = subprocess.run(
        [sys.executable, "bench/kill9.py", "--kills", "200", "--parallel", "3", "--window", "6"],
        cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert " unreadable 0" in res.stdout and "after one more save: 0" in res.stdout, res.stdout


def test_stale_temp_folders_removed_by_next_save_but_foreign_files_kept(tmp_path, session_dir):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = copy_session(session_dir, tmp_path / f".other.tmp-{dead.pid}-0badc0de")
    foreign = tmp_path / f".mine.tmp-{dead.pid}-12345678"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    link = tmp_path / f".x.tmp-{dead.pid}-abcdef01"
    link.symlink_to(session_dir)
    save_session(tmp_path / "new", load_session(session_dir))
    assert not stale.exists() and not os.path.lexists(link)
    assert (foreign / "notes.txt").read_text() == "keep" and session_dir.exists()


# ----------------------------------------------------------------------------- signals


def test_sigterm_during_startup_exits_cleanly_with_nothing_written(tmp_path):
    cfg = tmp_path / "long.toml"
    cfg.write_text(LONG_CONFIG)
    out = tmp_path / "s"
    proc = explorer("run", cfg, "--out", out, "--quiet")
    time.sleep(0.5)  # importing JAX / building the problem
    tic = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    latency = time.monotonic() - tic
    if out.exists():  # the signal came after the first save: a loadable session
        assert proc.returncode == 128 + signal.SIGTERM and load_session(out)
    else:
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "nothing written" in err and err.count("\n") == 1
    assert latency < 2.0


def test_sigterm_after_first_save_flushes_within_2_s(tmp_path):
    cfg = tmp_path / "long.toml"
    cfg.write_text(LONG_CONFIG)
    out = tmp_path / "s"
    proc = explorer("run", cfg, "--out", out, "--quiet")
    wait_for(out / "meta.json")
    tic = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - tic < 2.0
    assert proc.returncode == 128 + signal.SIGHUP and "interrupted: session saved" in err
    s = load_session(out)
    assert s.events[-1]["kind"] == "interrupted" and s.summary["stop_reason"] == "interrupted"


def test_sigterm_inside_a_long_compiled_computation_exits_within_2_s(tmp_path):
    """The watcher thread wakes on the C-level wakeup fd while the main thread is inside
    XLA (where a Python signal handler would wait for the computation to end)."""
    marker = tmp_path / "flushed"
    script = textwrap.dedent(
        f"""
        import sys
        from core import interrupts
        interrupts.install()
        import jax, jax.numpy as jnp
        interrupts.on_signal(lambda s: open({str(marker)!r}, "w").write(str(s)) and "flushed")
        f = jax.jit(lambda x: jax.lax.fori_loop(0, 10**9, lambda i, y: jnp.sin(y) + 1e-9, x))
        f(jnp.zeros(8)).block_until_ready()  # ~minutes: never finishes in the test
        sys.exit(3)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    time.sleep(4.0)  # JAX imported, the loop running
    tic = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - tic < 2.0, err
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert marker.read_text() == str(int(signal.SIGTERM)) and "flushed" in err


# ----------------------------------------------------------------------------- hostile files


def test_meta_json_linked_to_dev_zero_or_a_fifo_is_refused_at_once(tmp_path, session_dir, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_CONFIG)
    zero = copy_session(session_dir, tmp_path / "zero")
    (zero / "meta.json").unlink()
    (zero / "meta.json").symlink_to("/dev/zero")
    fifo = copy_session(session_dir, tmp_path / "fifo")
    (fifo / "meta.json").unlink()
    os.mkfifo(fifo / "meta.json")
    npz_fifo = copy_session(session_dir, tmp_path / "npzfifo")
    (npz_fifo / "trajectory.npz").unlink()
    os.mkfifo(npz_fifo / "trajectory.npz")
    toml_zero = copy_session(session_dir, tmp_path / "tomlzero")
    (toml_zero / "config.toml").unlink()
    (toml_zero / "config.toml").symlink_to("/dev/zero")
    for folder, what in [
        (zero, "symbolic link"),
        (fifo, "not a regular file"),
        (npz_fifo, "not a regular file"),
        (toml_zero, "symbolic link"),
    ]:
        with pytest.raises(SessionError, match=what):
            finishes_within(lambda f=folder: load_session(f), 10)
    for folder in (zero, fifo):
        assert not finishes_within(lambda f=folder: is_session_dir(f), 10)
    # run --out over the /dev/zero session: refused as not a session, nothing changed
    rc, err = finishes_within(lambda: run_cli(capsys, "run", cfg, "--out", zero), 30)
    assert rc == 2 and "not a session folder" in err and (zero / "meta.json").is_symlink()


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path, session_dir):
    s = copy_session(session_dir, tmp_path / "deep")
    meta = json.loads((s / "meta.json").read_text())
    meta["events"] = "@@"
    text = json.dumps(meta).replace('"@@"', "[" * 100_000 + "]" * 100_000)
    (s / "meta.json").write_text(text)
    with pytest.raises(SessionError, match="nested 100001 deep"):
        load_session(s)
    cfg = tmp_path / "deep.toml"
    cfg.write_text("seed = " + "[" * 600 + "]" * 600 + "\n")
    with pytest.raises(ConfigError, match="nested 600 deep"):
        load_config(cfg)
    sweep = tmp_path / "deep_sweep.toml"
    sweep.write_text("[grid]\nseed = " + "[" * 600 + "]" * 600 + "\n")
    from core.sweep import load_sweep

    with pytest.raises(SweepError, match="nested"):
        load_sweep(sweep)
    # brackets inside strings and comments do not count
    assert load_json('{"a": "[[[[", "b": [1]}') == {"a": "[[[[", "b": [1]}
    deep_text = "[" * (MAX_TOML_DEPTH + 5)
    assert load_toml(f"a = '{deep_text}' # {deep_text}\nb = \"{deep_text}\"\n")["b"] == deep_text


STORED_FIELD_CASES = [
    ("report", {}, "report.final: missing"),
    ("report.final.loss", "abc", "report.final.loss: must be a finite number or null"),
    ("report.final", [], "report.final: must be an object"),
    ("report.spectrum.eigenvalues", ["x"], "report.spectrum.eigenvalues"),
    ("report.channels", [{"neurons": "ab"}], "report.channels[0].neurons"),
    ("report.wall_seconds", -1, "report.wall_seconds"),
    ("events", [{"kind": "pause", "t": "abc"}], "events[0].t"),
    ("events", [{"t": 1.0}], "events[0].kind: missing"),
    ("summary.steps", "abc", "summary.steps: must be an integer ≥ 0"),
    ("summary.wall_seconds", True, "summary.wall_seconds"),
    ("summary.stop_reason", 7, "summary.stop_reason"),
    ("analysis.neurons", [{"w": "x"}], "analysis.neurons[0].w"),
    ("versions", {"jax": 1}, "versions"),
    ("refined", {"segment": 0, "loss": "low"}, "refined.loss"),
]


def set_path(meta: dict, dotted: str, value) -> dict:
    meta = copy.deepcopy(meta)
    *head, last = dotted.split(".")
    d = meta
    for k in head:
        d = d[k]
    d[last] = value
    return meta


@pytest.mark.parametrize(("field", "value", "message"), STORED_FIELD_CASES)
def test_wrong_typed_stored_fields_raise_session_error(
    tmp_path, session_dir, capsys, field, value, message
):
    s = copy_session(session_dir, tmp_path / "s")
    meta = json.loads((s / "meta.json").read_text())
    (s / "meta.json").write_text(json.dumps(set_path(meta, field, value)))
    with pytest.raises(SessionError) as info:
        load_session(s)
    assert message in str(info.value) and "meta.json" in str(info.value)
    rc, err = run_cli(capsys, "report", s, "--json")
    assert rc == 2 and err.count("\n") == 1 and message in err


#: JSON values hypothesis puts in place of stored fields.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def field_paths(value, prefix=()):
    """Every path (tuple of keys/indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from field_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield from field_paths(v, (*prefix, i))


@pytest.fixture(scope="module")
def meta_paths(session_dir):
    meta = json.loads((session_dir / "meta.json").read_text())
    skip = ("config", "segments", "spectra", "format", "schema")  # checked by other layers
    paths = [p for p in field_paths(meta) if p and p[0] not in skip]
    return meta, paths


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_stored_fields_load_cleanly_or_raise_session_error(
    tmp_path_factory, session_dir, meta_paths, data
):
    """Replace one stored field by arbitrary JSON: loading raises SessionError or gives a
    session whose report, summary and events every reader can use."""
    check_stored_field(tmp_path_factory, session_dir, meta_paths, data)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_stored_fields_many(tmp_path_factory, session_dir, meta_paths, data):
    check_stored_field(tmp_path_factory, session_dir, meta_paths, data)


def check_stored_field(tmp_path_factory, session_dir, meta_paths, data) -> None:
    from core.sweep import SweepRun, run_row

    meta, paths = meta_paths
    path = data.draw(st.sampled_from(paths))
    value = data.draw(JSON_VALUES)
    mutated = copy.deepcopy(meta)
    d = mutated
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    s = copy_session(session_dir, tmp_path_factory.mktemp("fz") / "s")
    (s / "meta.json").write_text(json.dumps(mutated))
    try:
        loaded = load_session(s)
    except SessionError as e:
        assert "\n" not in str(e) and len(str(e)) < 600
        return
    if loaded.report is not None:
        format_report(loaded.report)
        json.dumps(loaded.report, allow_nan=False)
    run_row(SweepRun("r", (), loaded.config), loaded)
    int(loaded.summary.get("steps", 0))
    for e in loaded.events:
        t = e.get("t")
        assert t is None or np.isfinite(float(t))


# ----------------------------------------------------------------------------- fuzzed configs


def _table_keys() -> dict[str, list[str]]:
    from dataclasses import fields

    from core import config as c

    tables = {"teacher": c.TeacherConfig, "student": c.StudentConfig, "data": c.DataConfig}
    tables |= {"dynamics": c.DynamicsConfig, "refine": c.RefineConfig}
    return {name: [f.name for f in fields(cls)] for name, cls in tables.items()}


TABLE_KEYS = _table_keys()
PLAUSIBLE = st.sampled_from(
    [0, 1, 2, 3, -1, 1e300, 1e-300, 0.5, True, "softplus", "relu", "gaussian", "flow", "none",
     "random", "glu", "file", "explicit", "orthonormal", [1], [2, 3], [0], [10000], [3.0, 1.0],
     {"w1": [[1.0, 2.0]]}, "x" * 200, "a\nb"]
)  # fmt: skip
CONFIG_MAPPINGS = st.dictionaries(
    st.sampled_from([*TABLE_KEYS, "seed", "junk\nkey"]),
    st.one_of(
        st.integers(-3, 10),
        st.just(None),
        st.dictionaries(
            st.sampled_from([k for keys in TABLE_KEYS.values() for k in keys] + ["bogus"]),
            PLAUSIBLE | JSON_VALUES,
            max_size=5,
        ),
    ),
    max_size=6,
).map(lambda m: {k: v for k, v in m.items() if v is not None})


def check_config_mapping(mapping) -> None:
    from core.config import config_to_dict

    try:
        cfg = parse_config(mapping, "fuzz.toml")
    except ConfigError as e:
        text = str(e)
        assert "\n" not in text and len(text) < 600 and text.startswith("fuzz.toml")
        return
    # a valid config round-trips through its TOML mapping and file text
    assert parse_config(config_to_dict(cfg), "fuzz.toml") == cfg
    from core.config import config_to_toml

    assert parse_config(load_toml(config_to_toml(cfg)), "fuzz.toml") == cfg


def fuzzed(check, strategy, examples: int):
    """A Hypothesis test calling ``check`` on ``examples`` draws of ``strategy``."""
    fuzz = settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    return fuzz(given(strategy)(check))


test_fuzzed_configs_parse_or_raise_one_line_config_error = fuzzed(
    check_config_mapping, CONFIG_MAPPINGS, 600
)
test_fuzzed_configs_many = pytest.mark.slow(fuzzed(check_config_mapping, CONFIG_MAPPINGS, 5000))


SWEEP_GRIDS = st.dictionaries(
    st.sampled_from(
        ["seed", "student.widths", "data.samples", "dynamics.t_max", "refine.method",
         "teacher.kind", "student", "bogus.key", "data.kind", "dynamics.lr"]
    ),
    st.lists(PLAUSIBLE | JSON_VALUES, max_size=4) | PLAUSIBLE,
    max_size=4,
)  # fmt: skip


def check_sweep_grid(grid) -> None:
    tic = time.monotonic()
    try:
        sweep = parse_sweep({"grid": grid, "dynamics": {"t_max": 10.0}}, "fuzz_sweep.toml")
    except ConfigError as e:  # SweepError included
        text = str(e)
        assert "\n" not in text and len(text) < 600 and text.startswith("fuzz_sweep.toml")
    else:
        assert len({r.name for r in sweep.runs}) == len(sweep.runs) >= 1
    assert time.monotonic() - tic < 5.0


test_fuzzed_sweep_grids_expand_or_raise_one_line_sweep_error = fuzzed(
    check_sweep_grid, SWEEP_GRIDS, 300
)
test_fuzzed_sweep_grids_many = pytest.mark.slow(fuzzed(check_sweep_grid, SWEEP_GRIDS, 3000))


# ----------------------------------------------------------------------------- teacher files


def teacher_config(tmp_path: Path, teacher: Path) -> Path:
    cfg = tmp_path / "file_teacher.toml"
    cfg.write_text(TINY_CONFIG.replace('kind = "random"', f'kind = "file"\npath = "{teacher}"', 1))
    return cfg


def good_teacher_arrays() -> dict:
    rng = np.random.default_rng(0)
    return {"w1": rng.normal(size=(2, 2)), "b1": rng.normal(size=2), "w2": rng.normal(size=(1, 2)),
            "b2": rng.normal(size=1)}  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.save(p.with_suffix(".npy"), np.ones(3)) or p.with_suffix(".npy"),
         "not an .npz archive"),
        (lambda p: p.write_bytes(b"PK\x03\x04broken") and p, "not an .npz archive"),
        (lambda p: np.savez(p, **{**good_teacher_arrays(), "w1": np.full((2, 2), np.nan)}) or p,
         "'w1' contains NaN or inf"),
        (lambda p: np.savez(p, **{**good_teacher_arrays(), "w1": np.ones((3, 2))}) or p,
         "'w1' has shape [3, 2], expected [2, 2]"),
        (lambda p: np.savez(p, **{**good_teacher_arrays(), "w1": np.array([object()] * 4)})
         or p, "object arrays"),
        (lambda p: Path("/etc/passwd"), "not an .npz archive"),
        (lambda p: np.savez(p, w1=np.ones((2, 2))) or p, "missing array 'b1'"),
    ],
)  # fmt: skip
def test_bad_teacher_files_refused_at_parse_time(tmp_path, make, message):
    target = make(tmp_path / "teacher.npz")
    if not target.exists() and target.with_suffix(".npz").exists():
        target = target.with_suffix(".npz")
    with pytest.raises(ConfigError) as info:
        load_config(teacher_config(tmp_path, target))
    text = str(info.value)
    assert "teacher.path" in text and message in text and "\n" not in text
    assert "allow_pickle" not in text


def test_good_teacher_file_still_loads(tmp_path):
    np.savez(tmp_path / "t.npz", **good_teacher_arrays())
    cfg = load_config(teacher_config(tmp_path, tmp_path / "t.npz"))
    from core.problem import build_problem

    theta = np.asarray(build_problem(cfg).teacher.theta)
    assert np.all(np.isfinite(theta)) and theta.shape == (9,)


# ----------------------------------------------------------------------------- resume


def test_resume_from_a_state_whose_loss_overflows_is_refused_with_nothing_written(
    tmp_path, session_dir, capsys
):
    big = copy_session(session_dir, tmp_path / "big")
    with np.load(big / "trajectory.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["seg0_theta"][-1] = 1e300
    np.savez(big / "trajectory.npz", **arrays)
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_CONFIG.replace("t_max = 100.0", "t_max = 200.0"))
    out = tmp_path / "r"
    rc, err = run_cli(capsys, "run", cfg, "--out", out, "--resume", big, "--quiet")
    assert rc == 2 and "not finite" in err and err.count("\n") == 1
    assert not out.exists()


def test_a_failing_final_analysis_keeps_a_loadable_session(tmp_path, monkeypatch, capsys):
    """finish() raising (e.g. a non-finite Hessian at a huge state) is one line, exit 2,
    and the trajectory stays saved with the error in the event log."""
    import core.runner

    def broken(*args, **kwargs):
        raise ValueError("hessian contains non-finite entries")

    monkeypatch.setattr(core.runner, "finish", broken)
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_CONFIG)
    out = tmp_path / "s"
    rc, err = run_cli(capsys, "run", cfg, "--out", out, "--quiet")
    assert rc == 2 and err.count("\n") == 1 and "non-finite entries" in err
    s = load_session(out)
    assert s.events[-1]["kind"] == "finish" and "non-finite" in s.events[-1]["error"]
    assert s.final_t == pytest.approx(100.0) and s.report is None


# ----------------------------------------------------------------------------- sweeps


def test_huge_sweep_grids_are_refused_at_once():
    grid = {f"dynamics.{k}": list(range(1, 21)) for k in ("max_steps", "n_saves", "batch_size")}
    grid |= {f"data.{k}": list(range(10, 30)) for k in ("samples", "seed")}
    grid |= {"seed": list(range(20)), "refine.max_iter": list(range(1, 21))}
    grid |= {"student.init_scale": [0.1 * i for i in range(1, 21)]}  # 8 keys × 20 = 2.6e10
    tic = time.monotonic()
    with pytest.raises(SweepError, match="25600000000 runs is too many"):
        parse_sweep({"grid": grid})
    with pytest.raises(SweepError, match=r"grid\.seed: 100001 values is too many"):
        parse_sweep({"grid": {"seed": list(range(100_001))}})
    dup = [*range(MAX_RUNS - 1), 5]
    with pytest.raises(SweepError, match="value 5 appears twice"):
        parse_sweep({"grid": {"seed": dup}})
    assert time.monotonic() - tic < 5.0


# ----------------------------------------------------------------------------- --out, export


def test_run_out_over_an_existing_session_needs_force(tmp_path, session_dir, capsys):
    other = tmp_path / "other.toml"
    other.write_text(TINY_CONFIG.replace("seed = 3", "seed = 4"))
    out = copy_session(session_dir, tmp_path / "s")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, err = run_cli(capsys, "run", other, "--out", out, "--quiet")
    assert rc == 2 and "already holds a session" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # through a link: the link stays a link, its folder gets the session, no temp left
    link = tmp_path / "link"
    link.symlink_to(out)
    rc, err = run_cli(capsys, "run", other, "--out", link, "--quiet", "--force")
    assert rc == 0, err
    assert link.is_symlink() and load_session(out).config.seed == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "other.toml", "s"]
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    rc, err = run_cli(capsys, "run", other, "--out", dangling, "--quiet")
    assert rc == 2 and "dangling symbolic link" in err and not (tmp_path / "nowhere").exists()


def test_export_beside_a_dangling_link_writes_nothing(tmp_path, session_dir, capsys):
    (tmp_path / "x_neurons.csv").symlink_to(tmp_path / "nowhere.csv")
    rc, err = run_cli(capsys, "export", session_dir, "--csv", tmp_path / "x.csv")
    assert rc == 2 and "x_neurons.csv: exists" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_neurons.csv"]
    from core.files import write_new_files

    (tmp_path / "b.csv").symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(FileExistsError):  # the race after the check: still all or nothing
        write_new_files({tmp_path / "a.csv": b"1", tmp_path / "b.csv": b"2"})
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "elsewhere.csv").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


# ----------------------------------------------------------------------------- messages, sizes


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"data": {"kind": "x" * 5000}}, "data.kind"),
        ({"student": {"activation": "y" * 5000}}, "student.activation"),
        ({"teacher": {"kind": "file", "path": "z" * 5000}}, "teacher.path"),
        ({"dynamics": {"a\nb": 1}}, "dynamics.a\\nb"),
        ({"x" * 5000: 1}, "xxxx"),
    ],
)
def test_messages_are_one_short_line(mapping, field):
    with pytest.raises(ConfigError) as info:
        parse_config(mapping, "c.toml")
    text = str(info.value)
    assert "\n" not in text and len(text) < 600 and field in text, text
    assert short("a\nb" * 100) == short("a\nb" * 100).strip() and len(short("q" * 999)) == 80


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"student": {"widths": [10000]}}, "student.widths: P = 40001 parameters"),
        ({"student": {"widths": [5000, 5000]}}, "student.widths: P = 25"),
        (
            {
                "teacher": {"input_dim": 6000},
                "student": {"widths": [1]},
                "data": {"samples": 100000},
            },
            "data.samples",
        ),
    ],
)
def test_problems_too_large_for_memory_are_refused_by_the_parser(mapping, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config(mapping, "c.toml")


# ----------------------------------------------------------------------------- the app


def test_app_asks_before_saving_over_another_session(tmp_path, session_dir):
    import asyncio

    from explorer.app import ExplorerApp

    other = copy_session(session_dir, tmp_path / "other")
    before = {p.name: p.read_bytes() for p in other.iterdir()}
    cfg = parse_config(
        {
            "seed": 1,
            "teacher": {"kind": "random", "input_dim": 1, "widths": [2]},
            "student": {"widths": [2]},
            "data": {"samples": 50},
            "dynamics": {"t_max": 10.0, "n_saves": 5},
            "refine": {"method": "none"},
        },
        "tiny",
    )
    app = ExplorerApp(config=cfg, show_clock=False)

    from helpers import start_run, wait_for

    async def save_as(pilot, path):
        await pilot.press("s")
        await pilot.pause(0.1)
        app.screen.query_one("#prompt-input").value = str(path)
        await pilot.press("enter")
        await pilot.pause(0.1)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await start_run(pilot, "done")
            await save_as(pilot, other)
            assert type(app.screen).__name__ == "ConfirmScreen"
            await pilot.press("n")  # keep the other session
            await pilot.pause(0.1)
            assert app.screen is screen and screen.saved_to is None
            assert {p.name: p.read_bytes() for p in other.iterdir()} == before
            await save_as(pilot, tmp_path / "new")  # a new folder: no question
            await wait_for(pilot, lambda: screen.saved_to is not None, "save")
            await save_as(pilot, tmp_path / "new")  # the folder it saved to: no question
            assert app.screen is screen
            await save_as(pilot, other)
            assert type(app.screen).__name__ == "ConfirmScreen"
            await pilot.press("y")
            await wait_for(pilot, lambda: screen.saved_to == other.absolute(), "replace")

    asyncio.run(scenario())
    assert load_session(other).config == cfg


# ----------------------------------------------------------------------------- trace cache


def test_trace_cache_runs_only_the_users_own_private_files(tmp_path):
    import jax
    import jax.numpy as jnp

    from core import traces

    folder = tmp_path / "cache" / "exported"
    assert traces._private(folder) and (folder.stat().st_mode & 0o777) == 0o700
    folder.chmod(0o777)  # a folder of ours left open by an older version: tightened
    assert traces._private(folder) and (folder.stat().st_mode & 0o777) == 0o700
    blob = bytes(jax.export.export(jax.jit(lambda x: x + 1))(jnp.zeros(2)).serialize())
    path = folder / "prog.jaxexport"
    traces._store(path, blob)
    assert traces._load(path) is not None and (path.stat().st_mode & 0o077) == 0
    path.chmod(0o666)  # writable by others: whoever could write it chose the code
    assert traces._load(path) is None
    path.chmod(0o600)
    link = folder / "link.jaxexport"
    link.symlink_to(path)
    assert traces._load(link) is None
    if os.getuid() == 0:  # a file of another user (needs root to make one)
        os.chown(path, 12345, 12345)
        assert traces._load(path) is None
        os.chown(folder, 12345, 12345)
        assert not traces._private(folder)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may rename our folder away and plant another
    assert not traces._private(shared / "exported")
