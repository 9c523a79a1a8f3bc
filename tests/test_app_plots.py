"""The plot thinning that keeps figures cheap: nothing a terminal can show is lost."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.widgets.plots import envelope_indices


def reference_envelope(x: np.ndarray, y: np.ndarray, n_bins: int) -> set[int]:
    """Per column (loop, no vectorisation): first, last, first argmin, first argmax."""
    lo, hi = x.min(), x.max()
    keep: set[int] = set()
    for b in range(n_bins):
        if hi > lo:
            col = np.minimum(((x - lo) / (hi - lo) * n_bins).astype(int), n_bins - 1)
        else:
            col = np.zeros(len(x), dtype=int)
        members = np.flatnonzero(col == b)
        if members.size:
            keep |= {
                int(members[0]),
                int(members[-1]),
                int(members[np.argmin(y[members])]),
                int(members[np.argmax(y[members])]),
            }
    return keep


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 400),
    n_bins=st.integers(1, 30),
    seed=st.integers(0, 2**31 - 1),
    sorted_x=st.booleans(),
)
def test_envelope_keeps_each_columns_ends_and_extremes(m, n_bins, seed, sorted_x) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=m)
    if sorted_x:
        x = np.sort(x)
    y = np.round(rng.normal(size=m), 1)  # ties on purpose
    keep = envelope_indices(x, y, n_bins)
    assert np.all(np.diff(keep) > 0), "sorted, no duplicates"
    if m <= 4 * n_bins:
        np.testing.assert_array_equal(keep, np.arange(m))
        return
    assert set(keep.tolist()) == reference_envelope(x, y, n_bins)
    assert len(keep) <= 4 * n_bins
    # What the eye sees per column — its y range — is unchanged.
    col = np.minimum(((x - x.min()) / (np.ptp(x) or 1) * n_bins).astype(int), n_bins - 1)
    for b in np.unique(col):
        sel = keep[col[keep] == b]
        assert y[sel].min() == y[col == b].min() and y[sel].max() == y[col == b].max()


def test_envelope_of_a_long_trajectory_is_small() -> None:
    t = np.log10(np.logspace(-3, 6, 100_000))
    keep = envelope_indices(t, np.exp(-t), 120)
    assert len(keep) <= 480 and keep[0] == 0 and keep[-1] == len(t) - 1
