"""Command line of the landscape explorer (DESIGN.md "CLI", contract).

    explorer [CONFIG]                          the Textual app (default config, or CONFIG)
    explorer run CONFIG --out DIR [--resume DIR [--from-t T]] [--force]
                                               headless run → session folder DIR (an
                                               existing session there is replaced only
                                               with --force, or continued with --resume)
    explorer replay DIR                        the app, replaying a saved session; or, when
                                               DIR is a sweep's --out folder (summary.csv),
                                               the sweep view (Enter replays a run)
    explorer report DIR [--json]               the report of a session (JSON with --json)
    explorer export DIR --csv OUT              loss curve, spectra, neuron trajectories as CSV
    explorer plot DIR --out FILE [--view NAME] a figure (.png/.svg/.pdf) of a session
    explorer sweep SWEEP --out DIR             a grid of runs (see core.sweep)
    explorer compare CONFIG --out DIR [--methods gd,sgd,adam] [--lr LR] [--t-max T] [--force]
                                               the run of ``run`` plus the flow against
                                               GD/SGD/Adam from the same θ₀ (loss and
                                               ‖θ_m(t) − θ_flow(t)‖ over t, core.compare),
                                               recorded in the session

``export``'s OUT is a folder (created if absent; must not hold other files) that
receives ``loss.csv``, ``spectrum.csv`` and ``neurons.csv``; or, when OUT ends in
``.csv``, the loss curve is written to OUT and the others beside it as
``<stem>_spectrum.csv`` and ``<stem>_neurons.csv``.  Existing files are never overwritten.

Errors print one line naming the file/field and the problem on stderr and exit with
code 2, having written nothing.  An interrupted ``run`` (SIGTERM/SIGHUP/Ctrl-C) saves
its session first and exits with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUBCOMMANDS = ("run", "replay", "report", "export", "plot", "sweep", "compare")
EXIT_USAGE = 2


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


# ----------------------------------------------------------------------------- parsers


def _app_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="explorer",
        description="Gradient flows, exact critical points and loss landscapes of small MLPs.",
        epilog="Subcommands: " + ", ".join(SUBCOMMANDS) + " (explorer SUBCOMMAND -h).",
    )
    p.add_argument("config", nargs="?", help="config TOML to open (default: built-in example)")
    return p


def _sub_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="explorer")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a config headless and save a session")
    r.add_argument("config", help="config TOML")
    r.add_argument("--out", required=True, help="session folder to write")
    r.add_argument("--resume", help="session folder to continue from")
    r.add_argument(
        "--from-t",
        type=float,
        metavar="T",
        help="with --resume: branch from the session's last saved state at or before t = T "
        "(a new session, recording its source and T)",
    )
    r.add_argument("--force", action="store_true", help="replace a session already in --out")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    rp = sub.add_parser(
        "replay",
        help="replay a saved session in the app, or browse a sweep's runs",
        description="Replay a saved session folder in the app.  Given a sweep's output "
        "folder (explorer sweep … --out DIR, holding summary.csv), open the sweep view: "
        "a table of its runs, sortable by outcome/loss/wall time, Enter replays one.",
    )
    rp.add_argument("session", help="session folder, or a sweep's --out folder")
    rep = sub.add_parser("report", help="print a session's report")
    rep.add_argument("session", help="session folder")
    rep.add_argument("--json", action="store_true", help="the full JSON report")
    ex = sub.add_parser("export", help="export a session as CSV")
    ex.add_argument("session", help="session folder")
    ex.add_argument("--csv", required=True, help="output folder, or a .csv file name")
    pl = sub.add_parser(
        "plot",
        help="write a publication figure of a session (.png, .svg or .pdf)",
        description="Write a figure of a saved session with matplotlib; the format comes "
        "from FILE's extension (.png, .svg, .pdf).  The default view shows loss and "
        "‖∇L‖∞, the Hessian spectrum and the weights against t, with phases and "
        "events marked; --view picks another (function, weights, singular, slice).",
    )
    pl.add_argument("session", help="session folder")
    pl.add_argument(
        "--out", required=True, metavar="FILE", help="figure file to write (.png, .svg, .pdf)"
    )
    pl.add_argument(
        "--view",
        default="overview",
        metavar="NAME",
        help="overview (default), function, weights, singular, slice",
    )
    pl.add_argument(
        "--t",
        type=float,
        help="the saved state nearest this time: drawn by function/weights/slice, a cursor "
        "in overview/singular (default: the final state)",
    )
    pl.add_argument("--force", action="store_true", help="overwrite an existing FILE")
    sw = sub.add_parser("sweep", help="run a grid of configs (on dask.distributed)")
    sw.add_argument("sweep", help="sweep TOML")
    sw.add_argument("--out", required=True, help="output folder")
    sw.add_argument("--workers", type=int, help="local cluster worker processes (default: cores)")
    sw.add_argument("--scheduler", help="address of an existing Dask scheduler, tcp://host:port")
    sw.add_argument("--jobqueue", choices=("slurm", "pbs"), help="submit workers as batch jobs")
    sw.add_argument("--queue", help="batch queue / partition (--jobqueue)")
    sw.add_argument("--account", help="batch account / project (--jobqueue)")
    sw.add_argument("--walltime", help="job walltime, e.g. 02:00:00 (--jobqueue)")
    sw.add_argument("--cores", type=int, help="cores (= worker processes) per job (--jobqueue)")
    sw.add_argument("--memory", help="memory per job, e.g. 8GB (--jobqueue)")
    sw.add_argument("--jobs", type=int, help="number of batch jobs (--jobqueue)")
    sw.add_argument("--retries", type=int, default=1, help="extra attempts for a failing run")
    sw.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    cp = sub.add_parser(
        "compare",
        help="flow vs gd/sgd/adam from one initial point, recorded in a session",
        description="Run CONFIG as `explorer run` does, then run the gradient flow and each "
        "discrete method from the same θ₀ on the time axis t = k·lr, and record their loss "
        "and their distance ‖θ_method(t) − θ_flow(t)‖ to the flow in the session "
        "(`explorer replay DIR`: the compare tab).",
    )
    cp.add_argument("config", help="config TOML")
    cp.add_argument("--out", required=True, help="session folder to write")
    cp.add_argument(
        "--methods",
        help="comma-separated gd,sgd,adam (default: gd,adam, and sgd with a finite data set)",
    )
    cp.add_argument("--lr", type=float, help="learning rate (default: dynamics.lr)")
    cp.add_argument("--t-max", type=float, help="horizon (default: dynamics.t_max)")
    cp.add_argument("--force", action="store_true", help="replace a session already in --out")
    cp.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    def error(message: str) -> None:
        raise CliError(f"{parser.prog}: {message}")

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in action.choices.values():
                sp.error = error  # type: ignore[method-assign]
    return parser.parse_args(list(argv))


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``explorer`` console script; returns the exit code."""
    console = argv is None  # the real process (not a test calling main in-process)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            args = _parse(_sub_parser(), argv)
            if console and args.command == "run":
                from core import interrupts  # before JAX: SIGTERM/SIGHUP exit cleanly

                interrupts.install()
            return _COMMANDS[args.command](args)
        args = _parse(_app_parser(), argv)
        return cmd_app(args)
    except CliError as e:
        return _fail(str(e))
    except Exception as e:
        # ConfigError / SessionError: one line naming the file and field.
        from core.config import ConfigError
        from core.session import SessionError

        if isinstance(e, ConfigError | SessionError):
            return _fail(str(e))
        raise


