"""Spectra along a run (core.spectra): the same simulated times headless, live, paused and
resumed, and under any machine load; the symmetry-saddle plateau's negative λmin shows live."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from core.config import load_config, parse_config
from core.spectra import (
    FULL_RATE_MAX_PARAMS,
    SPECTRA_PER_DECADE,
    SpectrumSchedule,
    spectra_per_decade,
    spectrum_times,
)

PRESETS = Path(__file__).resolve().parents[1] / "explorer" / "presets"


def test_times_are_grid_points_about_ten_per_decade() -> None:
    grid = np.geomspace(1e-2, 1e6, 200)
    times = spectrum_times(grid, 9)
    assert np.all(np.isin(times, grid))
    ratios = times[1:] / times[:-1]
    assert np.all(ratios >= 10 ** (1 / SPECTRA_PER_DECADE) * (1 - 1e-12))
    per_decade = (len(times) - 1) / 8.0  # 8 decades
    # The grid step (10^(8/199) ≈ 1.097) rounds the ratio 10^0.1 up to 1.097³ = 1.32:
    # between 7 and 10 per decade.
    assert 7 <= per_decade <= SPECTRA_PER_DECADE


def test_rate_falls_like_one_over_p_squared_above_the_full_rate() -> None:
    assert spectra_per_decade(FULL_RATE_MAX_PARAMS) == SPECTRA_PER_DECADE
    assert spectra_per_decade(2 * FULL_RATE_MAX_PARAMS) == pytest.approx(SPECTRA_PER_DECADE / 4)
    assert spectra_per_decade(100 * FULL_RATE_MAX_PARAMS) == 1.0
    grid = np.geomspace(1e-2, 1e6, 400)
    assert len(spectrum_times(grid, 4 * FULL_RATE_MAX_PARAMS)) < len(spectrum_times(grid, 9)) / 4


class _Rows:
    def __init__(self, t, theta):
        self.t, self.theta = np.asarray(t, float), np.asarray(theta, float)


class _Quadratic:
    """L = ½ θᵀ diag(d) θ: its Hessian is diag(d) everywhere."""

    n_params = 3

    def hessian(self, theta):
        return np.diag([-1.0, 2.0, 3.0])


def test_schedule_ignores_off_grid_rows_and_chunking() -> None:
    grid = np.geomspace(1e-2, 1e2, 41)
    times = spectrum_times(grid, 3)
    rows_t = np.concatenate([[0.0], grid])
    # Off-grid progress rows (their number depends on load) between grid points.
    noisy = np.sort(np.concatenate([rows_t, 0.5 * (grid[:-1] + grid[1:])]))
    theta = np.zeros((len(noisy), 3))

    def taken(chunks):
        s = SpectrumSchedule(_Quadratic(), grid)
        return [t for c in chunks for t, _ in s.due(c)]

    one = taken([_Rows(noisy, theta)])
    split = np.array_split(np.arange(len(noisy)), 7)
    many = taken([_Rows(noisy[i], theta[i]) for i in split])
    assert one == many == [0.0, *times.tolist()]
    # A stretch resumed at t0 takes exactly the uninterrupted run's times after t0.
    t0 = float(grid[17])
    s = SpectrumSchedule(_Quadratic(), grid, t0=t0)
    later = noisy > t0
    assert [t for t, _ in s.due(_Rows(noisy[later], theta[later]))] == [t for t in one if t > t0]
    spectra = list(SpectrumSchedule(_Quadratic(), grid).spectra(_Rows(grid[:1], theta[:1])))
    assert spectra[0][1].index == 1 and spectra[0][1].eigenvalues.tolist() == [-1.0, 2.0, 3.0]


def _headless_and_live(config, tmp_path: Path, slow_clock: bool = False):
    """Spectra of a headless run and of the live worker driven as the app drives it."""
    from core.problem import build_problem
    from core.runner import dynamics_settings, run_config
    from core.session import load_session
    from explorer.messages import ChunkArrived, SpectrumArrived
    from explorer.worker import stream_flow

    tmp_path.mkdir(parents=True, exist_ok=True)
    session = load_session(run_config(config, tmp_path / "headless"))
    headless = [(s.t, s.eigenvalues) for s in session.spectra if s.label == "trajectory"]

    problem = build_problem(config)
    settings = dynamics_settings(config.dynamics, problem.spec.n_params)
    posted: list = []
    stream_flow(
        problem.objective,
        problem.theta0,
        settings,
        t0=0.0,
        seed=config.seed,
        segment=1,
        post=posted.append,
        cancelled=lambda: False,
    )
    live = [(m.t, m.spectrum.eigenvalues) for m in posted if isinstance(m, SpectrumArrived)]
    chunks = sum(isinstance(m, ChunkArrived) for m in posted)
    return headless, live, chunks


def test_live_worker_records_the_headless_spectra(tmp_path: Path, tiny_config_path) -> None:
    config = load_config(tiny_config_path)
    headless, live, _ = _headless_and_live(config, tmp_path)
    assert len(headless) >= 20  # t = 0 plus ≈ 10 per decade over 1e-2 … 1e2
    # The live worker adds the final state (the headless runner records it as "final").
    assert [t for t, _ in live[: len(headless)]] == [t for t, _ in headless]
    for (_, a), (_, b) in zip(headless, live, strict=False):
        np.testing.assert_array_equal(a, b)


def test_spectra_do_not_depend_on_machine_load(tmp_path: Path, monkeypatch, tiny_config_path):
    """A wall clock running 50× fast makes every chunk look slow (more, shorter chunks
    with off-grid progress rows): the spectra's times and values stay the same."""
    import core.flow.driver

    config = load_config(tiny_config_path)
    fast, _, chunks_fast = _headless_and_live(config, tmp_path / "a")
    real = core.flow.driver._clock
    start = real()
    monkeypatch.setattr(core.flow.driver, "_clock", lambda: start + 50 * (real() - start))
    slow, _, chunks_slow = _headless_and_live(config, tmp_path / "b")
    assert chunks_slow > chunks_fast  # the fast clock did change the chunking
    assert [t for t, _ in fast] == [t for t, _ in slow]
    for (_, a), (_, b) in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)


