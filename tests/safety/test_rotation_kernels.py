"""The compiled rotation kernels compute what safety.rotations computes, bit for bit.

``safety/rotation_kernels.py`` redoes the shield's quaternion maths on scalars (compiled by numba
when installed); numpy's functions are the oracle. Every result is compared as bytes (the sign of
a zero included), compiled and interpreted (numba absent), on random and on awkward inputs.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import SafetyConfig, compiled, rotation_kernels
from safety import rotations as r
from safety.config import tool_tilt

from ._helpers import interpreted_kernels
from ._shield_reference import Shield, _angle  # the numpy shield of 22fbb8f: the twins' oracle

FUSED = compiled.NUMPY_DOT_FUSED

unit = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)
# Quaternions with exact zeros, signed zeros and exact ties among their components.
component = st.one_of(unit, st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0]))
quats = st.tuples(component, component, component, component).filter(lambda q: sum(v * v for v in q) > 1e-6)
vectors = st.tuples(*[st.floats(-4.0, 4.0, allow_nan=False)] * 3)


@pytest.fixture(params=["compiled", "interpreted"])
def k(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> object:
    """``rotation_kernels``, its functions compiled, or all of them (and the dot products) as
    plain Python."""
    if request.param == "interpreted":
        interpreted_kernels(monkeypatch, rotation_kernels, compiled)
    return rotation_kernels


def bits(x: Iterable[float] | float) -> bytes:
    values = [x] if isinstance(x, float) else list(x)
    return struct.pack(f"{len(values)}d", *(float(v) for v in values))


def test_fma_rounds_once() -> None:
    # 1 + 2^-52 squared is 1 + 2^-51 + 2^-104: minus 1 - 2^-51, only a fused multiply-add keeps 2^-104.
    a = 1.0 + 2.0**-52
    c = -(1.0 + 2.0**-51)
    for fma in (compiled.fma, compiled._fma_exact):
        assert fma(a, a, c) == 2.0**-104
        assert fma(1e308, 10.0, -1e308) == math.inf  # the exact value overflows
        assert fma(1e308, 10.0, -math.inf) == -math.inf  # a finite product plus -inf
        assert math.isnan(fma(math.inf, 0.0, 1.0))
        assert bits(fma(-1.0, 0.0, 0.0)) == bits(0.0) and bits(fma(-1.0, 0.0, -0.0)) == bits(-0.0)


@settings(max_examples=300, deadline=None)
@given(a=st.floats(allow_nan=False, width=64), b=st.floats(allow_nan=False), c=st.floats(allow_nan=False))
def test_compiled_and_exact_fma_agree(a: float, b: float, c: float) -> None:
    got, want = compiled.fma(a, b, c), compiled._fma_exact(a, b, c)
    assert bits(got) == bits(want) or (math.isnan(got) and math.isnan(want))


@settings(max_examples=300, deadline=None)
@given(x=quats, y=quats)
def test_dot_products_round_as_numpy_does(x: tuple[float, ...], y: tuple[float, ...]) -> None:
    for dot3, dot4 in ((compiled.dot3, compiled.dot4), (compiled._dot3, compiled._dot4)):
        assert bits(dot4(FUSED, *x, *y)) == bits(np.array(x).dot(np.array(y)))
        assert bits(dot3(FUSED, *x[:3], *y[:3])) == bits(np.array(x[:3]).dot(np.array(y[:3])))


def test_numpy_dot_rounding_is_known() -> None:
    """The probe agrees with numpy on vectors whose fused and plain dot products differ."""
    a, c = 1.0 + 2.0**-52, -(1.0 + 2.0**-51)
    x, y = np.array([1.0, a, 0.0]), np.array([c, a, 0.0])
    fused, plain = 2.0**-104, 0.0  # c + a * a rounded once, and with a * a rounded first
    assert compiled._dot3(True, *x, *y) == fused and compiled._dot3(False, *x, *y) == plain
    assert float(x.dot(y)) == (fused if FUSED else plain)


@settings(max_examples=200, deadline=None)
@given(tool=st.lists(st.tuples(unit, unit, unit), min_size=1, max_size=14), q=quats)
def test_matrix_products_round_as_numpy_does(
    tool: list[tuple[float, float, float]], q: tuple[float, ...]
) -> None:
    """The tool's offsets of Zones.project_tool, ``tool @ quat_to_matrix(q).T``: element by
    element :func:`safety.compiled.dot3`, rounded as matmul_rounding says for that shape."""
    fused = compiled.matmul_rounding(len(tool))
    t, m = np.array(tool), r.quat_to_matrix(np.array(q))
    want = t @ m.T
    if fused is None:
        return  # a shape whose rounding the kernel does not know: Zones takes numpy's offsets
    for i, row in enumerate(tool):
        for j in range(3):
            assert bits(compiled.dot3(fused, *row, *m[j])) == bits(want[i, j])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=quats, ref=quats, t=st.floats(0.0, 1.0), v=vectors)
def test_quaternion_kernels_match_safety_rotations(
    k: object, q: tuple[float, ...], ref: tuple[float, ...], t: float, v: tuple[float, ...]
) -> None:
    kr = rotation_kernels
    qa, ra, va = np.array(q), np.array(ref), np.array(v)
    assert bits(kr.q_normalize(FUSED, *q)) == bits(r.quat_normalize(qa))
    assert bits(kr.q_mul(*q, *ref)) == bits(r.quat_multiply(qa, ra))
    assert bits(kr.q_to_rotvec(FUSED, *q)) == bits(r.quat_to_rotvec(qa))
    assert bits(kr.rotvec_to_q(FUSED, *v)) == bits(r.rotvec_to_quat(va))
    rel = r.quat_to_rotvec(r.quat_multiply(qa, r.quat_conjugate(ra)))
    assert bits(kr.q_rel_rotvec(FUSED, *q, *ref)) == bits(rel)
    assert bits(kr.q_nearest(FUSED, *q, *ref)) == bits(r.quat_nearest(qa, ra))
    assert bits(kr.q_slerp(FUSED, *q, *ref, t)) == bits(r.quat_slerp(qa, ra, t))
    assert bits(kr.q_axis_z(FUSED, *q)) == bits(r.quat_to_matrix(qa)[:, 2])
    assert bits(kr.q_matrix(FUSED, *q)) == bits(r.quat_to_matrix(qa).ravel())
    unit_q, unit_ref = r.quat_normalize(qa), r.quat_normalize(ra)
    assert bits(kr.q_angle_bound(FUSED, *unit_q, *unit_ref)) == bits(_angle(unit_q, unit_ref))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nominal=quats, q=quats, max_tilt=st.floats(0.0, 1.0))
def test_tilt_kernels_match_the_shield(
    k: object, nominal: tuple[float, ...], q: tuple[float, ...], max_tilt: float
) -> None:
    na, qa = r.quat_normalize(np.array(nominal)), np.array(q)  # the config takes unit ones
    nominal = tuple(na.tolist())
    axis = r.quat_to_matrix(na)[:, 2]
    tilt = rotation_kernels.tool_tilt_q(FUSED, *axis, *q)
    assert bits(tilt) == bits(tool_tilt(na, qa))
    shield = Shield(SafetyConfig.from_mapping({"orientation": {"nominal_quaternion": list(nominal)}}))
    want = shield._untilt(qa, tilt, max_tilt)
    assert bits(rotation_kernels.q_untilt(FUSED, *axis, *q, tilt, max_tilt)) == bits(want)


def test_untilt_pointing_exactly_away_from_nominal(k: object) -> None:
    """The tool axis opposite the nominal one: any perpendicular axis, as the shield picks it."""
    for nominal in ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), (0.0, 1.0, 0.0, 0.0)):
        na = np.array(nominal)
        flipped = r.quat_multiply(r.rotvec_to_quat(np.array([math.pi, 0.0, 0.0])), na)
        axis = r.quat_to_matrix(na)[:, 2]
        shield = Shield(SafetyConfig.from_mapping({"orientation": {"nominal_quaternion": list(nominal)}}))
        tilt = tool_tilt(na, flipped)
        want = shield._untilt(flipped, tilt, 0.3)
        assert bits(rotation_kernels.q_untilt(FUSED, *axis, *flipped, tilt, 0.3)) == bits(want)
