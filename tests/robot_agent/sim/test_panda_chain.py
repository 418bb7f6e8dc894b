"""The sim IK's compiled chain (issue 13): ``panda_py.fk``'s kinematics, and the same damped
least squares as the numpy code it replaced (_reference_ik.py), up to floating-point noise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

panda_py = pytest.importorskip("panda_py")

from robot_agent.sim.arm import PANDA_JOINT_LIMITS  # noqa: E402
from robot_agent.sim.kinematics import solve_ik  # noqa: E402
from robot_agent.sim.panda_chain import forward, refine  # noqa: E402
from safety.rotations import matrix_to_quat, quat_to_rotvec  # noqa: E402
from tests.robot_agent.sim._reference_ik import refine_ik  # noqa: E402

LO, HI = PANDA_JOINT_LIMITS
# The forward-difference Jacobian (step 1e-6 rad) turns FK's 1e-16 noise into ~1e-10 per entry;
# over up to 30 iterations the answers were seen to differ by at most 6e-9 rad.
AGREEMENT_RAD = 1e-6

unit = arrays(np.float64, 7, elements=st.floats(-1.0, 1.0))
small = arrays(np.float64, 7, elements=st.floats(-0.08, 0.08))


def _within_limits(u: np.ndarray, margin: float = 0.05) -> np.ndarray:
    mid, half = (LO + HI) / 2, (HI - LO) / 2 - margin
    return mid + u * half


def _rotation_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(quat_to_rotvec(matrix_to_quat(a[:3, :3] @ b[:3, :3].T))))


@settings(max_examples=300, deadline=None)
@given(unit)
def test_forward_is_panda_py_fk(u: np.ndarray) -> None:
    q = _within_limits(u, 0.0)
    np.testing.assert_allclose(forward(q), panda_py.fk(q), rtol=0, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(unit, small)
def test_refine_agrees_with_the_numpy_reference_and_reaches_the_pose(u: np.ndarray, step: np.ndarray) -> None:
    seed = _within_limits(u)
    goal = np.clip(seed + step, LO, HI)  # a reachable pose a tick's step or a few away
    target = panda_py.fk(goal)
    new, old = refine(target, seed, LO, HI), refine_ik(target, seed, LO, HI)
    assert (new is None) == (old is None)
    if new is None:
        return
    np.testing.assert_allclose(new, old, rtol=0, atol=AGREEMENT_RAD)
    assert np.all(new >= LO) and np.all(new <= HI)
    reached = panda_py.fk(new)
    assert np.linalg.norm(reached[:3, 3] - target[:3, 3]) < 1e-4  # refine's own tolerances
    assert _rotation_error(target, reached) < 1e-3


@settings(max_examples=100, deadline=None)
@given(unit, small)
def test_solve_ik_reaches_the_pose_it_answers(u: np.ndarray, step: np.ndarray) -> None:
    seed = _within_limits(u)
    target = panda_py.fk(np.clip(seed + step, LO, HI))
    q, reason = solve_ik(target, seed, PANDA_JOINT_LIMITS)
    if q is None:  # near the limits some steps have no solution; the old refinement had none either
        assert refine_ik(target, seed, LO, HI) is None, reason
        return
    reached = panda_py.fk(q)
    assert np.linalg.norm(reached[:3, 3] - target[:3, 3]) < 1e-3
    assert _rotation_error(target, reached) < 1e-2


def test_refine_solves_small_steps_from_mid_range() -> None:
    """Not only refusals agree: from the middle of the joint band small steps are solved."""
    rng = np.random.default_rng(0)
    seed = (LO + HI) / 2
    for _ in range(50):
        target = panda_py.fk(seed + rng.uniform(-0.05, 0.05, 7))
        q = refine(target, seed, LO, HI)
        assert q is not None
        np.testing.assert_allclose(panda_py.fk(q)[:3, 3], target[:3, 3], rtol=0, atol=1e-4)


def test_refine_refuses_a_pose_out_of_reach() -> None:
    target = panda_py.fk(np.zeros(7))
    target[:3, 3] = (2.0, 0.0, 0.5)  # beyond the Panda's 0.855 m reach
    seed = (LO + HI) / 2
    assert refine(target, seed, LO, HI) is None
    assert refine_ik(target, seed, LO, HI) is None