def _fail(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


# ----------------------------------------------------------------------------- commands


def cmd_app(args: argparse.Namespace) -> int:
    import core  # noqa: F401  (float64 before anything else)
    from core.config import default_config, load_config

    cfg = load_config(args.config) if args.config else default_config()
    from explorer.app import ExplorerApp

    ExplorerApp(config=cfg, config_path=Path(args.config) if args.config else None).run()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import core  # noqa: F401
    from core.config import load_config
    from core.runner import RunInterrupted, run_config
    from core.session import check_writable_target, load_session

    if args.from_t is not None and not args.resume:
        raise CliError("--from-t needs --resume SESSION (the session to branch from)")
    cfg = load_config(args.config)
    out = Path(args.out)
    check_writable_target(out)
    continuing = args.resume and args.from_t is None  # a branch is a new session
    if is_nonempty_dir(out) and not (args.force or continuing):
        raise CliError(
            f"{out}: already holds a session; refusing to replace it "
            "(--force replaces it, --resume continues it)"
        )
    if args.resume:
        load_session(args.resume)  # validate before any work
    bar = None if args.quiet else _progress_bar(cfg.dynamics.t_max)
    try:
        path = run_config(cfg, out, progress=bar, resume=args.resume, from_t=args.from_t)
    except RunInterrupted as e:
        if bar:
            bar.close()
        print(f"interrupted: session saved to {e.path}", file=sys.stderr)
        return e.exit_code
    if bar:
        bar.close()
    from core.export import closing_summary

    summary = load_session(path).summary
    print(f"saved {path}  ({closing_summary(summary)})", file=sys.stderr)
    return 0


def replay_app(folder: str | Path) -> Any:
    """The app for ``explorer replay DIR``: the sweep view when DIR is a sweep's output
    folder (holds ``summary.csv`` and is not itself a session), else the replay screen
    on the session in DIR (raises :class:`core.session.SessionError` if it is none)."""
    import core  # noqa: F401
    from core.session import is_session_dir, load_session
    from core.sweep import SUMMARY_CSV
    from explorer.app import ExplorerApp

    folder = Path(folder)
    if not is_session_dir(folder) and (folder / SUMMARY_CSV).is_file():
        return ExplorerApp(sweep=folder)
    return ExplorerApp(replay=load_session(folder))


def cmd_replay(args: argparse.Namespace) -> int:
    replay_app(args.session).run()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import core  # noqa: F401
    from core.runner import session_report
    from core.session import load_session

    session = load_session(args.session)
    report = session_report(session)
    if args.json:
        json.dump(report, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        from core.export import format_report

        sys.stdout.write(format_report(report))
        if session.comparison is not None:
            from core.compare import comparison_summary

            lines = comparison_summary(session.comparison)
            sys.stdout.write("comparison (same θ₀, t = k·lr):\n  " + "\n  ".join(lines) + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """:func:`core.export.write_session_csv` (all files or none, nothing overwritten)."""
    import core  # noqa: F401
    from core.export import ExportError, write_session_csv
    from core.session import load_session

    session = load_session(args.session)
    try:
        paths = write_session_csv(session, args.csv)
    except ExportError as e:
        raise CliError(str(e)) from None
    print(" ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Write a figure of a session; matplotlib is imported only here (start-up stays fast)."""
    import core  # noqa: F401
    from core.session import load_session
    from explorer.figures import FigureError, check_target, write_figure

    try:
        check_target(args.out, force=args.force)  # before loading: fail fast, write nothing
        session = load_session(args.session)
        path = write_figure(session, args.out, args.view, force=args.force, t=args.t)
    except FigureError as e:
        raise CliError(str(e)) from None
    print(path, file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a sweep; print the per-setting table.  Exit 0, or 1 if some run failed
    (their rows in summary.csv say why; rerunning retries them), 130 on Ctrl-C."""
    import core  # noqa: F401
    from core.sweep import ClusterOptions, run_sweep, settings_table_text

    names = ("scheduler", "jobqueue", "workers", "queue", "account", "walltime", "cores")
    options = ClusterOptions(**{k: getattr(args, k) for k in (*names, "memory", "jobs")})
    options.check()
    if args.retries < 0:
        raise CliError(f"--retries: must be ≥ 0, got {args.retries}")

    def progress(event: Any) -> None:
        row = event.row
        detail = row.get("error") if event.kind == "failed" else sweep_loss_text(row)
        print(
            f"[{event.done}/{event.total}] {event.kind:7s} {event.run.name}: "
            f"{row.get('outcome')} ({detail})",
            file=sys.stderr,
            flush=True,
        )

    try:
        result = run_sweep(
            args.sweep,
            args.out,
            options,
            retries=args.retries,
            progress=None if args.quiet else progress,
        )
    except KeyboardInterrupt:
        print(f"interrupted: finished runs are kept in {args.out}; rerun", file=sys.stderr)
        return 130
    sys.stdout.write(settings_table_text(result.settings, result.sweep.setting_keys))
    print(
        f"{result.out}: {result.executed} run, {result.skipped} already done, "
        f"{len(result.failed)} failed; summary.csv, settings.csv, "
        f"atlas.csv ({len(result.atlas)} distinct critical points)",
        file=sys.stderr,
    )
    return 1 if result.failed else 0


def cmd_compare(args: argparse.Namespace) -> int:
    """`run`, then :func:`core.compare.compare_config` stored in the session."""
    import core  # noqa: F401
    from core.compare import check_methods, compare_config, comparison_summary
    from core.config import load_config, with_overrides
    from core.runner import run_config
    from core.session import check_writable_target, load_session, save_session

    cfg = load_config(args.config)
    overrides = {k: v for k, v in (("t_max", args.t_max), ("lr", args.lr)) if v is not None}
    if overrides:
        cfg = with_overrides(cfg, dynamics=overrides)
    has_data = cfg.data.kind != "gaussian-infinite"
    methods = None
    if args.methods is not None:
        names = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        try:
            methods = check_methods(names, has_data=has_data)
        except ValueError as e:
            raise CliError(f"--methods: {str(e).removeprefix('compare.methods: ')}") from None
    out = Path(args.out)
    check_writable_target(out)  # missing parents are made when saving
    if is_nonempty_dir(out) and not args.force:
        raise CliError(f"{out}: already holds a session; refusing to replace it (--force)")
    bar = None if args.quiet else _progress_bar(cfg.dynamics.t_max)
    path = run_config(cfg, out, progress=bar)
    if bar:
        bar.close()
    try:
        comparison = compare_config(cfg, methods)
    except ValueError as e:
        raise CliError(str(e)) from None
    session = load_session(path)
    session.comparison = comparison
    save_session(path, session)
    for line in comparison_summary(comparison):
        print(line, file=sys.stderr)
    print(f"saved {path} (with the comparison: {', '.join(comparison.methods)})", file=sys.stderr)
    return 0


def is_nonempty_dir(path: Path) -> bool:
    """Whether ``path`` (through a link) is a folder holding anything."""
    from core.session import session_target

    target = session_target(path)
    return target.is_dir() and any(target.iterdir())


def sweep_loss_text(row: dict) -> str:
    """The losses of a summary.csv row in the sweep table's words: the analysed point's
    (what the outcome is judged on) and, when refinement moved it, the flow's final one."""

    def g(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3e}"

    text = f"analysed_loss {g(row.get('analysed_loss'))}"
    if row.get("refined_loss") is not None:
        text += f", final_loss {g(row.get('final_loss'))}"
    return text


def _progress_bar(t_max: float) -> Any:
    from explorer.progress import ProgressBar

    return ProgressBar(t_max, sys.stderr)


_COMMANDS = {
    "compare": cmd_compare,
    "run": cmd_run,
    "replay": cmd_replay,
    "report": cmd_report,
    "export": cmd_export,
    "plot": cmd_plot,
    "sweep": cmd_sweep,
}