def test_symmetry_saddle_live_run_shows_negative_lambda_min_on_the_plateau() -> None:
    """The preset run in the app (ctrl+r): recorded spectra along the plateau have
    λmin ≈ −0.010 (the saddle's escape direction) until the escape, then λmin ≥ −tol."""
    from explorer.app import ExplorerApp
    from explorer.screens.run import RunScreen

    config = load_config(PRESETS / "symmetry_saddle.toml")
    mapping_t_max = 1e4  # the escape happens at t ≈ 300; 1e4 covers plateau and descent
    config = parse_config(
        {
            **_as_mapping(config),
            "dynamics": {**_as_mapping(config)["dynamics"], "t_max": mapping_t_max},
        },
        "symmetry_saddle",
    )
    app = ExplorerApp(config=config, show_clock=False)

    async def scenario() -> RunScreen:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("ctrl+r")
            start = time.monotonic()
            while not (isinstance(app.screen, RunScreen) and app.screen.state == "done"):
                assert time.monotonic() - start < 120, "the run did not finish"
                await pilot.pause(0.1)
            return app.screen

    screen = asyncio.run(scenario())
    run = screen.run
    t, lam_min = np.asarray(run.spec_t), np.asarray(run.spec_min)
    on_plateau = (t > 1) & (t < 100)
    assert on_plateau.sum() >= 15  # ≈ 10 per decade over two decades
    assert np.all(lam_min[on_plateau] < -0.005)
    assert np.all(lam_min[on_plateau] > -0.02)
    late = t > 3e3
    assert late.any() and np.all(lam_min[late] > -1e-8)
    # The recorder (what `s` saves) holds the same spectra as the plot.
    rec_t = [s.t for s in screen.recorder.spectra]
    assert rec_t == run.spec_t


def _as_mapping(config):
    from core.config import config_to_dict

    return config_to_dict(config)
