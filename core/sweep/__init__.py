"""Sweeps: one base config, a grid of overrides, one run (session) per grid point.

* :mod:`core.sweep.spec` — the sweep file and its expansion (parse, grid, run names);
* :mod:`core.sweep.results` — outcomes, summary rows, the per-setting table, CSV files;
* :mod:`core.sweep.atlas` — the distinct critical points of a sweep's runs
  (``atlas.csv``), identified modulo the network's symmetries (:mod:`core.symmetry`);
* :mod:`core.sweep.execute` — execution on dask.distributed (restartable).

The names below are the public API (``from core.sweep import …``).
"""

from core.sweep.execute import (
    LOCKS_DIR,
    ClusterOptions,
    SweepEvent,
    SweepResult,
    execute_run,
    make_cluster,
    run_sweep,
    write_summaries,
)
from core.sweep.results import (
    OUTCOMES,
    RUN_COLUMNS,
    SETTINGS_CSV,
    SUMMARY_CSV,
    ZERO_LOSS,
    csv_text,
    finished_session,
    outcome,
    read_summary_csv,
    run_columns,
    run_row,
    same_config,
    setting_columns,
    settings_table_text,
    summarize,
    write_text_atomic,
)
from core.sweep.spec import (
    CONFIG_KEYS,
    MAX_NAME,
    MAX_RUNS,
    SEED_KEY,
    SWEEP_KEYS,
    Sweep,
    SweepError,
    SweepRun,
    expand_grid,
    flatten_grid,
    load_sweep,
    parse_sweep,
    run_name,
    run_names,
    set_dotted,
)

__all__ = [
    "CONFIG_KEYS",
    "LOCKS_DIR",
    "MAX_NAME",
    "MAX_RUNS",
    "OUTCOMES",
    "RUN_COLUMNS",
    "SEED_KEY",
    "SETTINGS_CSV",
    "SUMMARY_CSV",
    "SWEEP_KEYS",
    "ZERO_LOSS",
    "ClusterOptions",
    "Sweep",
    "SweepError",
    "SweepEvent",
    "SweepResult",
    "SweepRun",
    "csv_text",
    "execute_run",
    "expand_grid",
    "finished_session",
    "flatten_grid",
    "load_sweep",
    "make_cluster",
    "outcome",
    "parse_sweep",
    "read_summary_csv",
    "run_columns",
    "run_name",
    "run_names",
    "run_row",
    "run_sweep",
    "same_config",
    "set_dotted",
    "setting_columns",
    "settings_table_text",
    "summarize",
    "write_summaries",
    "write_text_atomic",
]
