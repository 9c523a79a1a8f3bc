"""Headless runs: config → problem → dynamics → refinement → analysis → session.

:func:`run_config` is what ``explorer run`` and the sweep runner call.  It

1. builds the :class:`~core.problem.Problem` (or continues a saved session with ``resume``),
2. iterates the flow-to-fixed-point driver :class:`core.fixed_point.FixedPointRun`,
   appending each chunk to a :class:`~core.session.SessionRecorder` and autosaving at
   least every 10 s, with Hessian spectra at the deterministic log-spaced times of
   :class:`core.spectra.SpectrumSchedule`; the driver hands over to refinement once the
   flow is in a minimum's basin, else refines the flow's end state (unless
   ``refine.method = "none"``),
3. records that refinement (``refined``, a "refine" event) in :func:`finish`,
4. analyses the refined (else final) point (:func:`core.analysis.analyze`),
5. writes the report of DESIGN.md into the session and saves it atomically.

SIGTERM / SIGHUP / SIGINT (in the main thread) stop the run between chunks: the
session is flushed with an "interrupted" event, then :class:`RunInterrupted` is raised.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from core import interrupts
from core.config import Config, ConfigError, DynamicsConfig, DynamicsFields, config_to_dict
from core.networks import NetworkSpec, params_to_lists
from core.problem import Problem, build_problem
from core.session import (
    Session,
    SessionError,
    SessionRecorder,
    check_writable_target,
    jsonable,
    load_session,
)

AUTOSAVE_SECONDS = 10.0
_HANDLED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name)
)


class RunInterrupted(Exception):
    """The run was stopped by a signal after the session was flushed to ``path``."""

    def __init__(self, signum: int, path: Path) -> None:
        self.signum = signum
        self.path = path
        super().__init__(f"{path}: interrupted by {signal.Signals(signum).name}; session saved")

    @property
    def exit_code(self) -> int:
        """Shell convention 128 + signal number."""
        return 128 + int(self.signum)


def dynamics_settings(dyn: DynamicsConfig, n_params: int | None = None):
    """:class:`core.flow.DynamicsSettings` from the ``[dynamics]`` table.

    ``tauinv`` is dropped when its length no longer matches ``n_params`` (after surgery).
    """
    from core.flow import DynamicsSettings

    tauinv = dyn.tauinv
    if tauinv is not None and n_params is not None and len(tauinv) != n_params:
        tauinv = None
    shared = {f.name: getattr(dyn, f.name) for f in fields(DynamicsFields)}
    return DynamicsSettings(**{**shared, "tauinv": tauinv})


@contextmanager
def _stop_on_signals() -> Iterator[dict]:
    """Within the block, SIGTERM/SIGHUP/SIGINT set ``flag["signum"]`` instead of killing us.

    A second signal restores the default behaviour (so a stuck run can still be killed).
    Only the main thread can install handlers; elsewhere this is a no-op.
    """
    flag: dict[str, Any] = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in _HANDLED_SIGNALS}

    def handler(signum, frame):
        if flag["signum"] is not None:  # second signal: give up gracefully-stopping
            signal.signal(signum, previous.get(signum) or signal.SIG_DFL)
            raise KeyboardInterrupt
        flag["signum"] = signum

    for s in _HANDLED_SIGNALS:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def _compatible_for_resume(config: Config, session: Session) -> str | None:
    """Why ``config`` cannot continue ``session`` (problem-defining tables differ), or None."""
    a, b = config_to_dict(config), config_to_dict(session.config)
    for key in ("seed", "teacher", "student", "data"):
        if a[key] != b[key]:
            return f"the config's {key} differs from the session's"
    if (config.dynamics.maxnorm, config.dynamics.method) != (
        session.config.dynamics.maxnorm,
        session.config.dynamics.method,
    ):
        return "dynamics.method / dynamics.maxnorm differ from the session's"
    return None


def run_config(
    config: Config,
    out_dir: str | Path,
    progress: Callable[[Any], None] | None = None,
    resume: str | Path | None = None,
    from_t: float | None = None,
) -> Path:
    """Run ``config`` headless and save the session to ``out_dir``; return its path.

    Args:
        config: a validated config.
        out_dir: session folder to write (absent, empty, or an existing session — which is
            replaced atomically; anything else is refused before any work).
        progress: called with every :class:`core.flow.Chunk` as it arrives.
        resume: a session folder to continue from its last state to ``dynamics.t_max``
            (its seed/teacher/student/data must equal the config's).
        from_t: with ``resume``, branch instead: continue from the last saved state at or
            before this time (:func:`core.branch.branch_session`; the new session keeps the
            source's record up to there, and says where it came from).

    Raises:
        ConfigError / SessionError: before anything is written.
        RunInterrupted: after flushing the session, on SIGTERM/SIGHUP/SIGINT.
    """
    from core.fixed_point import FixedPointRun

    out = Path(out_dir)
    check_writable_target(out)
    problem = build_problem(config)
    if resume is not None:
        session = load_session(resume)
        if from_t is not None:
            from core.branch import branch_session

            try:
                session = branch_session(session, from_t, source=resume)
            except ValueError as e:
                raise ConfigError(str(resume), None, str(e)) from None
        why = _compatible_for_resume(config, session)
        if why:
            raise ConfigError(config.source, "resume", f"cannot resume {resume}: {why}")
        rec = SessionRecorder.from_session(session, autosave_seconds=AUTOSAVE_SECONDS)
        rec.config = config
        rec.summary["steps_offset"] = int(session.summary.get("steps", 0))
        for key in ("stop_reason", "stop_message"):
            rec.summary.pop(key, None)
        spec = session.final_spec
        theta, t0 = session.final_theta, session.final_t
        rec.add_event("resume" if from_t is None else "branch", t=t0, source=str(resume))
    else:
        rec = SessionRecorder(config, problem.spec, autosave_seconds=AUTOSAVE_SECONDS)
        spec, theta, t0 = problem.spec, problem.theta0, 0.0
    objective = problem.objective_for(spec)
    settings = dynamics_settings(config.dynamics, spec.n_params)
    loss0, grad0 = objective.value_and_grad(theta)  # the starting state, checked and kept
    loss0, gnorm0 = float(loss0), float(np.max(np.abs(np.asarray(grad0))))
    if not (np.isfinite(loss0) and np.isfinite(gnorm0)):
        raise SessionError(
            resume if resume is not None else config.source,
            f"the loss or gradient at the starting state (t = {t0:g}) is not finite; "
            "nothing written",
        )
    if resume is None:  # θ₀ in the early save: a run killed from now on still loads
        rec.append([t0], np.asarray(theta)[None], [loss0], [gnorm0])
    interrupts.on_signal(lambda signum: _flush_interrupted(rec, out, signum))
    rec.save(out)  # an early, valid session: the folder is ours from now on

    from core.flow import save_grid
    from core.spectra import SpectrumSchedule

    snapshots = SpectrumSchedule(objective, save_grid(settings), t0=t0)
    with _stop_on_signals() as flag:
        gen = FixedPointRun(
            objective, theta, settings, t0=t0, seed=config.seed, method=config.refine.method,
            gtol=config.refine.gtol, max_iter=config.refine.max_iter,
        )  # fmt: skip
        try:
            for chunk in gen:
                rec.append_chunk(chunk)
                for t_snap, spectrum in snapshots.spectra(chunk):
                    rec.add_spectrum(t_snap, spectrum.eigenvalues, "trajectory")
                if progress is not None:
                    progress(chunk)
                if flag["signum"] is not None:
                    break
                if not chunk.done:
                    rec.autosave(out)
        except KeyboardInterrupt:
            flag["signum"] = flag["signum"] or signal.SIGINT
        finally:
            gen.close()
        if flag["signum"] is not None:
            signum = int(flag["signum"])
            _flush_interrupted(rec, out, signum)
            interrupts.on_signal(None)
            raise RunInterrupted(signum, out)

        try:
            finish(problem, rec, spec, gen.result)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
            # e.g. a non-finite Hessian at a huge state: the trajectory is still kept
            rec.add_event("finish", error=f"{type(e).__name__}: {e}")
            rec.save(out)
            interrupts.on_signal(None)
            raise SessionError(
                out,
                f"analysis of the final state failed ({type(e).__name__}: {e}); "
                "the trajectory is saved",
            ) from None
        rec.save(out)
    interrupts.on_signal(None)
    return out


def _flush_interrupted(rec: SessionRecorder, out: Path, signum: int) -> str:
    """Save ``rec`` to ``out`` marked interrupted by ``signum`` (once; later calls only
    save again); returns the one-line message for the user."""
    with rec._lock:
        if rec.summary.get("stop_reason") != "interrupted":
            rec.summary["stop_reason"] = "interrupted"
            rec.add_event("interrupted", signal=signal.Signals(signum).name)
        rec.save(out)
    return f"interrupted: session saved to {out}"


def finish(problem: Problem, rec: SessionRecorder, spec: NetworkSpec, fixed: Any = None) -> None:
    """Record the refinement, analyse and write the report into ``rec``.

    ``fixed`` is the :class:`core.fixed_point.FixedPointResult` of the run: its
    refinement (the hand-over during the flow, or the one after it) becomes the report's
    ``refined`` and a "refine" event; None (or ``refine.method = "none"``) records none.
    """
    from core.analysis import analyze, hessian_spectrum

    config = problem.config
    objective = problem.objective_for(spec)
    seg = rec.to_session().final_segment
    t_final, theta_final = float(seg.t[-1]), seg.theta[-1]
    final = {
        "t": t_final,
        "loss": float(seg.loss[-1]),
        "grad_inf_norm": float(seg.grad_norm[-1]),
        "params": params_to_lists(spec, theta_final),
    }
    from core.manifold import spectrum_hessian

    rec.add_spectrum(
        t_final, hessian_spectrum(spectrum_hessian(objective, theta_final)).eigenvalues, "final"
    )

    refined = None
    point = theta_final
    if fixed is not None and fixed.error is not None:  # the session stays usable
        rec.add_event("refine", t=fixed.t, method=config.refine.method, error=fixed.error)
    elif fixed is not None and fixed.refine is not None:
        r = fixed.refine
        refined = {
            "t": t_final,
            "loss": float(r.loss),
            "grad_inf_norm": float(r.grad_inf_norm),
            "params": params_to_lists(spec, r.theta),
            "iterations": int(r.iterations),
            "converged": bool(r.converged),
            "reason": r.reason,
            "method": r.method,
            "handed_over": bool(fixed.handed_over),
            "attempts": int(fixed.refine_attempts),
            "seconds": round(float(fixed.refine_seconds), 6),
        }
        rec.set_refined(r.theta, **{k: v for k, v in refined.items() if k != "params"})
        rec.add_event(
            "refine",
            t=fixed.t,
            method=r.method,
            converged=bool(r.converged),
            iterations=int(r.iterations),
            grad_inf_norm=float(r.grad_inf_norm),
            handed_over=bool(fixed.handed_over),
        )
        if np.all(np.isfinite(r.theta)):
            point = np.asarray(r.theta)

    x = None if problem.data is None else problem.data.x
    analysis = analyze(objective, point, problem.teacher, x)
    rec.analysis = jsonable(analysis.to_json())
    if refined is not None:
        rec.add_spectrum(t_final, analysis.spectrum.eigenvalues, "refined")
    rec.summary.update(
        {
            "t_final": t_final,
            "final_loss": final["loss"],
            "final_grad_inf_norm": final["grad_inf_norm"],
            "refined_loss": None if refined is None else refined["loss"],
            "classification": analysis.classification,
        }
    )
    rec.report = make_report(
        problem, final, refined, rec.analysis, rec.elapsed(), rec.summary, spec=spec
    )
    rec.report["analysed"] = analysed_point(final, refined if point is not theta_final else None)
    rec.report["phases"] = _phases_json(rec.to_session())
    rec.summary["wall_seconds"] = rec.report["wall_seconds"]


def _with_fit(problem: Problem, point: dict | None, spec: NetworkSpec | None) -> dict | None:
    """``point`` (final / refined) with :meth:`Problem.fit_metrics` (rmse or accuracy) after
    its loss; unchanged when its parameters do not fit ``spec`` (default: the problem's)."""
    if point is None or "params" not in point:
        return point
    from core.networks import flatten

    try:
        theta = np.asarray(flatten(spec or problem.spec, point["params"]))
    except ValueError:  # e.g. after surgery, when the caller did not say the spec
        return point
    fit = problem.fit_metrics(spec or problem.spec, theta)
    out: dict = {}
    for key, value in point.items():
        out[key] = value
        if key == "loss":
            out.update(fit)
    return out if "loss" in point else {**point, **fit}


def make_report(
    problem: Problem,
    final: dict,
    refined: dict | None,
    analysis: dict,
    wall_seconds: float,
    summary: dict | None = None,
    spec: NetworkSpec | None = None,
) -> dict:
    """The report of DESIGN.md ("Report", contract) as plain JSON data.

    ``final`` and ``refined`` gain ``rmse`` (or, for cross-entropy, ``accuracy``) after
    their ``loss`` (:meth:`core.problem.Problem.fit_metrics`; ``spec``: of their params).
    """
    teacher = problem.teacher
    teacher_json: dict[str, Any] = {"kind": teacher.kind}
    if teacher.spec is not None and teacher.theta is not None:
        teacher_json["params"] = params_to_lists(teacher.spec, np.asarray(teacher.theta))
    summary = summary or {}
    return jsonable(
        {
            "final": _with_fit(problem, final, spec),
            "refined": _with_fit(problem, refined, spec),
            "spectrum": analysis["spectrum"],
            "classification": analysis["classification"],
            "channels": analysis["channels"],
            "neurons": analysis["neurons"],
            "teacher": teacher_json,
            "wall_seconds": round(float(wall_seconds), 6),
            "stop_reason": summary.get("stop_reason"),
            "steps": summary.get("steps"),
            "config": config_to_dict(problem.config),
        }
    )


def session_report(session: Session) -> dict:
    """The report of a session: the stored one, or (interrupted run) one computed now.

    A computed report analyses the last state (and the stored refined point, if any)
    without refining; it is marked ``"partial": true``.
    """
    if session.report is not None:
        report = dict(session.report)
        if "phases" not in report:  # saved before phases existed
            report["phases"] = _phases_json(session)
        return _with_provenance(report, session)
    from core.analysis import analyze

    try:
        problem = build_problem(session.config)
    except ConfigError as e:
        raise SessionError(session.path or "<session>", f"config: {e.field}: {e.message}") from None
    seg = session.final_segment
    objective = problem.objective_for(seg.spec)
    final = {
        "t": float(seg.t[-1]),
        "loss": float(seg.loss[-1]),
        "grad_inf_norm": float(seg.grad_norm[-1]),
        "params": params_to_lists(seg.spec, seg.theta[-1]),
    }
    point, refined = seg.theta[-1], None
    last = len(session.segments) - 1
    info = session.refined or {}
    # A refinement of an earlier state (the flow went on after it: refine, then resume)
    # is not this point: the report then describes the final state alone.
    current = info.get("t") is None or info["t"] >= final["t"] * (1 - 1e-12)
    stale = session.refined_theta is not None and not current
    if session.refined_theta is not None and info.get("segment") == last and current:
        point = session.refined_theta
        loss, grad = objective.value_and_grad(point)
        refined = {
            **{k: v for k, v in session.refined.items() if k != "segment"},
            "loss": float(loss),
            "grad_inf_norm": float(np.max(np.abs(np.asarray(grad)))),
            "params": params_to_lists(seg.spec, point),
        }
    x = None if problem.data is None else problem.data.x
    analysis = jsonable(analyze(objective, point, problem.teacher, x).to_json())
    report = make_report(
        problem, final, refined, analysis, session.wall_seconds, session.summary, spec=seg.spec
    )
    report["phases"] = _phases_json(session)
    report["partial"] = True
    report["analysed"] = analysed_point(final, refined)
    if stale:
        report["analysed"]["note"] = (
            f"the refinement at t = {info['t']:.6g} is of an earlier state (the flow went on "
            "after it); this report analyses the final state"
        )
    return _with_provenance(report, session)


def _with_provenance(report: dict, session: Session) -> dict:
    """The report with ``branched_from`` ({"session", "t", …}) when the session is a branch
    of another (``core.branch``; stored in its summary), so a report says where it came from."""
    source = (session.summary or {}).get("branched_from")
    if source is not None and "branched_from" not in report:
        report["branched_from"] = source
    return report


def analysed_point(final: dict, refined: dict | None) -> dict:
    """The report's ``analysed``: which point its spectrum, classification, channels and
    neurons describe — ``{"point": "refined" | "final", "t": …}``."""
    if refined is not None:
        return {"point": "refined", "t": refined.get("t", final["t"])}
    return {"point": "final", "t": final["t"]}


def _phases_json(session: Session) -> list[dict]:
    """The report's ``phases``: :func:`core.phases.session_phases` as plain JSON."""
    from core.phases import session_phases

    return jsonable([p.to_json() for p in session_phases(session)])
