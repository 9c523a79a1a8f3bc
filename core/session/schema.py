"""The stored fields of meta.json: a schema for every record a reader uses, and the check.

Loading checks every record against these (:func:`check_fields`), so a loaded session can
be trusted; extra keys are kept as they are.  A failure is one :class:`SessionError`
naming the file and the field (``meta.json: report.final.loss: must be …, got …``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.files import short
from core.session.model import SessionError

#: Schemas of the JSON records of meta.json.  A schema is a kind name (below), a dict
#: ``{key: schema}`` (an object; a trailing ``!`` on the key marks it required) or a
#: one-element list ``[schema]`` (a list of such).  Kinds: ``num`` (finite number),
#: ``count`` (integer ≥ 0), ``seconds`` (number ≥ 0), ``int``, ``str``, ``bool``, ``obj``
#: (any object), ``list`` (any list), ``nums`` (list of numbers/null), ``ints``,
#: ``params`` (name → nested lists of numbers), ``str-map`` (name → string); ``?`` after
#: a kind also allows null (non-finite floats are stored as null).
SPECTRUM_SCHEMA = {"eigenvalues!": "nums", "index!": "count", "n_zero": "count", "tol": "num?"}
CHANNEL_SCHEMA = {
    "neurons!": "ints",
    "epsilon": "num?",
    "c": "num?",
    "A": "num?",
    "w": "nums",
    "delta": "nums",
    "glu_error": "num?",
    "activation": "str?",
}
NEURON_SCHEMA = {
    "index": "count",
    "w": "nums",
    "b": "num?",
    "a": "nums",
    "norm": "num?",
    "nearest_teacher": "int?",
    "cosine": "num?",
    "role": "str?",
}
POINT_SCHEMA = {
    "t": "num?",
    "loss!": "num?",
    "grad_inf_norm!": "num?",
    "params": "params",
    "rmse": "num?",  # core.problem.Problem.fit_metrics, beside the loss (format_report reads it)
    "accuracy": "num?",
}
#: What a refinement adds to a point (core.refine's result), in the report and meta.json.
REFINE_INFO_SCHEMA = {
    "iterations": "count?",
    "converged": "bool?",
    "reason": "str?",
    "method": "str?",
    "seconds": "num?",
}
REFINED_POINT_SCHEMA = {**POINT_SCHEMA, **REFINE_INFO_SCHEMA}
#: The landscape at a point (core.analysis.analyze), shared by the analysis and the report.
LANDSCAPE_SCHEMA = {
    "spectrum": SPECTRUM_SCHEMA,
    "classification": "str?",
    "channels": [CHANNEL_SCHEMA],
    "neurons": [NEURON_SCHEMA],
}
ANALYSIS_SCHEMA = {**LANDSCAPE_SCHEMA, "grad_inf_norm": "num?", "loss": "num?"}
REPORT_SCHEMA = {
    "final!": {**{k: v for k, v in POINT_SCHEMA.items() if k != "t"}, "t!": "num"},
    "refined": (REFINED_POINT_SCHEMA, "null"),
    **LANDSCAPE_SCHEMA,
    "teacher": {"kind": "str", "params": "params"},
    "wall_seconds": "seconds?",
    "stop_reason": "str?",
    "steps": "count?",
    "config": "obj",
    "partial": "bool",
    "phases": ["obj"],
    "analysed": {"point!": "str", "t": "num?", "note": "str"},
}
REFINED_SCHEMA = {
    "segment": "count",
    "t": "num?",
    "loss": "num?",
    "grad_inf_norm": "num?",
    **REFINE_INFO_SCHEMA,
}
EVENT_SCHEMA = {"kind!": "str", "t": "num?", "wall": "seconds?", "time": "str"}
SUMMARY_SCHEMA = {
    "steps": "count",
    "steps_offset": "count",
    "wall_seconds": "seconds",
    "stop_reason": "str?",
    "stop_message": "str?",
    "t_final": "num?",
    "final_loss": "num?",
    "final_grad_inf_norm": "num?",
    "refined_loss": "num?",
    "classification": "str?",
}

_KIND_TEXT = {
    "num": "a finite number",
    "count": "an integer ≥ 0",
    "seconds": "a number ≥ 0",
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "obj": "an object",
    "list": "a list",
    "nums": "a list of numbers",
    "ints": "a list of integers",
    "params": "an object of named (nested) lists of numbers",
    "str-map": "an object of strings",
    "null": "null",
}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    return _is_int(x) and abs(x) <= 2**1000  # an int that converts to a finite float


def _numeric_tree(x: Any) -> bool:
    if isinstance(x, list):
        return all(_numeric_tree(v) for v in x)
    return x is None or _is_num(x)


_KIND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "num": _is_num,
    "count": lambda x: _is_int(x) and x >= 0,
    "seconds": lambda x: _is_num(x) and x >= 0,
    "int": _is_int,
    "str": lambda x: isinstance(x, str),
    "bool": lambda x: isinstance(x, bool),
    "obj": lambda x: isinstance(x, dict),
    "list": lambda x: isinstance(x, list),
    "nums": lambda x: isinstance(x, list) and all(v is None or _is_num(v) for v in x),
    "ints": lambda x: isinstance(x, list) and all(_is_int(v) for v in x),
    "params": lambda x: (
        isinstance(x, dict) and all(isinstance(v, list) and _numeric_tree(v) for v in x.values())
    ),
    "str-map": lambda x: isinstance(x, dict) and all(isinstance(v, str) for v in x.values()),
    "null": lambda x: x is None,
}


def _matches(value: Any, schema: Any) -> bool:
    """Whether ``value`` has the top-level shape of ``schema`` (not its members)."""
    if isinstance(schema, tuple):
        return any(_matches(value, s) for s in schema)
    if isinstance(schema, dict):
        return isinstance(value, dict)
    if isinstance(schema, list):
        return isinstance(value, list)
    if schema.endswith("?"):
        return value is None or _KIND_CHECKS[schema[:-1]](value)
    return _KIND_CHECKS[schema](value)


def _describe(schema: Any) -> str:
    if isinstance(schema, tuple):
        return " or ".join(_describe(s) for s in schema)
    if isinstance(schema, dict):
        return "an object"
    if isinstance(schema, list):
        return "a list"
    if schema.endswith("?"):
        return f"{_KIND_TEXT[schema[:-1]]} or null"
    return _KIND_TEXT[schema]


def check_fields(
    value: Any, schema: Any, name: str, where: Path, *, nullable: bool = False
) -> None:
    """Raise :class:`SessionError` (``where: name.field: must be …, got …``) unless
    ``value`` follows ``schema`` (see :data:`REPORT_SCHEMA`); ``nullable`` allows None."""
    if nullable and value is None:
        return
    if not _matches(value, schema):
        got = short(json.dumps(value) if _is_num(value) or value is None else repr(value))
        raise SessionError(where, f"{name}: must be {_describe(schema)}, got {got}")
    if isinstance(schema, tuple):
        for s in schema:
            if _matches(value, s):
                check_fields(value, s, name, where)
                return
    elif isinstance(schema, list):
        for i, item in enumerate(value):
            check_fields(item, schema[0], f"{name}[{i}]", where)
    elif isinstance(schema, dict):
        for name_key, sub in schema.items():
            key = name_key.rstrip("!")
            required = name_key.endswith("!")
            if key not in value:
                if required:
                    raise SessionError(where, f"{name}.{key}: missing")
                continue
            check_fields(value[key], sub, f"{name}.{key}", where)
