"""core.export without the CLI: the tables of a session that changed width (surgery), the
file targets and their refusals, and the report's words (explorer export/report end to
end are in tests/test_cli.py)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from core.export import (
    ExportError,
    closing_summary,
    csv_text,
    export_targets,
    format_report,
    session_tables,
    write_session_csv,
)
from core.networks import flatten, make_spec
from core.session import Segment, load_session

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_segments():
    """symmetry_saddle (d = 2, width 2) followed by a width-3 segment with known weights."""
    session = load_session(ROOT / "sessions" / "symmetry_saddle")
    seg0 = session.segments[0]
    spec3 = make_spec(seg0.spec.input_dim, (3,), "softplus", True, seg0.spec.output_dim)
    rng = np.random.default_rng(0)
    m = 4
    params = [
        {"w1": rng.normal(size=(3, 2)), "b1": rng.normal(size=3), "w2": rng.normal(size=(1, 3))}
        | ({"b2": rng.normal(size=1)} if "b2" in spec3.shapes else {})
        for _ in range(m)
    ]
    theta = np.stack([np.asarray(flatten(spec3, p)) for p in params])
    t1 = seg0.t[-1] * np.geomspace(1.5, 10, m)
    session.segments = [seg0, Segment(spec3, t1, theta, np.full(m, 0.5), np.full(m, 1e-3))]
    return session, params


def test_tables_follow_every_segment_and_round_trip_the_weights(two_segments):
    session, params = two_segments
    seg0, seg1 = session.segments
    tables = session_tables(session)
    header, rows = tables["loss"]
    assert header == ["segment", "t", "loss", "grad_inf_norm"]
    assert len(rows) == len(seg0) + len(seg1)
    assert [float(r[1]) for r in rows] == [*map(float, seg0.t), *map(float, seg1.t)]  # exact
    header, rows = tables["neurons"]
    assert header == ["segment", "t", "neuron", "w_0", "w_1", "b", "a_0"]
    assert len(rows) == 2 * len(seg0) + 3 * len(seg1)
    later = [r for r in rows if r[0] == 1]
    for k, p in enumerate(params):  # the weights put in, read back from the rows
        mine = later[3 * k : 3 * k + 3]
        np.testing.assert_array_equal([[float(v) for v in r[3:5]] for r in mine], p["w1"])
        np.testing.assert_array_equal([float(r[5]) for r in mine], p["b1"])
        np.testing.assert_array_equal([float(r[6]) for r in mine], p["w2"][0])
    header, rows = tables["spectrum"]
    assert len(rows) == sum(len(s.eigenvalues) for s in session.spectra)
    first = [float(r[5]) for r in rows if r[0] == 0]
    np.testing.assert_array_equal(first, session.spectra[0].eigenvalues)


def test_csv_text_reads_back():
    text = csv_text(["a", "b"], [[1, "x,y"], [repr(0.1), ""]])
    assert list(csv.reader(io.StringIO(text))) == [["a", "b"], ["1", "x,y"], ["0.1", ""]]


def test_targets_and_their_refusals(tmp_path):
    folder = export_targets(tmp_path / "out")
    assert folder == {n: tmp_path / "out" / f"{n}.csv" for n in ("loss", "spectrum", "neurons")}
    named = export_targets(tmp_path / "run.csv")
    assert named["spectrum"] == tmp_path / "run_spectrum.csv"
    with pytest.raises(ExportError, match="does not exist"):
        export_targets(tmp_path / "missing" / "run.csv")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export_targets(tmp_path / "full")
    (tmp_path / "link").symlink_to(tmp_path / "full")
    with pytest.raises(ExportError, match="symbolic link"):
        export_targets(tmp_path / "link")


def test_write_session_csv_writes_all_or_refuses(two_segments, tmp_path):
    session, _ = two_segments
    paths = write_session_csv(session, tmp_path / "a.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    with open(paths[0]) as f:
        assert len(list(csv.DictReader(f))) == sum(len(s) for s in session.segments)
    before = {p: p.read_bytes() for p in paths}
    with pytest.raises(ExportError, match="exists"):
        write_session_csv(session, tmp_path / "a.csv")
    assert {p: p.read_bytes() for p in paths} == before


def test_report_words():
    report = {
        "classification": "saddle",
        "analysed": {"point": "refined", "t": 12.5, "note": "a note"},
        "final": {"t": 12.5, "loss": 0.25, "grad_inf_norm": 1e-3, "rmse": 0.5},
        "refined": {
            "loss": 0.125, "grad_inf_norm": 1e-13, "method": "newton", "iterations": 4,
            "converged": True, "accuracy": 0.75,
        },
        "spectrum": {"index": 1, "eigenvalues": [-0.5, None, 2.0]},
        "channels": [{"neurons": [0, 1], "epsilon": 1e-4}],
        "wall_seconds": None,
    }  # fmt: skip
    lines = format_report(report).splitlines()
    assert lines[0] == "classification: saddle  (of the refined point at t = 12.5)"
    assert lines[1].startswith("final:   t = 12.5  loss = 2.500000e-01  rmse = 5.000000e-01")
    assert "(newton, 4 it, converged=True)" in lines[2] and "accuracy = 0.7500" in lines[2]
    assert lines[3] == "spectrum: index 1  λ_min = -5.000e-01  λ_max = 2.000e+00"
    assert lines[4] == "channel: neurons [0, 1]  ε = 1.000000e-04"
    assert lines[5:] == ["note: a note", "wall: 0.00 s"]
    summary = {"stop_reason": "t_max", "classification": "minimum", "final_loss": 0.5}
    assert closing_summary(summary) == "t_max, minimum, loss 0.5 (flow), 0.0 s"
    summary |= {"refined_loss": 1e-30, "wall_seconds": 2.25}
    assert closing_summary(summary) == "t_max, minimum, loss 1e-30 (refined), 2.2 s"


def test_report_words_name_the_phases_and_the_source_of_a_branch():
    report = {
        "classification": "minimum",
        "final": {"t": 400.0, "loss": 1e-30, "grad_inf_norm": 1e-16},
        "phases": [
            {"kind": "plateau", "t_start": 1.0, "t_end": 300.0, "loss": 1.3851e-3, "index": 1},
            {"kind": "converged", "t_start": 300.0, "t_end": 400.0, "loss": 1e-30, "index": None},
        ],
        "branched_from": {"session": "sessions/a", "t": 2.5, "segment": 0, "index": 7},
    }
    lines = format_report(report).splitlines()
    assert lines[2] == "phases: plateau 1–300 (L 0.00139, index 1) → converged 300–400 (L 1e-30)"
    assert lines[3] == "branched from sessions/a at t = 2.5"


def test_a_branch_report_says_where_it_came_from():
    import dataclasses

    from core.branch import branch_session
    from core.runner import session_report

    source = load_session(Path(__file__).parent.parent / "sessions" / "symmetry_saddle")
    assert "branched_from" not in session_report(source)
    branch = branch_session(source, float(source.segments[0].t[50]), source="sessions/s")
    # a branch's report is its own once the run is done: keep the source's stored report
    branch = dataclasses.replace(branch, report=source.report)
    got = session_report(branch)["branched_from"]
    assert got == {"session": "sessions/s", "t": float(source.segments[0].t[50]),
                   "segment": 0, "index": 50}  # fmt: skip
