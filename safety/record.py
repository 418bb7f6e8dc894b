"""One control tick as a record: the one step-record type of vla-deploy.

The agent's control loop builds one per tick and publishes it (``robot_agent.events.Tick``); the
recorder writes it as a line of ``steps.jsonl`` (:meth:`StepRecord.to_json`); :func:`safety.verify_trace`
reads those lines back (:meth:`StepRecord.from_json`) and checks every safe command against the
limits. Tests of the shield build them from its decisions (:meth:`StepRecord.from_decision`).
Pure numpy, like the rest of ``safety``.

A ``steps.jsonl`` line (a JSON object; every number finite or ``null``, JSON has no NaN)::

    {"time": 12.5,
     "measured": {"time": 12.499, "joints": [7 x rad], "ee": [x, y, z, qx, qy, qz, qw], "gripper": 1.0},
     "raw": {"time": 12.5, "gripper": 1.0, "ee": [7 numbers]} or {..., "joints": [...]} or null,
     "safe": the same shape as "raw", or null,
     "fired": ["velocity"], "holding": false, "hold_reason": null, "plan_end": 12.9}

``measured`` is null when the read failed; a target carries ``ee`` or ``joints`` (the one it has).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from safety.jsonable import json_number as _number
from safety.types import Decision, Measured, Pose, Target

__all__ = ["StepRecord"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One tick at ``time_s`` (agent ``time.monotonic()`` seconds).

    ``measured``: the state read this tick (None when the read failed); ``raw``: the target the
    plan asked for (None: nothing valid for now); ``safe``: what the shield let through and the
    driver was sent (None: held, or e-stopped; a record built from a shield's hold decision
    carries the hold's command, the measured state at rest); ``fired``: the shield rules that
    changed or refused the target; ``holding`` and ``hold_reason``
    (:data:`robot_agent.reasons.HOLD_REASONS`); ``plan_end``: when the plan in hand runs out
    (None: no plan).

    ``dt_s``: the period the shield was given for this tick, when it is not the time since the
    previous record (None, as in the agent's records, whose control loop passes exactly that);
    written as ``"dt"`` only when set.
    """

    time_s: float
    measured: Measured | None
    raw: Target | None
    safe: Target | None
    fired: tuple[str, ...]
    holding: bool
    hold_reason: str | None = None
    plan_end: float | None = None
    dt_s: float | None = None

    @classmethod
    def from_decision(
        cls,
        decision: Decision,
        time_s: float,
        dt_s: float | None = None,
        *,
        measured: Measured | None = None,
        raw: Target | None = None,
    ) -> StepRecord:
        """The record of one :meth:`safety.Shield.filter` call at ``time_s`` with ``dt_s``: its
        target as ``safe`` (on a hold, the command at rest), ``holding`` as the decision's."""
        return cls(
            time_s=float(time_s),
            measured=measured,
            raw=raw,
            safe=decision.target,
            fired=tuple(decision.fired),
            holding=bool(decision.hold),
            dt_s=None if dt_s is None else float(dt_s),
        )

    def to_json(self) -> dict[str, Any]:
        """This record as the JSON object of a ``steps.jsonl`` line (see the module docstring):
        plain lists and floats, every non-finite number as None."""
        out: dict[str, Any] = {
            "time": _number(self.time_s),
            "measured": None
            if self.measured is None
            else {
                "time": _number(self.measured.time_s),
                "joints": _numbers(self.measured.joints),
                "ee": _numbers(self.measured.ee.position, self.measured.ee.quaternion),
                "gripper": _number(self.measured.gripper),
            },
            "raw": _target_json(self.raw),
            "safe": _target_json(self.safe),
            "fired": list(self.fired),
            "holding": bool(self.holding),
            "hold_reason": self.hold_reason,
            "plan_end": None if self.plan_end is None else _number(self.plan_end),
        }
        if self.dt_s is not None:
            out["dt"] = _number(self.dt_s)
        return out

    @classmethod
    def from_json(cls, line: Mapping[str, Any] | str) -> StepRecord:
        """A ``steps.jsonl`` line (its text, or the parsed object) back to a record; ``null``
        numbers become NaN (``null`` gripper of a target: None). Only ``time`` is required.

        Raises ValueError naming what is missing or malformed.
        """
        data: Any = json.loads(line) if isinstance(line, str) else line
        if not isinstance(data, Mapping) or "time" not in data:
            raise ValueError(f"a steps.jsonl line is an object with a 'time', got {_short(data)}")
        try:
            measured = data.get("measured")
            dt = data.get("dt")
            plan_end = data.get("plan_end")
            return cls(
                time_s=_float(data["time"]),
                measured=None if measured is None else _measured_of(measured),
                raw=_target_of(data.get("raw")),
                safe=_target_of(data.get("safe")),
                fired=tuple(str(k) for k in data.get("fired") or ()),
                holding=bool(data.get("holding", False)),
                hold_reason=data.get("hold_reason"),
                plan_end=None if plan_end is None else _float(plan_end),
                dt_s=None if dt is None else _float(dt),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed steps.jsonl line ({exc!r}): {_short(data)}") from exc


def _numbers(*arrays: Any) -> list[float | None]:
    return [_number(x) for a in arrays for x in np.asarray(a, dtype=float).ravel().tolist()]


def _target_json(target: Target | None) -> dict[str, Any] | None:
    if target is None:
        return None
    out: dict[str, Any] = {"time": _number(target.time_s), "gripper": _number(target.gripper)}
    if target.ee is not None:
        out["ee"] = _numbers(target.ee.position, target.ee.quaternion)
    if target.joints is not None:
        out["joints"] = _numbers(target.joints)
    return out


def _float(value: Any) -> float:
    """A JSON number; ``null`` (a non-finite number written out) is NaN."""
    return math.nan if value is None else float(value)


def _array(values: Sequence[Any]) -> np.ndarray:
    return np.array([_float(v) for v in values], dtype=float)


def _pose(values: Sequence[Any]) -> Pose:
    ee = _array(values)
    return Pose(position=ee[:3], quaternion=ee[3:])


def _measured_of(m: Mapping[str, Any]) -> Measured:
    return Measured(
        time_s=_float(m.get("time")),
        ee=_pose(m["ee"]),
        joints=_array(m["joints"]),
        gripper=_float(m.get("gripper")),
    )


def _target_of(t: Mapping[str, Any] | None) -> Target | None:
    if t is None:
        return None
    ee, joints, gripper = t.get("ee"), t.get("joints"), t.get("gripper")
    return Target(
        time_s=_float(t.get("time")),
        ee=None if ee is None else _pose(ee),
        joints=None if joints is None else _array(joints),
        gripper=None if gripper is None else float(gripper),
    )


def _short(data: Any, limit: int = 120) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[: limit - 3] + "..."
