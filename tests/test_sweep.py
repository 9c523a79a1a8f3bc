"""Sweeps: grid expansion and validation (pure), and real runs on a 2-worker LocalCluster
(the atlas itself: tests/test_atlas.py).

The cluster tests share one module-scoped LocalCluster (2 spawned worker processes, one
thread each).  Runs are tiny (d = 2, width 1–2, N = 100, 100 gradient-descent steps) so
each costs ~1 s of CPU after compilation.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from helpers import SWEEP_BASE, sweep_app

from core.config import ConfigError, load_config
from core.session import load_session
from core.sweep import (
    OUTCOMES,
    ClusterOptions,
    SweepError,
    expand_grid,
    flatten_grid,
    load_sweep,
    make_cluster,
    outcome,
    parse_sweep,
    read_summary_csv,
    run_name,
    run_names,
    run_row,
    run_sweep,
    set_dotted,
    summarize,
    write_text_atomic,
)

BASE = SWEEP_BASE.format(method="gd", t_max=5.0)


def write_sweep(folder: Path, grid: str, extra: str = "") -> Path:
    (folder / "base.toml").write_text(BASE)
    path = folder / "sweep.toml"
    path.write_text(f'base = "base.toml"\n{extra}\n[grid]\n{grid}\n')
    return path


# ----------------------------------------------------------------------------- pure


def test_expand_grid_is_the_cartesian_product_first_key_slowest():
    pts = expand_grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(pts) == 6
    assert pts[0] == {"a": 1, "b": "x"} and pts[1] == {"a": 1, "b": "y"}
    assert pts[3] == {"a": 2, "b": "x"}
    assert {(p["a"], p["b"]) for p in pts} == {(a, b) for a in (1, 2) for b in "xyz"}
    assert expand_grid({}) == [{}]


def test_flatten_grid_subtables_equal_dotted_keys():
    nested = flatten_grid({"seed": [1], "student": {"widths": [[2], [3]]}})
    assert nested == {"seed": [1], "student.widths": [[2], [3]]}
    assert set_dotted({"a": {"b": 1}}, "a.c", 2) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ValueError, match="a is not a table"):
        set_dotted({"a": 1}, "a.b", 2)


@pytest.mark.parametrize(
    ("grid", "field", "problem"),
    [
        ({"seed": 3}, "grid.seed", "non-empty list"),
        ({"seed": []}, "grid.seed", "non-empty list"),
        ({"seed": [1, 1]}, "grid.seed", "appears twice"),
        ({"studnet.widths": [[2]]}, "grid.studnet.widths", "unknown config key"),
    ],
)
def test_flatten_grid_errors_name_the_key(grid, field, problem):
    with pytest.raises(SweepError) as e:
        flatten_grid(grid, "s.toml")
    assert e.value.field == field and problem in str(e.value)
    assert str(e.value).startswith("s.toml: " + field)


def test_parse_sweep_expands_base_overrides_and_grid(tmp_path):
    path = write_sweep(
        tmp_path,
        'seed = [1, 2, 3]\n"student.widths" = [[1], [3]]\n',
        extra="[dynamics]\nt_max = 7.0\n",
    )
    sw = load_sweep(path)
    assert sw.keys == ("seed", "student.widths") and sw.setting_keys == ("student.widths",)
    assert len(sw.runs) == 6
    base = load_config(tmp_path / "base.toml")
    for run in sw.runs:
        v = dict(run.values)
        assert run.config.seed == v["seed"]
        assert run.config.student.widths == tuple(v["student.widths"])
        assert run.config.dynamics.t_max == 7.0  # the fixed override
        assert run.config.teacher == base.teacher  # untouched by the grid
        assert run.setting == (("student.widths", v["student.widths"]),)
    names = [r.name for r in sw.runs]
    assert len(set(names)) == 6
    assert names[0] == "seed=1_student.widths=1"
    # Names depend on values only: extending the grid keeps the old names.
    path.write_text(path.read_text().replace("[1, 2, 3]", "[1, 2, 3, 4]"))
    assert set(names) <= {r.name for r in load_sweep(path).runs}


def test_no_base_uses_default_config_and_empty_grid_is_one_run():
    sw = parse_sweep({"seed": 5}, "s.toml")
    assert len(sw.runs) == 1 and sw.runs[0].name == "run" and sw.runs[0].config.seed == 5


@pytest.mark.parametrize(
    ("grid", "field", "problem"),
    [
        ('"student.widths" = [[2], [0]]', "grid.student.widths", "value [0]: must be a list of positive integers"),
        ('"student.activation" = ["tanh", "sofplus"]', "grid.student.activation", "'softplus'"),
        ('"student.widht" = [[2]]', "grid.student.widht", "unknown key"),
        ('"dynamics.method" = ["gd", "newton"]', "grid.dynamics.method", "must be one of"),
        ('"seed" = [1, -1]', "grid.seed", "value -1: must be ≥ 0"),
    ],
)
def test_bad_grid_value_is_one_line_naming_file_key_and_problem(tmp_path, grid, field, problem):
    path = write_sweep(tmp_path, grid)
    with pytest.raises(SweepError) as e:
        load_sweep(path)
    msg = str(e.value)
    assert isinstance(e.value, ConfigError) and "\n" not in msg
    assert msg.startswith(f"{path}: {field}: "), msg
    assert problem in msg


def test_combination_errors_name_the_run(tmp_path):
    # Each value is fine alone; the combination (sgd with batch > samples) is not.
    path = write_sweep(tmp_path, '"dynamics.method" = ["gd", "sgd"]\n"data.samples" = [100, 10]')
    (tmp_path / "base.toml").write_text(BASE.replace("lr = 0.05", "lr = 0.05\nbatch_size = 50"))
    with pytest.raises(SweepError) as e:
        load_sweep(path)
    assert "dynamics.method = 'sgd'" in str(e.value) and "data.samples = 10" in str(e.value)
    assert "batch_size" in str(e.value)


def test_sweep_file_errors(tmp_path):
    with pytest.raises(SweepError, match="file not found"):
        load_sweep(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "nope.toml"\n')
    with pytest.raises(SweepError, match=r"bad.toml: base: nope.toml: file not found"):
        load_sweep(bad)
    bad.write_text("gird = {seed = [1]}\n")
    with pytest.raises(SweepError, match="gird: unknown key"):
        load_sweep(bad)


def test_relative_data_and_teacher_paths_resolve_against_the_file_that_sets_them(tmp_path):
    # The base config and its files in configs/, the sweep file in sweeps/: the base's
    # relative data.path and teacher.path name files beside the base, the sweep's own
    # (a grid value) files beside the sweep.
    rng = np.random.default_rng(0)
    configs, sweeps = tmp_path / "configs", tmp_path / "sweeps"
    configs.mkdir(), sweeps.mkdir()
    for folder, n in ((configs, 40), (sweeps, 30)):  # inputs only: the teacher labels them
        np.savez(folder / "data.npz", x=rng.normal(size=(n, 2)))
    w = {"w1": (2, 2), "b1": (2,), "w2": (1, 2), "b2": (1,)}
    np.savez(configs / "teacher.npz", **{k: rng.normal(size=s) for k, s in w.items()})
    base = (
        'seed = 1\n[teacher]\nkind = "file"\npath = "teacher.npz"\ninput_dim = 2\n'
        'widths = [2]\n[student]\nwidths = [2]\n[data]\nkind = "file"\npath = "data.npz"\n'
    )
    (configs / "base.toml").write_text(base)
    sweep = sweeps / "sweep.toml"
    sweep.write_text('base = "../configs/base.toml"\n[grid]\nseed = [1, 2]\n')
    runs = load_sweep(sweep).runs
    assert [r.config.data.path for r in runs] == [str(configs.resolve() / "data.npz")] * 2
    assert {r.config.data.samples for r in runs} == {40}
    assert runs[0].config.teacher.path == str((configs / "teacher.npz").resolve())
    sweep.write_text('base = "../configs/base.toml"\n[grid]\n"data.path" = ["data.npz"]\n')
    (run,) = load_sweep(sweep).runs
    assert run.config.data.path == str(sweeps.resolve() / "data.npz")
    assert run.config.data.samples == 30
    # A data file named through a link stays refused: only its folder is resolved.
    (configs / "link.npz").symlink_to(configs / "data.npz")
    (configs / "base.toml").write_text(base.replace('"data.npz"', '"link.npz"'))
    with pytest.raises(SweepError, match=r"data\.path: .*link\.npz is a symbolic link"):
        parse_sweep({"base": "../configs/base.toml"}, str(sweep), base_dir=sweeps)


def test_run_names_are_readable_and_unique():
    assert run_name({"seed": 1, "student.widths": [2, 3]}) == "seed=1_student.widths=2x3"
    assert run_name({"student.activation": "a b/c"}) == "student.activation=a-b-c"
    pts = [{"a": "x y"}, {"a": "x/y"}, {"a": "z" * 200}]
    names = run_names(pts)
    assert len(set(names)) == 3 and all(len(n) <= 120 for n in names)
    assert names == run_names(pts)  # stable
    assert names[0].startswith("a=x-y-") and names[1].startswith("a=x-y-")


def test_outcome_rules():
    assert outcome("minimum", 1e-25) == "zero-loss"
    assert outcome("minimum", 1e-3) == "minimum"
    assert outcome("saddle", 1e-3) == "saddle"
    assert outcome("channel", 1e-6) == "channel"
    assert outcome("unconverged", float("nan")) == "unconverged"
    assert outcome(None, None) == "failed"
    # A correlation loss is negative: a minimum there is no "zero loss".
    assert outcome("minimum", -1.04, zero_is_global=False) == "minimum"
    assert outcome("minimum", -1.04) == "minimum"
    assert outcome("saddle", 0.0, zero_is_global=False) == "saddle"
    (run,) = parse_sweep({}, "s.toml").runs
    assert run_row(run, None)["outcome"] == "pending"
    assert run_row(run, None, "KilledWorker: x")["outcome"] == "failed"


def test_summarize_counts_and_medians_per_setting():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        w = [1 + i % 2]
        o = OUTCOMES[int(rng.integers(len(OUTCOMES)))]
        rows.append(
            {
                "seed": i,
                "student.widths": w,
                "outcome": o,
                "final_loss": float(rng.random()),
                "wall_seconds": float(rng.random()),
            }
        )
    out = summarize(rows, ["student.widths"])
    assert [s["student.widths"] for s in out] == [[1], [2]]
    for s in out:
        members = [r for r in rows if r["student.widths"] == s["student.widths"]]
        assert s["runs"] == len(members) == 20
        assert sum(s[o] for o in OUTCOMES) == 20
        for o in OUTCOMES:
            assert s[o] == sum(r["outcome"] == o for r in members)
        assert s["median_final_loss"] == np.median([r["final_loss"] for r in members])
        assert s["median_wall_seconds"] == statistics.median(r["wall_seconds"] for r in members)


def test_write_text_atomic_replaces_whole_file(tmp_path):
    p = tmp_path / "summary.csv"
    write_text_atomic(p, "a\n")
    write_text_atomic(p, "b,c\n")
    assert p.read_text() == "b,c\n" and [q.name for q in tmp_path.iterdir()] == ["summary.csv"]


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        (ClusterOptions(scheduler="tcp://h:1", jobqueue="slurm"), "--scheduler"),
        (ClusterOptions(jobqueue="lsf"), "--jobqueue"),
        (ClusterOptions(scheduler="localhost"), "--scheduler"),
        (ClusterOptions(queue="short"), "--queue"),
        (ClusterOptions(jobqueue="slurm", cores=0), "--cores"),
    ],
)
def test_cluster_option_errors_name_the_flag(options, flag):
    with pytest.raises(SweepError) as e:
        options.check()
    assert e.value.field == flag


def test_slurm_job_script_carries_queue_options():
    pytest.importorskip("dask_jobqueue")
    from core.sweep.execute import _jobqueue_cluster

    opts = ClusterOptions(
        jobqueue="slurm",
        queue="short",
        account="proj1",
        walltime="01:30:00",
        cores=4,
        memory="8GB",
        jobs=2,
    )
    cluster = _jobqueue_cluster(opts)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p short" in script and "#SBATCH -A proj1" in script
    assert "#SBATCH -t 01:30:00" in script and "--nworkers 4" in script
    assert "--nthreads 1" in script and "intra_op_parallelism_threads=1" in script


# ----------------------------------------------------------------------------- on a cluster


@pytest.fixture(scope="module")
def client():
    c, close = make_cluster(ClusterOptions(workers=2))
    c.wait_for_workers(2, timeout=120)
    yield c
    close()


def _check_against_sessions(result, out: Path) -> None:
    """summary.csv / settings.csv agree with what the sessions on disk say."""
    csv_rows = read_summary_csv(out / "summary.csv")
    assert [r["run"] for r in csv_rows] == [r.name for r in result.sweep.runs]
    counts: dict[str, dict[str, int]] = {}
    for run, row in zip(result.sweep.runs, csv_rows, strict=True):
        s = load_session(out / run.name)
        assert s.report is not None
        assert row["classification"] == s.report["classification"]
        assert float(row["final_loss"]) == s.report["final"]["loss"]
        assert float(row["wall_seconds"]) == s.report["wall_seconds"]
        for k, v in run.values:
            assert json.loads(row[k]) == v
        loss = s.analysis["loss"]
        expect = "zero-loss" if loss < 1e-20 else s.report["classification"]
        assert row["outcome"] == expect
        key = json.dumps(dict(run.setting))
        counts.setdefault(key, dict.fromkeys(OUTCOMES, 0))[expect] += 1
    # Every run is in exactly one atlas entry (its counts add up), in grid order there.
    atlas = read_summary_csv(out / "atlas.csv")
    listed = [name for r in atlas for name in r["runs"].split(";")]
    assert sorted(listed) == sorted(r.name for r in result.sweep.runs)
    assert [int(r["count"]) for r in atlas] == [len(r["runs"].split(";")) for r in atlas]
    assert [e.runs for e in result.atlas] == [r["runs"].split(";") for r in atlas]
    settings = read_summary_csv(out / "settings.csv")
    assert len(settings) == len(counts)
    for srow, (key, c) in zip(settings, counts.items(), strict=True):
        assert json.dumps({k: json.loads(srow[k]) for k in json.loads(key)}) == key
        assert {o: int(srow[o]) for o in OUTCOMES} == c


@pytest.fixture(scope="module")
def small_sweep(client, tmp_path_factory):
    """A 4-run sweep (seed × student width) run once on the 2-worker cluster."""
    folder = tmp_path_factory.mktemp("small")
    path = write_sweep(folder, 'seed = [1, 2]\n"student.widths" = [[1], [2]]')
    out = folder / "out"
    events: list = []
    result = run_sweep(path, out, client=client, progress=events.append)
    return path, out, result, events


def _session_dirs(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]


def test_small_sweep_on_two_workers_then_rerun_skips_everything(small_sweep, client):
    path, out, result, events = small_sweep
    assert result.executed == 4 and result.skipped == 0 and not result.failed
    assert sorted(e.kind for e in events) == ["done"] * 4
    _check_against_sessions(result, out)
    # A rerun submits nothing and rewrites no session.
    stamps = {p.name: (p / "meta.json").stat().st_mtime_ns for p in _session_dirs(out)}
    again = run_sweep(path, out, client=client)
    assert again.executed == 0 and again.skipped == 4
    assert stamps == {p.name: (p / "meta.json").stat().st_mtime_ns for p in _session_dirs(out)}
    _check_against_sessions(again, out)


def test_sweep_screen_sorts_by_outcome_and_enter_replays(small_sweep):
    from textual.widgets import DataTable

    from core.sweep import OUTCOMES
    from explorer.screens.replay import ReplayScreen
    from explorer.screens.sweep import SweepScreen

    _, out, result, _ = small_sweep

    async def scenario() -> None:
        app = sweep_app(out)
        async with app.run_test(size=(120, 30)) as pilot:
            screen = app.screen
            assert isinstance(screen, SweepScreen)
            table = screen.query_one("#sweep-table", DataTable)
            assert table.row_count == 4

            def column(name: str) -> list[str]:
                return [str(table.get_cell_at((i, screen.columns.index(name)))) for i in range(4)]

            ranks = [OUTCOMES.index(o) for o in column("outcome")]
            assert ranks == sorted(ranks)  # default: by outcome
            await pilot.press("l")  # by the loss the outcome is judged on
            losses = [float(x) for x in column("analysed_loss")]
            assert losses == sorted(losses)
            await pilot.press("l")
            assert [float(x) for x in column("analysed_loss")] == sorted(losses, reverse=True)
            await pilot.press("down", "enter")
            for _ in range(100):
                await pilot.pause(0.05)
                if isinstance(app.screen, ReplayScreen):
                    break
            assert isinstance(app.screen, ReplayScreen)
            picked = sorted(result.rows, key=lambda r: r["analysed_loss"], reverse=True)[1]["run"]
            assert Path(app.screen.session.path).name == picked

    asyncio.run(scenario())


def test_interrupted_sweep_resumes_with_every_run_exactly_once(tmp_path, client):
    # Six runs on two workers: when the first finishes, at most two more can have started
    # before the interrupt cancels the queue (with a cold compilation cache both workers
    # finish their first run together), so the resume has runs left to execute.
    path = write_sweep(tmp_path, "seed = [11, 12, 13, 14, 15, 16]")
    out = tmp_path / "out"
    done_first = []

    def stop_after_first(event):
        done_first.append(event.run.name)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, out, client=client, progress=stop_after_first)
    assert len(done_first) == 1
    first = out / done_first[0]
    meta_before = (first / "meta.json").read_bytes()
    csv_rows = read_summary_csv(out / "summary.csv")
    assert [r["outcome"] for r in csv_rows].count("pending") >= 1  # unfinished marked so
    assert [r["outcome"] for r in csv_rows].count("failed") == 0
    # The atlas of the runs finished so far is written on the interrupt too.
    finished = sorted(r["run"] for r in csv_rows if r["outcome"] != "pending")
    atlas = read_summary_csv(out / "atlas.csv")
    assert sorted(n for r in atlas for n in r["runs"].split(";")) == finished

    result = run_sweep(path, out, client=client)
    assert not result.failed
    # The run finished before the interrupt is never redone; the others ran once each
    # (a cancelled run still executing on a worker finishes there and is then skipped).
    assert (first / "meta.json").read_bytes() == meta_before
    assert result.executed + result.skipped == 6 and result.executed >= 1
    assert sorted(p.name for p in _session_dirs(out)) == sorted(r.name for r in result.sweep.runs)
    assert not [p for p in out.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    _check_against_sessions(result, out)


def test_killed_worker_loses_only_its_run_which_is_retried(tmp_path, client):
    path = write_sweep(tmp_path, "seed = [21, 22, 23]")
    out = tmp_path / "out"
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(r=run_sweep(path, out, client=client)))
    t.start()

    def executing(dask_worker):
        return os.getpid(), [str(ts.key) for ts in dask_worker.state.executing]

    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and t.is_alive():
        for pid, keys in client.run(executing).values():
            if keys:
                killed = (pid, keys[0], time.time())
                os.kill(pid, signal.SIGKILL)
                break
        time.sleep(0.1)
    t.join(timeout=300)
    assert killed is not None, "no run was seen executing"
    result = box["r"]
    assert not result.failed and result.executed + result.skipped == 3
    _check_against_sessions(result, out)
    # The killed run was redone after the kill (its session is the retry's).
    name = next(r.name for r in result.sweep.runs if killed[1].endswith("-" + r.name))
    created = datetime.fromisoformat(load_session(out / name).created).timestamp()
    assert created >= int(killed[2])  # created is truncated to whole seconds


# ----------------------------------------------------------------------------- CLI


def test_cli_bad_grid_value_exits_2_and_writes_nothing(tmp_path, capsys):
    from explorer.cli import main

    path = write_sweep(tmp_path, 'seed = [1]\n"student.widths" = [[2], [-1]]')
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {path}: grid.student.widths: value [-1]")
    assert not out.exists()
    assert main(["sweep", str(path), "--out", str(out), "--queue", "short"]) == 2
    assert "--queue: only used with --jobqueue" in capsys.readouterr().err
    assert not out.exists()


def test_cli_on_an_existing_scheduler_resumes_the_finished_sweep(small_sweep, client, capsys):
    from explorer.cli import main

    path, out, _, _ = small_sweep
    addr = client.scheduler.address
    assert main(["sweep", str(path), "--out", str(out), "--scheduler", addr]) == 0
    cap = capsys.readouterr()
    assert cap.err.count("skipped") == 4 and "0 run, 4 already done, 0 failed" in cap.err
    header, *lines = cap.out.strip().splitlines()
    assert header.split()[:2] == ["student.widths", "runs"] and len(lines) == 2


def test_output_of_a_different_sweep_is_refused_before_any_work(small_sweep, tmp_path, capsys):
    from explorer.cli import main

    _, out, _, _ = small_sweep
    before = sorted(p.name for p in out.iterdir())
    other = write_sweep(tmp_path, 'seed = [1, 2]\n"student.widths" = [[1], [2]]')
    (tmp_path / "base.toml").write_text(BASE.replace("t_max = 5.0", "t_max = 6.0"))
    assert main(["sweep", str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a session of a different config" in err and "seed=1_student.widths=1" in err
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.slow
def test_cli_sweep_ctrl_c_then_rerun_completes(tmp_path):
    """The real command on its own LocalCluster: SIGINT after the first finished run exits
    130 leaving finished sessions; the rerun completes the rest without redoing them."""
    import subprocess
    import sys

    path = write_sweep(tmp_path, "seed = [31, 32, 33, 34, 35, 36]")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "explorer", "sweep", str(path), "--out", str(out)]
    cmd += ["--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "summary.csv").exists() and any(
            r["outcome"] != "pending" for r in read_summary_csv(out / "summary.csv")
        ):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    finished = {
        r["run"]: (out / r["run"] / "meta.json").read_bytes()
        for r in read_summary_csv(out / "summary.csv")
        if r["outcome"] != "pending"
    }
    assert 1 <= len(finished) < 6
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    # (≥: a run may have finished on a worker after the last summary write before exit.)
    done_before = int(rerun.stderr.split(" already done")[0].rsplit(" ", 1)[-1])
    assert len(finished) <= done_before < 6
    for name, meta in finished.items():
        assert (out / name / "meta.json").read_bytes() == meta
    rows = read_summary_csv(out / "summary.csv")
    assert len(rows) == 6 and all(r["outcome"] not in ("pending", "failed") for r in rows)


def test_sweep_workers_use_the_apps_compilation_cache(tmp_path):
    """A worker process (set up as a spawned Dask worker is, by execute_run) points JAX at
    core.cache's folder, like the app — not a temporary one (that it then stores compiled
    programs there is tests/test_cache.py's)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LANDSCAPE_JAX_CACHE"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    code = (
        "from core.sweep.execute import _worker_setup; _worker_setup(); "
        "import jax; print(jax.config.jax_compilation_cache_dir)"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": str(root)}, cwd=root, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "xdg" / "landscape-explorer" / "jax")
