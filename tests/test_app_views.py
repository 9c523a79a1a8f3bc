"""The function / weights / singular-value / loss-slice plot tabs (keys 5–8) in the real app.

Snapshots at 80×24 (one view per frame) and 120×40 (the 2×2 page with all four) on the
shipped sessions, and pilot tests that the views follow the replay cursor and the live run
and show exactly what :mod:`core.views` computes at that point.  Figures are built
synchronously (``LinePlot.background = False``, which the views follow too).
Update with ``pytest tests/test_app_views.py --snapshot-update`` after checking the SVGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import start_run, sync, wait_for

from core.config import parse_config
from core.session import load_session

SESSIONS = Path(__file__).resolve().parent.parent / "sessions"
VIEW_KEYS = {"function": "5", "weights": "6", "singular": "7", "slice": "8"}
#: Home then n × PageDown (a tenth of the run each): the symmetry saddle's plateau at 5
#: (t ≈ 95, loss 1.385e-3), the saddle-to-saddle's first plateau at 7 (t ≈ 140, loss 4.95).
PLATEAU = {"symmetry_saddle": 5, "saddle_to_saddle": 7}

pytestmark = pytest.mark.usefixtures("synchronous_plots")  # conftest.py


def _settled(panel) -> bool:
    return (
        panel._pending is None
        and panel._wanted is not None
        and panel._shown_key == panel._wanted[0]
    )


async def settle_views(pilot) -> None:
    """Every view panel on screen shows the result for the current point; nothing runs."""
    from explorer.widgets.views import ViewPanel

    screen = pilot.app.screen
    await wait_for(pilot, lambda: getattr(screen, "problem", None) is not None, "problem")
    await pilot.pause(0.3)
    panels = [p for p in screen.query(ViewPanel) if p.display and p.region.area > 0]
    for panel in panels:
        await wait_for(pilot, lambda p=panel: _settled(p), f"{panel.view} view")
    await pilot.app.workers.wait_for_complete()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.2)


def _replay_app(name: str):
    from explorer.app import ExplorerApp

    return ExplorerApp(replay=load_session(SESSIONS / name))


def _keys(name: str, view: str) -> list[str]:
    n = PLATEAU.get(name)
    return (["home"] + ["pagedown"] * n if n else []) + [VIEW_KEYS[view]]


SNAPSHOTS_80 = [
    ("teacher_recovery", "function"),  # d = 2: the line and the f − g heatmap
    ("symmetry_saddle", "weights"),  # the split neuron: two students on one point
    ("saddle_to_saddle", "singular"),  # the rank staircase, cursor on the first plateau
    ("channel_to_infinity", "slice"),  # the channel's flat valley along v_min
    ("copy_or_average", "weights"),  # d = 4: the view says why it does not apply
    ("three_classes", "function"),  # softmax, d = 2: p along the line and the class regions
]
#: The 2×2 page of views 5–8: all four on the saddle's plateau and on a deep linear net.
SNAPSHOTS_120 = [
    ("symmetry_saddle", "slice"),
    ("saddle_to_saddle", "singular"),
]


def _snapshot(snap_compare, name: str, keys: list[str], size: tuple[int, int]) -> bool:
    """The replay of session ``name`` after pressing ``keys``, views settled, against its
    snapshot."""

    async def show(pilot) -> None:
        await pilot.press(*keys)
        await settle_views(pilot)

    return snap_compare(_replay_app(name), terminal_size=size, run_before=show)


@pytest.mark.parametrize(("name", "view"), SNAPSHOTS_80)
def test_view_snapshot_80x24(snap_compare, name, view) -> None:
    assert _snapshot(snap_compare, name, _keys(name, view), (80, 24))


@pytest.mark.parametrize(("name", "view"), SNAPSHOTS_120)
def test_view_page_snapshot_120x40(snap_compare, name, view) -> None:
    assert _snapshot(snap_compare, name, _keys(name, view), (120, 40))


def _panel(app, view: str):
    from explorer.widgets.views import ViewPanel

    return next(p for p in app.screen.query(ViewPanel) if p.view == view)


@sync
async def test_replay_views_follow_the_cursor() -> None:
    """At the saddle's plateau the slice shows λmin < 0; at the end (a minimum) it does not;
    the function view holds exactly core.views.function_line at the replayed θ."""
    from core.views import function_line

    app = _replay_app("symmetry_saddle")
    session = app.replay
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press(*_keys("symmetry_saddle", "slice"))
        await settle_views(pilot)
        screen = app.screen
        s, j = screen.index[screen.position]
        seg = session.segments[s]
        sl = _panel(app, "slice").result
        assert sl.reason is None and sl.t == float(seg.t[j]) < 300
        assert sl.data["lam_min"] == pytest.approx(-0.010, abs=1e-3)
        assert sl.data["min"].min() < sl.data["loss"]  # the descent direction shows
        fn = _panel(app, "function").result
        want = function_line(seg.spec, seg.theta[j], screen.problem.teacher)
        np.testing.assert_array_equal(fn.data["line"]["student"], want["student"])
        np.testing.assert_array_equal(fn.data["line"]["teacher"], want["teacher"])
        assert "linear network" in _panel(app, "singular").result.reason

        await pilot.press("end")
        await settle_views(pilot)
        sl_end = _panel(app, "slice").result
        assert sl_end.t == session.final_t
        assert sl_end.data["lam_min"] > -1e-6  # a minimum: no descent direction left


@sync
async def test_singular_values_in_replay_are_the_svd_of_the_stored_states() -> None:
    app = _replay_app("saddle_to_saddle")
    seg = app.replay.final_segment
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*_keys("saddle_to_saddle", "singular"))
        await settle_views(pilot)
        res = _panel(app, "singular").result
        assert res.reason is None
        np.testing.assert_array_equal(res.data["t"], seg.t)
        p = seg.spec.offsets()
        for k in (0, len(seg) // 2, len(seg) - 1):
            th = seg.theta[k]
            w = [th[p[f"w{n}"]].reshape(seg.spec.shapes[f"w{n}"]) for n in (1, 2, 3)]
            want = np.linalg.svd(w[2] @ w[1] @ w[0], compute_uv=False)
            np.testing.assert_allclose(res.data["sv"][k], want, rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(res.data["teacher"], [3.0, 1.0, 0.3], rtol=1e-14)
        # The rank steps: at the first plateau (the cursor) no singular value has grown.
        assert res.data["cursor"] < 300 and res.data["sv"][-1][2] == pytest.approx(0.3, rel=1e-3)
        screen = app.screen
        _, j = screen.index[screen.position]
        assert np.all(res.data["sv"][j] < 1e-6)


LINEAR = {
    "seed": 5,
    "teacher": {
        "kind": "explicit",
        "input_dim": 2,
        "widths": [2],
        "activation": "identity",
        "bias": False,
        "output_dim": 2,
        "params": {"w1": [[2.0, 0.0], [0.0, 0.5]], "w2": [[1.0, 0.0], [0.0, 1.0]]},
    },
    "student": {"widths": [2], "activation": "identity", "bias": False, "init_scale": 0.01},
    "data": {"kind": "gaussian", "samples": 100},
    "dynamics": {"method": "flow", "solver": "tsit5", "t_max": 200.0, "max_seconds": 60},
    "refine": {"method": "none"},
}


@sync
async def test_live_run_views_show_the_current_point() -> None:
    """A live run of a linear d = 2 net: every view computed at the run's own θ and t."""
    from core import views
    from explorer.app import ExplorerApp

    app = ExplorerApp(config=parse_config(LINEAR, "linear"), show_clock=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await start_run(pilot, None)
        await pilot.press("5")
        await wait_for(pilot, lambda: screen.state == "done", "run finished", timeout=120)
        await settle_views(pilot)
        run, teacher = screen.run, screen.problem.teacher
        for view in ("function", "weights", "singular", "slice"):
            res = _panel(app, view).result
            assert res is not None and res.reason is None, (view, res)
            assert res.t == run.t
        fn = _panel(app, "function").result.data
        want = views.function_line(run.spec, run.theta, teacher)
        np.testing.assert_array_equal(fn["line"]["student"], want["student"])
        grid = views.function_grid(run.spec, run.theta, teacher)
        np.testing.assert_array_equal(fn["grid"]["diff"], grid["diff"])
        w = _panel(app, "weights").result.data
        np.testing.assert_array_equal(
            w["student"], views.weight_vectors(run.spec, run.theta, teacher)["student"]
        )
        sv = _panel(app, "singular").result.data
        t_hist, _ = run.trajectory()
        assert len(sv["t"]) == len(t_hist)
        np.testing.assert_allclose(sv["sv"][-1], views.singular_values(run.spec, run.theta)[0])
        # Learned the teacher's map (σ = 2, 0.5), the saddle-to-saddle way: σ₁ first.
        np.testing.assert_allclose(sv["sv"][-1], [2.0, 0.5], rtol=0.05)
        sl = _panel(app, "slice").result.data
        lam = np.linalg.eigvalsh(np.asarray(screen.objective.hessian(run.theta)))
        assert sl["lam_min"] == pytest.approx(lam[0], abs=1e-12)
        assert sl["lam_max"] == pytest.approx(lam[-1], rel=1e-12)


@sync
async def test_views_that_do_not_apply_say_why() -> None:
    from textual.widgets import Static

    app = _replay_app("copy_or_average")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        await settle_views(pilot)
        note = _panel(app, "weights").query_one(".view-note", Static)
        text = str(note.render())
        assert "weight view needs input_dim = 2 (this net has d = 4)" in text
        assert "weight space (6)" in text
        assert not _panel(app, "weights").query_one(".view-body").display
        sing = _panel(app, "singular").result.reason
        assert sing == "singular values need a linear network (this one has erf units)"
        # d = 4: the function view has its line but no f − g heatmap.
        fn = _panel(app, "function")
        assert fn.result.reason is None and "grid" not in fn.result.data


def test_class_regions_snapshot_monochrome_80x24(snap_compare, monkeypatch) -> None:
    """NO_COLOR: classes 1 2 3 and the × of disagreement are glyphs, not colours alone."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert _snapshot(snap_compare, "three_classes", ["5"], (80, 24))


async def _function_view_at_cursor(pilot):
    """Show the function view (key 5), views settled; the replayed segment and θ at the
    cursor."""
    await pilot.press("5")
    await settle_views(pilot)
    screen = pilot.app.screen
    s, j = screen.index[screen.position]
    seg = pilot.app.replay.segments[s]
    return seg, seg.theta[j]


def _marked_cells(rendered, start: int, rows: int, w: int) -> np.ndarray:
    """(rows, w) bool: the class map's cells drawn in CLASS_DISAGREE_STYLE; its body starts
    at character ``start`` of the render, rows of w cells and a newline."""
    from explorer.widgets.views import CLASS_DISAGREE_STYLE

    marked = np.zeros((rows, w), dtype=bool)
    for span in rendered.spans:
        if CLASS_DISAGREE_STYLE in str(span.style) and span.start < start + rows * (w + 1):
            row, col = divmod(span.start - start, w + 1)
            marked[row, col] = True
    return marked


def _screen_cells(grid_mask: np.ndarray, w: int, h: int) -> np.ndarray:
    """(h, w) top row first: the cells a class map of that size marks for ``grid_mask``
    (n, n), rows = y: each marked grid point's cell, and each cell whose nearest grid point
    is marked."""
    n = grid_mask.shape[0]
    out = np.zeros((h, w), dtype=bool)
    for iy, ix in zip(*np.nonzero(grid_mask), strict=True):
        out[h - 1 - min(iy * h // n, h - 1), min(ix * w // n, w - 1)] = True
    for a in range(h):
        for b in range(w):
            iy = round(a * (n - 1) / max(h - 1, 1))
            ix = round(b * (n - 1) / max(w - 1, 1))
            out[h - 1 - a, b] |= bool(grid_mask[iy, ix])
    return out


def test_class_rows_keep_a_single_wrong_grid_point_when_shrinking() -> None:
    from explorer.widgets.views import CLASS_DISAGREE_STYLE, class_rows

    student = np.zeros((41, 41), dtype=int)
    student[:, 21:] = 1  # class 2 on the right (x > 0)
    bad = np.zeros((41, 41), dtype=bool)
    bad[7, 13] = True  # one grid point, between the rows and columns nearest sampling keeps
    rows = class_rows(student, bad, 20, 10)
    assert len(rows) == 10 and all(len(r) == 20 for r in rows)
    assert {g for r in rows for g, _ in r} == {"1", "2"}
    assert [r[0][0] for r in rows] == ["1"] * 10 and [r[-1][0] for r in rows] == ["2"] * 10
    marked = np.array([[CLASS_DISAGREE_STYLE in st for _, st in r] for r in rows])
    assert marked.sum() == 1 and marked[10 - 1 - 7 * 10 // 41, 13 * 20 // 41]
    np.testing.assert_array_equal(marked, _screen_cells(bad, 20, 10))
    assert not any(
        CLASS_DISAGREE_STYLE in st for r in class_rows(student, None, 20, 10) for _, st in r
    )


@sync
async def test_softmax_function_view_shows_the_class_regions() -> None:
    """three_classes (softmax, d = 2): the class map holds core.views.class_regions at the
    replayed θ, draws the student's class digits, in reverse video where the teacher's differs,
    the f − g heatmap is hidden, and the line shows p = softmax(f) with the teacher's class."""
    from core.views import class_regions, function_line
    from explorer.widgets.views import ClassMap, SignHeatmap

    app = _replay_app("three_classes")
    async with app.run_test(size=(120, 40)) as pilot:
        seg, theta = await _function_view_at_cursor(pilot)
        teacher = app.screen.problem.teacher
        panel = _panel(app, "function")
        want = class_regions(seg.spec, theta, teacher)
        got = panel.result.data["classes"]
        np.testing.assert_array_equal(got["student"], want["student"])
        np.testing.assert_array_equal(got["disagree"], want["disagree"])
        assert "grid" not in panel.result.data
        assert not panel.query_one(SignHeatmap).display
        class_map = panel.query_one(ClassMap)
        assert class_map.display and class_map.region.area > 0
        rendered = class_map.render()
        text = rendered.plain
        body = text.splitlines()[1:-1]
        assert set("".join(body)) == {"1", "2", "3"}  # all three sectors, digits only
        # Top row is the largest y: the student's class 1 sector (the teacher's neuron 1
        # points at 90°).
        assert set(body[0]) == {"1"}
        # The end state misclassifies a thin band along the boundaries: in reverse video,
        # exactly the screen cells that hold a disagreeing grid point (recomputed here).
        assert 0 < 1 - want["agreement"] < 0.1
        w, h = class_map.content_size.width, class_map.content_size.height
        wrong = _screen_cells(want["disagree"], w, h - 2)
        marked = _marked_cells(rendered, len(text.splitlines()[0]) + 1, len(body), w)
        assert wrong.any() and np.array_equal(marked, wrong)
        assert f"≠teacher {1 - want['agreement']:.0%}," in text.splitlines()[0]
        assert text.splitlines()[-1].startswith("1 2 3 class")
        line = function_line(seg.spec, theta, teacher, probabilities=True)
        np.testing.assert_array_equal(panel.result.data["line"]["student"], line["student"])
        np.testing.assert_allclose(line["student"].sum(axis=1), 1.0, rtol=1e-12)
        note = str(panel.query_one(".view-note").render())
        assert "p₁" in note and "teacher's class" in note


#: A softmax student on a data file's own class labels (no teacher), d = 2, K = 3.
LABELS_CONFIG = """\
seed = 1

[student]
widths = [3]
activation = "softplus"
output = "softmax"
init_scale = 0.5

[data]
kind = "file"
path = "data.npz"
loss = "crossentropy"

[dynamics]
t_max = 20.0
n_saves = 10
max_seconds = 60

[refine]
method = "none"
"""


def labelled_session(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Run LABELS_CONFIG through the CLI on 120 points labelled by 120° sector:
    (session folder, x (120, 2), labels (120,))."""
    from explorer.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2))
    labels = (np.floor(np.degrees(np.arctan2(x[:, 1], x[:, 0])) % 360.0 / 120.0)).astype(int)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data.npz", x=x, y=labels)
    (folder / "c.toml").write_text(LABELS_CONFIG)
    out = folder / "run"
    assert main(["run", str(folder / "c.toml"), "--out", str(out), "--quiet"]) == 0
    return out, x, labels


@sync
async def test_class_map_without_a_teacher_marks_the_misclassified_training_points(
    tmp_path,
) -> None:
    """Data-file labels, no teacher: the class map compares with the labels — reverse video
    on the cells holding a misclassified training point, the training accuracy in the title."""
    from core.views import class_regions
    from explorer.app import ExplorerApp
    from explorer.widgets.views import ClassMap

    out, x, labels = labelled_session(tmp_path)
    app = ExplorerApp(replay=load_session(out))
    async with app.run_test(size=(120, 40)) as pilot:
        seg, theta = await _function_view_at_cursor(pilot)
        got = _panel(app, "function").result.data["classes"]
        want = class_regions(seg.spec, theta, None, points=x, labels=labels)
        assert got["teacher"] is None and got["disagree"] is None
        np.testing.assert_array_equal(got["labels"], labels)
        np.testing.assert_array_equal(got["wrong_cells"], want["wrong_cells"])
        assert 0 < want["accuracy"] < 1 and want["wrong_cells"].any()
        class_map = _panel(app, "function").query_one(ClassMap)
        rendered = class_map.render()
        lines = rendered.plain.splitlines()
        assert lines[0].startswith(f"train acc {want['accuracy']:.0%}")
        assert lines[-1].endswith("wrong label")
        w, h = class_map.content_size.width, class_map.content_size.height
        marked = _marked_cells(rendered, len(lines[0]) + 1, h - 2, w)
        np.testing.assert_array_equal(marked, _screen_cells(want["wrong_cells"], w, h - 2))


# ------------------------------------------------------------------ figures without the app


def test_heatmap_sign_is_in_the_glyph() -> None:
    from explorer.widgets.views import HEAT_NEG, HEAT_POS, HEAT_ZERO, heatmap_glyph

    assert heatmap_glyph(1.0, 1.0) == (HEAT_POS[2], "red")
    assert heatmap_glyph(-1.0, 1.0) == (HEAT_NEG[2], "blue")
    assert heatmap_glyph(0.3, 1.0)[0] == HEAT_POS[0]
    assert heatmap_glyph(-0.5, 1.0)[0] == HEAT_NEG[1]
    assert heatmap_glyph(0.1, 1.0)[0] == HEAT_ZERO == heatmap_glyph(-0.1, 1.0)[0]
    assert heatmap_glyph(float("nan"), 1.0)[0] == HEAT_ZERO
    assert set(HEAT_POS).isdisjoint(HEAT_NEG)


def test_sign_heatmap_text_orientation_and_rounding_floor() -> None:
    from explorer.widgets.views import SignHeatmap, heatmap_rows

    heat = SignHeatmap()
    g = np.ones((3, 3))
    diff = np.array([[-1.0, 0.0, 1.0]] * 2 + [[1.0, 1.0, 1.0]])  # last row = largest y
    heat.set_grid(diff, g, 3.0)
    assert heat.scale == 1.0
    rows = ["".join(c for c, _ in row) for row in heatmap_rows(diff, heat.scale, 3, 3)]
    assert rows == ["###", "≡·#", "≡·#"]  # largest y on top, x to the right
    assert len(heatmap_rows(diff, 1.0, 7, 5)) == 5
    # A rounding-level difference (|f − g| ≤ 1e-9 max|g|) draws as zero everywhere.
    heat.set_grid(1e-12 * diff, g, 3.0)
    assert heat.scale == 0.0


def test_figures_carry_glyphs_not_only_colour() -> None:
    """Each view's series differ by marker: the drawn text holds both kinds of glyph."""
    from rich.text import Text

    from explorer.widgets.views import ViewResult, render_view, singular_figure, slice_figure

    s = np.linspace(-1, 1, 41)
    res = ViewResult(
        "slice",
        1.0,
        {
            "s_min": s,
            "min": 1 - 0.5 * s**2,
            "s_max": 0.1 * s,
            "max": 1 + 50 * (0.1 * s) ** 2,
            "r_min": 1.0,
            "r_max": 0.1,
            "lam_min": -1.0,
            "lam_max": 100.0,
            "loss": 1.0,
        },
    )
    fig, legend = slice_figure(res)
    text = Text.from_ansi(render_view(fig, 60, 16)).plain
    assert "·" in text and any(0x2800 < ord(c) <= 0x28FF for c in text)
    assert "v_min" in legend and "v_max" in legend
    # Singular values: below 1e-3 of the largest drawn at that floor; title at the cursor.
    t = np.array([0.0, 1.0, 10.0, 100.0])
    sv = np.array([[1e-9, 1e-10], [1e-8, 1e-10], [2.0, 1e-9], [3.0, 1.0]])
    res = ViewResult("singular", 10.0, {"t": t, "sv": sv, "cursor": 10.0, "teacher": [3.0, 1.0]})
    fig, legend = singular_figure(res)
    lines = [x for x in fig.series if x.marker == "braille"]
    assert min(float(np.min(x.y)) for x in lines) == pytest.approx(3e-3)
    assert "t=10: 2, 1e-09" in fig.title
    assert fig.extra["vlines"] == [(10.0, "white")]
