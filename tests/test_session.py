"""core.session: round trip, bounded trajectories, atomic saves under kill -9, a loader that
only ever raises SessionError, schema migration."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import config_to_dict, default_config
from core.networks import make_spec
from core.session import (
    SCHEMA_VERSION,
    Session,
    SessionError,
    SessionRecorder,
    load_session,
    save_session,
    subsample_indices,
)

CFG = default_config()
SPEC = CFG.student_spec()  # P = 17
P = SPEC.n_params


def make_recorder(n_chunks=3, seed=0) -> SessionRecorder:
    rng = np.random.default_rng(seed)
    rec = SessionRecorder(CFG, SPEC, max_points=100, keep_last=20)
    t0 = 0.0
    for _ in range(n_chunks):
        t = t0 + np.cumsum(rng.uniform(0.1, 1.0, 7))
        rec.append(t, rng.normal(size=(7, P)), rng.uniform(size=7), rng.uniform(size=7))
        t0 = float(t[-1])
    rec.add_event("pause", note="by hand")
    rec.add_spectrum(t0, rng.normal(size=P), "final")
    # surgery: a wider student continues in a new segment
    spec5 = make_spec(2, [5], "softplus", True)
    rec.add_event("surgery", op="split", neuron=1, mu=0.5)
    rec.start_segment(spec5)
    rec.append([t0, t0 + 1.0], rng.normal(size=(2, spec5.n_params)), [0.1, 0.05], [1e-3, 1e-4])
    rec.add_spectrum(t0 + 1.0, rng.normal(size=spec5.n_params), "refined")
    rec.set_refined(rng.normal(size=spec5.n_params), converged=True, iterations=4)
    rec.summary["classification"] = "saddle"
    rec.analysis = {
        "classification": "saddle",
        "spectrum": {"eigenvalues": [-1.0, 2.0], "index": 1},
    }
    rec.report = {"final": {"t": t0 + 1.0, "loss": 0.05, "grad_inf_norm": 1e-4}, "x": [1.0, None]}
    return rec


def assert_same(a: Session, b: Session) -> None:
    assert a.config == b.config
    assert len(a.segments) == len(b.segments)
    for sa, sb in zip(a.segments, b.segments, strict=True):
        assert sa.spec == sb.spec
        for name in ("t", "theta", "loss", "grad_norm"):
            np.testing.assert_array_equal(getattr(sa, name), getattr(sb, name))
    assert [(s.t, s.segment, s.label) for s in a.spectra] == [
        (s.t, s.segment, s.label) for s in b.spectra
    ]
    for sa, sb in zip(a.spectra, b.spectra, strict=True):
        np.testing.assert_array_equal(sa.eigenvalues, sb.eigenvalues)
    np.testing.assert_array_equal(a.refined_theta, b.refined_theta)
    assert a.events == b.events and a.refined == b.refined
    assert a.analysis == b.analysis and a.report == b.report
    assert a.summary == b.summary


def test_round_trip(tmp_path):
    rec = make_recorder()
    session = rec.to_session()
    save_session(tmp_path / "s", session)
    loaded = load_session(tmp_path / "s")
    assert_same(session, loaded)
    assert loaded.schema == SCHEMA_VERSION and loaded.final_spec.widths == (5,)
    assert loaded.final_theta.shape == (make_spec(2, [5]).n_params,)
    assert [e["kind"] for e in loaded.events] == ["pause", "surgery"]
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())  # human-readable JSON
    assert meta["config"] == config_to_dict(CFG) and meta["versions"]["jax"]
    # saving again replaces atomically and leaves no temporary siblings
    rec.add_event("resume")
    rec.save(tmp_path / "s")
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    assert load_session(tmp_path / "s").events[-1]["kind"] == "resume"


def test_bounded_trajectory_keeps_first_last_and_log_spacing():
    rec = SessionRecorder(CFG, SPEC, max_points=200, keep_last=50)
    n_total = 0
    for k in range(200):  # 10⁵ states, linear in t
        t = np.arange(k * 500, (k + 1) * 500, dtype=float)
        theta = np.tile(t[:, None], (1, P))
        rec.append(t, theta, t, t)
        n_total += 500
        assert rec.n_points <= 2 * 200
    seg = rec.to_session().final_segment
    assert seg.t[0] == 0.0 and seg.t[-1] == n_total - 1
    np.testing.assert_array_equal(seg.t[-50:], np.arange(n_total - 50, n_total))  # last kept
    np.testing.assert_array_equal(seg.theta[:, 3], seg.t)  # rows stay aligned
    assert np.all(np.diff(seg.t) > 0)
    # log-spaced: every decade of t holds some states
    for lo in (1, 10, 100, 1000, 10000):
        assert np.any((seg.t >= lo) & (seg.t < 10 * lo))


def test_subsample_indices_against_brute_force():
    t = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 5000)])
    idx = subsample_indices(t, 30, 10)
    assert idx[0] == 0 and np.all(np.diff(idx) > 0) and len(idx) <= 41
    np.testing.assert_array_equal(idx[-10:], np.arange(len(t) - 10, len(t)))
    head = t[idx[1:-10]]
    ratios = head[1:] / head[:-1]
    # nearest-to-geomspace picks: spacing ratios near (1e3/1e-3)^(1/29) ≈ 1.61
    assert np.all(ratios < 1.61 * 1.05)


def test_refuses_to_clobber_non_session(tmp_path):
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("do not delete")
    with pytest.raises(SessionError, match="not a session folder; refusing"):
        save_session(other, make_recorder().to_session())
    assert [p.name for p in other.iterdir()] == ["thesis.tex"]
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(SessionError, match="not a folder"):
        save_session(afile, make_recorder().to_session())
    # an empty folder is fine
    (tmp_path / "empty").mkdir()
    save_session(tmp_path / "empty", make_recorder().to_session())
    load_session(tmp_path / "empty")


# The forked child only runs NumPy/JSON/os code (no JAX), so JAX's threads cannot deadlock it;
# forking (not spawning) keeps 25 kill trials fast (no re-import of JAX per trial).
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_kill_9_during_saves_never_leaves_unreadable_session(tmp_path):
    """Fork savers that rewrite the session in a loop and SIGKILL them at random moments."""
    target = tmp_path / "s"
    versions = {}
    for seed in range(3):  # three distinct complete versions
        rec = make_recorder(n_chunks=2 + seed, seed=seed)
        versions[seed] = rec.to_session()
    save_session(target, versions[0])
    rng = random.Random(1)
    for trial in range(25):
        pid = os.fork() if hasattr(os, "fork") else pytest.skip("needs fork")
        if pid == 0:  # child: save forever, alternating versions
            try:
                k = 0
                while True:
                    save_session(target, versions[k % 3])
                    k += 1
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        loaded = load_session(target)  # must always be one complete version
        n = len(loaded.segments[0])
        match = [s for s in versions.values() if len(s.segments[0]) == n]
        assert match, f"trial {trial}: unexpected session with {n} states"
        assert_same(match[0], loaded)
    # the next save cleans up temporaries left by killed savers
    save_session(target, versions[1])
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


# ------------------------------------------------------------------ corruption (hypothesis)

FILES = ["meta.json", "config.toml", "trajectory.npz", "spectra.npz"]
META_KEYS = ["schema", "segments", "spectra", "events", "summary", "config", "refined", "format"]
ARRAYS = ["seg0_t", "seg0_theta", "seg1_loss", "seg1_grad_norm", "refined_theta"]
GOOD = make_recorder().to_session()
U = st.floats(0, 1)

CORRUPTIONS = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(FILES), U),
    st.tuples(st.just("flip"), st.sampled_from(FILES), U),
    st.tuples(st.just("delete"), st.sampled_from(FILES), st.just(0.0)),
    st.tuples(st.just("garbage"), st.sampled_from(FILES), U),
    st.tuples(st.just("meta"), st.sampled_from(META_KEYS), U),
    st.tuples(st.just("array"), st.sampled_from(ARRAYS), U),
)


def corrupt(path: Path, how) -> None:
    kind, name, u = how
    if kind in ("truncate", "flip", "delete", "garbage"):
        f = path / name
        data = f.read_bytes()
        if kind == "truncate":
            f.write_bytes(data[: int(u * len(data))])
        elif kind == "flip":
            i = min(int(u * len(data)), len(data) - 1)
            f.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
        elif kind == "delete":
            f.unlink()
        else:
            f.write_bytes(bytes(random.Random(u).randrange(256) for _ in range(200)))
    elif kind == "meta":
        meta = json.loads((path / "meta.json").read_text())
        bad_values = [None, "x", -1, 99, [], {}, [1, 2], {"kind": 3}]
        meta[name] = bad_values[int(u * (len(bad_values) - 1))]
        (path / "meta.json").write_text(json.dumps(meta))
    else:
        with np.load(path / "trajectory.npz") as f:
            arrays = {k: f[k] for k in f.files}
        a = arrays[name]
        choice = int(u * 4)
        if choice == 0:
            a = a.copy()
            a.reshape(-1)[0] = np.nan
        elif choice == 1:
            a = a[..., :-1]
        elif choice == 2:
            a = a.astype(np.int8)
        else:
            a = np.array(["text"])
        arrays[name] = a
        np.savez(path / "trajectory.npz", **arrays)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(how=CORRUPTIONS)
def test_corrupted_sessions_only_raise_session_error(tmp_path, how):
    root = tmp_path / f"h{random.getrandbits(32)}"
    root.mkdir()
    path = root / "s"
    save_session(path, GOOD)
    corrupt(path, how)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    try:
        s = load_session(path)
    except SessionError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(str(path)) and len(msg) > len(str(path)) + 5
    else:  # e.g. a flipped byte inside a float: still a structurally valid session
        assert isinstance(s, Session)
        for seg in s.segments:
            assert np.all(np.isfinite(seg.theta))
    after = {p.name: p.read_bytes() for p in path.iterdir()}
    assert before == after  # loading never writes
    shutil.rmtree(root)


def test_not_a_session_and_versions(tmp_path):
    with pytest.raises(SessionError, match="not found"):
        load_session(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(SessionError, match=r"not a session folder \(no meta.json\)"):
        load_session(tmp_path / "plain")
    path = tmp_path / "s"
    save_session(path, make_recorder().to_session())
    meta = json.loads((path / "meta.json").read_text())
    for schema, msg in ((SCHEMA_VERSION + 1, "newer"), (0, "unknown schema version 0")):
        (path / "meta.json").write_text(json.dumps({**meta, "schema": schema}))
        with pytest.raises(SessionError, match=msg):
            load_session(path)
    # a hand-edited config.toml that disagrees with meta.json
    (path / "meta.json").write_text(json.dumps(meta))
    seed = f"seed = {CFG.seed}"
    assert seed in (path / "config.toml").read_text()
    text = (path / "config.toml").read_text().replace(seed, f"seed = {CFG.seed + 1}")
    (path / "config.toml").write_text(text)
    with pytest.raises(SessionError, match=r"config\.toml: differs from the config"):
        load_session(path)
    # a config that is no longer valid
    (path / "config.toml").write_text(text.replace(f"seed = {CFG.seed + 1}", "seed = -5"))
    with pytest.raises(SessionError, match="config no longer valid: seed"):
        load_session(path)


def test_migration_from_schema_1(tmp_path):
    """Schema 1: one un-segmented trajectory for the config's student, no spectra file."""
    path = tmp_path / "old"
    path.mkdir()
    rng = np.random.default_rng(3)
    t = np.array([0.0, 1.0, 10.0])
    theta = rng.normal(size=(3, P))
    meta = {
        "format": "landscape-explorer-session",
        "schema": 1,
        "created": "2024-01-01T00:00:00",
        "config": config_to_dict(CFG),
        "events": [],
        "summary": {"wall_seconds": 1.5},
    }
    (path / "meta.json").write_text(json.dumps(meta))
    from core.config import config_to_toml

    (path / "config.toml").write_text(config_to_toml(CFG))
    np.savez(
        path / "trajectory.npz", t=t, theta=theta, loss=[3.0, 2.0, 1.0], grad_norm=[1.0, 0.5, 0.1]
    )
    before = sorted(p.name for p in path.iterdir())
    s = load_session(path)
    assert s.schema == SCHEMA_VERSION and len(s.segments) == 1
    assert s.final_spec == SPEC
    np.testing.assert_array_equal(s.segments[0].theta, theta)
    assert s.final_loss == 1.0 and s.wall_seconds == 1.5
    assert sorted(p.name for p in path.iterdir()) == before  # migration happens in memory


def test_recorder_rejects_wrong_width():
    rec = SessionRecorder(CFG, SPEC)
    with pytest.raises(ValueError, match="start a new segment"):
        rec.append([0.0], np.zeros((1, P + 1)), [0.0], [0.0])


def test_from_session_continues(tmp_path):
    rec = make_recorder()
    save_session(tmp_path / "s", rec.to_session())
    s = load_session(tmp_path / "s")
    rec2 = SessionRecorder.from_session(s)
    assert rec2.spec == s.final_spec and rec2.wall_offset == s.wall_seconds
    rec2.append([s.final_t + 1.0], s.final_theta[None] * 2, [0.01], [1e-5])
    s2 = rec2.to_session()
    assert s2.final_t == s.final_t + 1.0
    np.testing.assert_array_equal(s2.segments[0].theta, s.segments[0].theta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert s2.wall_seconds >= s.wall_seconds
