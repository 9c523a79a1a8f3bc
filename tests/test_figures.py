"""explorer plot / explorer.figures: every shipped session in PNG, SVG and PDF (files opened
and checked non-trivial), the other views, what the overview draws (signed spectrum, t = 0,
styles that survive greyscale, events and phases), and the errors (exit 2, nothing written).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

import explorer.figures as figures
from core.session import load_session, save_session
from explorer.cli import main

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = sorted(p for p in (ROOT / "sessions").iterdir() if (p / "meta.json").is_file())
SVG_NS = "{http://www.w3.org/2000/svg}"
#: the session the error tests plot (small and quick)
QUICK = ROOT / "sessions" / "symmetry_saddle"


def run_cli(capsys, *argv):
    rc = main(list(map(str, argv)))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def check_png(path: Path, min_w: int = 800, min_h: int = 600) -> np.ndarray:
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, img.shape
    rgb = img[..., :3].reshape(-1, 3)
    # not one flat colour: many distinct colours, and a fair share of non-white pixels
    assert len(np.unique(np.round(rgb * 255).astype(np.uint8), axis=0)) > 20
    ink = np.mean(np.any(rgb < 0.9, axis=1))
    assert 0.01 < ink < 0.9, ink
    return img


def check_svg(path: Path, expect_text: str) -> None:
    text = path.read_text(encoding="utf-8")
    root = ET.fromstring(text)
    assert root.tag == SVG_NS + "svg"
    paths = root.iter(SVG_NS + "path")
    assert sum(1 for _ in paths) > 50
    # text is drawn as glyph paths; matplotlib keeps each string as a comment and a group
    assert sum(1 for g in root.iter(SVG_NS + "g") if g.get("id", "").startswith("text_")) > 10
    assert expect_text in text


def check_pdf(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-")
    assert data.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1  # one page (not /Pages)
    assert len(data) > 5000


@pytest.fixture(params=[p.name for p in SESSIONS])
def shipped(request) -> Path:
    return ROOT / "sessions" / request.param


def test_there_are_shipped_sessions():
    assert len(SESSIONS) >= 5


def test_plot_every_shipped_session_in_three_formats(shipped, tmp_path, capsys):
    for ext in ("png", "svg", "pdf"):
        out = tmp_path / f"fig.{ext}"
        rc, _, err = run_cli(capsys, "plot", shipped, "--out", out)
        assert rc == 0, err
        assert err.strip() == str(out)
    check_png(tmp_path / "fig.png", 1200, 1200)
    check_svg(tmp_path / "fig.svg", shipped.name)
    check_pdf(tmp_path / "fig.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "fig.png", "fig.svg"]


def test_svg_and_pdf_are_reproducible(tmp_path, capsys):
    """No dates or random ids in the files: the same session gives the same bytes."""
    s = ROOT / "sessions" / "symmetry_saddle"
    for ext in ("svg", "pdf"):
        a, b = tmp_path / f"a.{ext}", tmp_path / f"b.{ext}"
        assert run_cli(capsys, "plot", s, "--out", a)[0] == 0
        assert run_cli(capsys, "plot", s, "--out", b)[0] == 0
        assert a.read_bytes() == b.read_bytes()


# ----------------------------------------------------------------------------- views


VIEW_CASES = [
    ("symmetry_saddle", "function", None),
    ("symmetry_saddle", "weights", "100"),
    ("symmetry_saddle", "slice", "100"),
    ("saddle_to_saddle", "singular", None),
    ("saddle_to_saddle", "function", None),
    ("three_classes", "function", None),  # softmax: probabilities and class regions
]


@pytest.mark.parametrize(("name", "view", "t"), VIEW_CASES)
def test_views_that_apply(name, view, t, tmp_path, capsys):
    pytest.importorskip("core.views")
    out = tmp_path / f"{view}.png"
    args = ["plot", ROOT / "sessions" / name, "--out", out, "--view", view]
    rc, _, err = run_cli(capsys, *args, *(["--t", t] if t else []))
    assert rc == 0, err
    check_png(out, 800, 500)


@pytest.mark.parametrize(
    ("name", "view", "words"),
    [
        ("saddle_to_saddle", "weights", "input_dim = 2"),
        ("copy_or_average", "weights", "input_dim = 2"),
        ("teacher_recovery", "singular", "linear network"),
    ],
)
def test_views_that_do_not_apply_say_why(name, view, words, tmp_path, capsys):
    pytest.importorskip("core.views")
    out = tmp_path / "v.png"
    rc, _, err = run_cli(capsys, "plot", ROOT / "sessions" / name, "--out", out, "--view", view)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1
    assert f"--view {view}" in err and words in err
    assert list(tmp_path.iterdir()) == []


def test_saddle_slice_shows_the_negative_curvature():
    """On the symmetry saddle's plateau (t ≈ 100) the v_min slice curves down at s = 0 with
    the second difference ≈ λmin < 0 of the recorded spectrum nearest in time."""
    pytest.importorskip("core.views")
    session = load_session(ROOT / "sessions" / "symmetry_saddle")
    fig = figures.session_figure(session, "slice", t=100.0)
    line = fig.axes[0].get_lines()[0]
    s, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    c = s.size // 2
    assert s[c] == 0.0
    h = s[c + 1]
    second = (y[c + 1] - 2 * y[c] + y[c - 1]) / h**2
    snap = min(session.spectra, key=lambda sp: abs(sp.t - 100.0))
    lam = float(np.min(snap.eigenvalues))
    assert lam < -5e-3
    assert second < 0
    assert second == pytest.approx(lam, rel=0.3)  # h is not tiny: O(h²) curvature change


def test_class_regions_panel_is_the_students_argmax_with_the_data():
    """three_classes (softmax, d = 2): the region image is the student's argmax class on the
    grid, the crosses are exactly the training points whose argmax logit is not their label
    (recomputed from the forward pass), and the title's accuracy is the report's."""
    pytest.importorskip("core.views")
    from core.networks import forward_jit
    from core.problem import build_problem

    session = load_session(ROOT / "sessions" / "three_classes")
    fig = figures.session_figure(session, "function")
    ax_line, ax_map = fig.axes[0], fig.axes[1]
    seg = session.final_segment
    theta = seg.theta[-1]
    problem = build_problem(session.config)
    # Line panel: K = 3 probabilities, each in [0, 1], summing to 1 along the line.
    probs = [ln for ln in ax_line.get_lines() if re.match(r"p\d, class", ln.get_label())]
    assert len(probs) == 3
    total = np.sum([np.asarray(ln.get_ydata()) for ln in probs], axis=0)
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)
    # Region image = argmax of the logits at the grid points (row i is x₂ = g[i]).
    img = np.asarray(ax_map.get_images()[0].get_array())
    n = figures.CLASS_GRID
    g = np.linspace(-3.0, 3.0, n)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    want = np.argmax(np.asarray(forward_jit(seg.spec, theta, pts)), axis=1).reshape(n, n)
    np.testing.assert_array_equal(img, want)
    assert set(np.unique(img)) == {0, 1, 2}
    # Crosses: the misclassified training points.
    x, y = np.asarray(problem.data.x), np.asarray(problem.data.y)
    wrong = np.argmax(np.asarray(forward_jit(seg.spec, theta, x)), axis=1) != np.argmax(y, axis=1)
    crosses = [c for c in ax_map.collections if c.get_offsets().shape[0] == wrong.sum()]
    assert 0 < wrong.sum() < 0.1 * len(wrong) and crosses
    got = {tuple(np.round(r, 12)) for r in np.asarray(crosses[-1].get_offsets())}
    assert got == {tuple(np.round(r, 12)) for r in x[wrong]}
    acc = problem.fit_metrics(seg.spec, theta)["accuracy"]
    assert f"training accuracy {acc:.1%}" in ax_map.get_title(loc="left")
    labels = [t.get_text() for t in ax_map.get_legend().get_texts()]
    assert "student ≠ teacher" in labels and "misclassified" in labels


def test_class_regions_without_a_teacher_compare_with_the_labels(tmp_path):
    """A data file's own labels (no teacher): the student's regions, no teacher boundary or
    disagreement hatch, the data by label, crosses on exactly the misclassified points."""
    pytest.importorskip("core.views")
    from test_app_views import labelled_session

    from core.networks import forward_jit

    out, x, labels = labelled_session(tmp_path)
    session = load_session(out)
    fig = figures.session_figure(session, "function")
    ax_line, ax_map = fig.axes[0], fig.axes[1]
    seg = session.final_segment
    pred = np.argmax(np.asarray(forward_jit(seg.spec, seg.theta[-1], x)), axis=1)
    wrong = pred != labels
    assert 0 < wrong.sum() < len(wrong)
    crosses = [c for c in ax_map.collections if c.get_offsets().shape[0] == wrong.sum()]
    got = {tuple(np.round(r, 12)) for r in np.asarray(crosses[-1].get_offsets())}
    assert got == {tuple(np.round(r, 12)) for r in x[wrong]}
    assert f"training accuracy {np.mean(~wrong):.1%}" in ax_map.get_title(loc="left")
    names = [t.get_text() for t in ax_map.get_legend().get_texts()]
    assert "misclassified" in names and "data: label 3" in names
    assert "teacher's boundaries" not in names and "student ≠ teacher" not in names
    assert not any("teacher" in ln.get_label() for ln in ax_line.get_lines())


# ----------------------------------------------------------------------------- overview content


def panels(fig):
    """(loss, spectrum, weights) axes of an overview, found by their titles."""
    by_title = {ax.get_title(loc="left").split(" ")[0]: ax for ax in fig.axes}
    weights = by_title.get("weights:", by_title.get("end-to-end"))
    return by_title["loss"], by_title["Hessian"], weights


def _labelled_lines(ax):
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def test_overview_spectrum_is_signed_and_time_axis_starts_at_zero():
    session = load_session(ROOT / "sessions" / "symmetry_saddle")
    fig = figures.session_figure(session)
    ax_loss, ax_eig, ax_w = panels(fig)
    assert ax_eig.get_yscale() == "symlog"
    lmin = next(ln for ln in ax_eig.get_lines() if ln.get_label() == "λmin")
    traj = [s for s in session.spectra if s.label != "refined"]
    want = np.array([np.min(s.eigenvalues) for s in sorted(traj, key=lambda s: s.t)])
    got = np.asarray(lmin.get_ydata(), float)
    np.testing.assert_allclose(got[np.isfinite(got)], want)
    assert np.min(want) < -5e-3  # the saddle's negative eigenvalue …
    assert ax_eig.get_ylim()[0] < np.min(want)  # … is inside the axis
    assert session.segments[0].t[0] == 0.0
    for ax in (ax_loss, ax_eig, ax_w):
        assert ax.get_xscale() == "symlog"
        assert ax.get_xlim()[0] == 0.0
        assert ax.get_xlim()[1] >= session.final_t
    assert ax_loss.get_yscale() == "log"


@pytest.mark.parametrize("name", ["multi_index_below", "multi_index_above"])
def test_negative_loss_is_drawn_as_l_minus_min(name):
    """The correlation loss L = −E[f f*] < 0: the loss line holds L − min L (every point but
    the minimum itself drawable on the log axis), and the legend and title name min L."""
    session = load_session(ROOT / "sessions" / name)
    loss = np.concatenate([seg.loss for seg in session.segments])
    assert np.all(loss < 0)
    low = min(loss.min(), session.refined.get("loss", np.inf))
    ax_loss = panels(figures.session_figure(session))[0]
    assert ax_loss.get_yscale() == "log"
    line = next(ln for ln in ax_loss.get_lines() if ln.get_label().startswith("L − min L"))
    assert f"min L = {low:.4g}" in line.get_label() and f"min L = {low:.4g}" in ax_loss.get_title(
        loc="left"
    )
    y = np.asarray(line.get_ydata(), float)
    shifted = loss - low
    np.testing.assert_array_equal(y[shifted > 0], shifted[shifted > 0])
    assert np.sum(np.isfinite(y)) >= loss.size - 1


def test_positive_loss_is_drawn_as_it_is():
    session = load_session(ROOT / "sessions" / "saddle_to_saddle")
    ax_loss = panels(figures.session_figure(session))[0]
    line = next(ln for ln in ax_loss.get_lines() if ln.get_label() == "loss L")
    np.testing.assert_array_equal(line.get_ydata(), session.segments[0].loss)
    assert ax_loss.get_title(loc="left") == "loss and gradient norm"


@pytest.mark.parametrize("name", ["teacher_recovery", "saddle_to_saddle"])
def test_series_differ_by_style_not_colour_alone(name):
    """Readable in greyscale: labelled series in a panel differ in dash pattern or marker."""
    fig = figures.session_figure(load_session(ROOT / "sessions" / name))
    for ax in panels(fig):
        lines = _labelled_lines(ax)
        assert len(lines) >= 2
        styles = {(str(ln.get_linestyle()), str(ln.get_marker())) for ln in lines}
        assert len(styles) == len(lines), [ln.get_label() for ln in lines]


def test_weights_panel_matches_the_parameters():
    """|a_i| = ‖W2[:, i]‖ recomputed from the flat θ by hand (layout w1, b1, w2, b2)."""
    session = load_session(ROOT / "sessions" / "teacher_recovery")
    fig = figures.session_figure(session)
    ax_w = panels(fig)[2]
    seg = session.segments[0]
    spec = seg.spec
    k, d = spec.widths[0], spec.input_dim
    assert spec.output_dim == 1
    off = k * d + (k if spec.bias[0] else 0)  # w1 (k×d), b1 (k): then w2 (1×k)
    for i in range(k):
        line = next(ln for ln in ax_w.get_lines() if ln.get_label() == f"|a{i}|")
        np.testing.assert_allclose(line.get_ydata(), np.abs(seg.theta[:, off + i]))


def test_events_and_phases_are_marked(tmp_path, monkeypatch):
    """Events of every kind and (stand-in) phases appear as lines/spans and in the legend."""
    session = load_session(ROOT / "sessions" / "symmetry_saddle")
    session.events = [
        *session.events,
        {"kind": "pause", "t": 10.0},
        {"kind": "resume", "t": 10.0},
        {"kind": "surgery", "t": 3000.0},
    ]

    class FakePhase:
        def __init__(self, kind, t0, t1):
            self.kind, self.t_start, self.t_end = kind, t0, t1
            self.loss, self.index, self.note = 1e-3, 1, ""

    monkeypatch.setattr(
        figures,
        "session_phases",
        lambda s: [FakePhase("plateau", 0.5, 300.0), FakePhase("converged", 1e4, 1e6)],
    )
    fig = figures.session_figure(session)
    labels = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    for want in ("event: refine", "event: pause", "event: resume", "event: surgery"):
        assert want in labels
    assert {"phase: plateau", "phase: converged"} <= labels
    ax = panels(fig)[0]
    vlines = [ln for ln in ax.get_lines() if np.ptp(np.asarray(ln.get_xdata(), float)) == 0]
    xs = {float(np.asarray(ln.get_xdata())[0]) for ln in vlines}
    assert {10.0, 3000.0, session.events[0]["t"]} <= xs  # events
    assert {0.5, 1e4} <= xs  # phase boundaries
    bar = next(a for a in fig.axes if a.get_ylabel() == "phase")
    spans = sorted((p.get_x(), p.get_x() + p.get_width()) for p in bar.patches)
    assert spans == [(0.5, 300.0), (1e4, 1e6)]
    assert "plateau L=0.001, index 1" in {t.get_text() for t in bar.texts}
    out = tmp_path / "marked.png"
    fig.savefig(out, dpi=100)
    check_png(out, 600, 600)


def test_real_phases_when_core_phases_exists():
    pytest.importorskip("core.phases")
    session = load_session(ROOT / "sessions" / "saddle_to_saddle")
    fig = figures.session_figure(session)
    labels = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    assert "phase: plateau" in labels


# ----------------------------------------------------------------------------- errors


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_not_a_session_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    damaged = tmp_path / "damaged"
    shutil.copytree(ROOT / "sessions" / "symmetry_saddle", damaged)
    npz = damaged / "trajectory.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    outdir = tmp_path / "out"
    outdir.mkdir()
    for folder in (empty, other, damaged, tmp_path / "missing"):
        rc, _, err = run_cli(capsys, "plot", folder, "--out", outdir / "f.png")
        assert rc == 2
        assert str(folder) in _one_line_error(err)
    assert list(outdir.iterdir()) == []


@pytest.mark.parametrize("name", ["f.jpg", "f", "f.png.txt", "f.eps"])
def test_bad_extension(name, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "plot", QUICK, "--out", tmp_path / name)
    assert rc == 2
    line = _one_line_error(err)
    assert "unsupported figure format" in line and ".png" in line
    assert list(tmp_path.iterdir()) == []


def test_existing_file_needs_force(tmp_path, capsys):
    out = tmp_path / "fig.png"
    out.write_bytes(b"precious")
    rc, _, err = run_cli(capsys, "plot", QUICK, "--out", out)
    assert rc == 2
    assert "exists" in _one_line_error(err) and "--force" in err
    assert out.read_bytes() == b"precious"
    rc, _, err = run_cli(capsys, "plot", QUICK, "--out", out, "--force")
    assert rc == 0, err
    check_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]  # no temporary left behind


def test_other_bad_arguments(tmp_path, capsys):
    cases = [
        (["--out", tmp_path / "nofolder" / "f.png"], "does not exist"),
        (["--out", tmp_path / "f.png", "--view", "nonsense"], "unknown view"),
        (["--out", tmp_path / "f.png", "--t", "nan"], "--t"),
        (["--out", tmp_path / "f.png", "--t", "soon"], "--t"),
    ]
    for extra, words in cases:
        rc, _, err = run_cli(capsys, "plot", QUICK, *extra)
        assert rc == 2, extra
        assert words in _one_line_error(err)
    assert list(tmp_path.iterdir()) == []
    rc, _, err = run_cli(capsys, "plot", QUICK)
    assert rc == 2 and "--out" in err


def test_write_figure_never_clobbers_a_file_that_appears(tmp_path):
    """The no-force path links the finished temporary into place: a file created after the
    check (a race) is kept and the write fails with one line."""
    session = load_session(QUICK)
    out = tmp_path / "fig.svg"
    real_check = figures.check_target

    def check_then_race(path, *, force=False):
        fmt = real_check(path, force=force)
        Path(path).write_text("someone else's")
        return fmt

    figures.check_target = check_then_race
    try:
        with pytest.raises(figures.FigureError, match="exists"):
            figures.write_figure(session, out)
    finally:
        figures.check_target = real_check
    assert out.read_text() == "someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.svg"]


def test_surgery_session_plots_each_segment(tmp_path):
    """A session with two segments (width 2 → 3, as after a split) plots both segments."""
    from core.networks import make_spec
    from core.session import Segment

    session = load_session(ROOT / "sessions" / "symmetry_saddle")
    seg0 = session.segments[0]
    spec3 = make_spec(seg0.spec.input_dim, (3,), "softplus", True, seg0.spec.output_dim)
    rng = np.random.default_rng(0)
    m = 20
    t1 = seg0.t[-1] * np.geomspace(1, 10, m)
    seg1 = Segment(
        spec3,
        t1,
        rng.standard_normal((m, spec3.n_params)),
        np.geomspace(1e-3, 1e-6, m),
        np.geomspace(1e-4, 1e-8, m),
    )
    session.segments = [seg0, seg1]
    session.spectra = [s for s in session.spectra if s.label == "trajectory"]
    session.refined, session.refined_theta = None, None
    folder = tmp_path / "two_segments"
    save_session(folder, session)
    fig = figures.session_figure(load_session(folder))
    out = tmp_path / "two.png"
    fig.savefig(out, dpi=100)
    check_png(out, 600, 600)
    labels = {ln.get_label() for ln in panels(fig)[2].get_lines()}
    assert {"|a0|", "|a1|", "|a2|"} <= labels
    legend = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    assert "new segment" in legend


def test_cli_import_does_not_load_matplotlib():
    code = "import sys, explorer.cli; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "False"


def test_sessions_without_spectra_or_t0(tmp_path):
    """No recorded spectra: the panel says so; no t = 0 row (e.g. cut from a resumed run): a
    plain log time axis."""
    from core.session import Segment

    session = load_session(QUICK)
    seg = session.segments[0]
    keep = seg.t > 0
    session.segments = [
        Segment(seg.spec, seg.t[keep], seg.theta[keep], seg.loss[keep], seg.grad_norm[keep])
    ]
    session.spectra = []
    fig = figures.session_figure(session)
    ax_loss, ax_eig, _ = panels(fig)
    assert ax_loss.get_xscale() == "log"
    assert ax_loss.get_xlim()[0] < seg.t[keep][0]
    assert any("no Hessian spectra" in t.get_text() for t in ax_eig.texts)
    out = tmp_path / "f.png"
    fig.savefig(out, dpi=100)
    check_png(out, 600, 600)


def test_overview_cursor_at_the_chosen_state():
    """--t on the overview draws a cursor at the saved state nearest t (the state the other
    views would show)."""
    session = load_session(QUICK)
    t_saved = session.segments[0].t
    want = float(t_saved[np.argmin(np.abs(t_saved - 100.0))])
    fig = figures.session_figure(session, t=100.0)
    labels = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    assert f"state at t = {want:.4g}" in labels
    lines = [np.asarray(ln.get_xdata(), float) for ln in panels(fig)[1].get_lines()]
    assert want in {float(x[0]) for x in lines if x.size and np.ptp(x) == 0}


def test_phase_bar_marks_a_phase_core_is_unsure_of():
    from core.phases import Phase
    from explorer.figures import phase_label

    sure = Phase("channel", 1.0, 10.0, 0.1, 0, "channel to infinity")
    unsure = Phase("channel", 1.0, 10.0, 0.1, 0, "possibly a channel", sure=False)
    plateau = Phase("plateau", 1.0, 10.0, 1.3851e-3, 1, "")
    assert [phase_label(p) for p in (sure, unsure)] == ["channel", "channel?"]
    assert phase_label(plateau) == "plateau L=0.00139, index 1"
