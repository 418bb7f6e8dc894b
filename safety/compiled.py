"""Compile small scalar kernels with numba when it is installed: the one place that decides how.

Used by the shield's motion filter (``safety/motion.py``), its rotation maths
(``safety/rotation_kernels.py``) and the simulated Panda's kinematics
(``robot_agent/sim/panda_chain.py``). Kernels are plain loops over float64 scalars; numba removes
numpy's per-call cost, which dominates on 3- to 7-element arrays (``bench/shield_cost.py``).

Kernels give the same bits as the numpy code they replace. Element-wise numpy arithmetic rounds
each operation, as a kernel does (no fastmath, so no contraction). ``ndarray.dot`` does not:
numpy hands 1-D dot products to its BLAS, whose loop may fuse each multiply-add (OpenBLAS's
Haswell kernels do: one rounding per term, on this project's machines). :func:`dot3` and
:func:`dot4` reproduce it, told by :data:`NUMPY_DOT_FUSED` (probed at import) which way it rounds; :func:`matmul_rounding`
says the same of a small matrix product, per shape.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any, TypeVar, cast

import numpy as np

__all__ = ["NUMPY_DOT_FUSED", "dot3", "dot4", "fma", "jit", "matmul_rounding"]

_F = TypeVar("_F", bound=Callable[..., Any])


def jit(fn: _F) -> _F:
    """``fn`` compiled by numba (``vla-deploy[agent]`` installs it), else ``fn`` itself.

    No fastmath (IEEE arithmetic, no contraction), so compiled and interpreted kernels give the
    same bits. ``error_model="numpy"``: a division by zero gives inf or nan, as numpy does, and
    never raises. ``cache=True`` keeps the compiled code beside the module, so only the first
    import on a machine pays the compile; without a writable cache directory (a read-only
    install) each process compiles instead.
    """
    try:
        import numba
    except ImportError:  # safety is imported by the server too, which does not need speed here
        return fn
    try:
        return cast(_F, numba.njit(cache=True, error_model="numpy")(fn))
    except RuntimeError:  # no writable cache directory: compile per process
        return cast(_F, numba.njit(error_model="numpy")(fn))


def _fma_exact(a: float, b: float, c: float) -> float:
    """``a * b + c`` rounded once (IEEE 754 fusedMultiplyAdd), in plain Python: exact rationals
    for finite operands (Python 3.11 has no ``math.fma``)."""
    if math.isfinite(a) and math.isfinite(b):
        if not math.isfinite(c):
            return c  # a finite product plus inf (or nan) is that inf (or nan)
        exact = Fraction(a) * Fraction(b) + Fraction(c)
        if exact == 0:  # IEEE: -0.0 only for a product and an addend that are both -0.0
            return a * b + c if a == 0.0 or b == 0.0 else 0.0
        try:
            return float(exact)
        except OverflowError:
            return math.inf if exact > 0 else -math.inf
    return a * b + c  # an infinite or nan factor: the unfused result is the fused one


def _compiled_fma() -> Callable[[float, float, float], float] | None:
    """A numba function for the CPU's fused multiply-add (llvm.fma), or None without numba."""
    try:
        import numba
        from numba import types
        from numba.extending import intrinsic
    except ImportError:
        return None
    if getattr(numba.config, "DISABLE_JIT", False):  # the kernels run as Python: so does fma
        return None

    @intrinsic
    def _llvm_fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
        sig = types.float64(types.float64, types.float64, types.float64)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.fma(args[0], args[1], args[2])

        return sig, codegen

    def fused(a: float, b: float, c: float) -> float:
        return _llvm_fma(a, b, c)  # type: ignore[call-arg]  # numba adds the typing context

    fused.__doc__ = _fma_exact.__doc__
    return cast(Callable[[float, float, float], float], numba.njit(error_model="numpy")(fused))


#: ``fma(a, b, c)``: ``a * b + c`` with one rounding; compiled, or exact rationals interpreted.
fma: Callable[[float, float, float], float] = _compiled_fma() or _fma_exact


def _probe_numpy_dot() -> bool:
    """Whether ``ndarray.dot`` of 3- and 4-vectors fuses each multiply-add (True) or rounds the
    products and the sums (False), read off vectors whose two roundings differ."""
    rng = np.random.default_rng(13)
    fused_votes = plain_votes = 0
    while fused_votes + plain_votes < 8:
        x, y = rng.normal(size=(2, 4))
        n = 3 + (fused_votes + plain_votes) % 2
        a, b = x[:n].tolist(), y[:n].tolist()
        f = p = 0.0
        for u, v in zip(a, b, strict=True):
            f = _fma_exact(u, v, f)
            p = p + u * v
        if f == p:
            continue
        got = float(x[:n].dot(y[:n]))
        fused_votes += got == f
        plain_votes += got == p
        if got not in (f, p):
            return False  # neither: the kernels round as plain numpy arithmetic would
    return fused_votes > 0 and plain_votes == 0


@functools.cache  # a property of this process's numpy: probed once per shape
def matmul_rounding(rows: int) -> bool | None:
    """How numpy rounds ``a @ b.T`` for ``a`` of shape ``(rows, 3)`` and ``b`` of ``(3, 3)``
    (``Zones.project_tool``'s offsets): True if each element is :func:`dot3` with fused
    multiply-adds, False if without, None if neither (numpy's BLAS may take another path for
    some shapes: one row is a matrix-vector product here, and rounds otherwise)."""
    rng = np.random.default_rng(17)
    for fused in (True, False):
        for _ in range(8):
            a, b = rng.normal(size=(rows, 3)), rng.normal(size=(3, 3))
            got = (a @ b.T).tolist()
            want = [
                [_dot3_exact(fused, *a[i].tolist(), *b[j].tolist()) for j in range(3)] for i in range(rows)
            ]
            if got != want:
                break
        else:
            return fused
    return None


def _dot3_exact(fused: bool, ax: float, ay: float, az: float, bx: float, by: float, bz: float) -> float:
    if fused:
        return 0.0 + _fma_exact(az, bz, _fma_exact(ay, by, _fma_exact(ax, bx, 0.0)))
    return 0.0 + ax * bx + ay * by + az * bz


#: Whether numpy's 1-D dot products fuse multiply-adds here (:func:`_probe_numpy_dot`).
NUMPY_DOT_FUSED: bool = _probe_numpy_dot()


def _dot3(fused: bool, ax: float, ay: float, az: float, bx: float, by: float, bz: float) -> float:
    """``np.dot([ax, ay, az], [bx, by, bz])`` as numpy computes it (``fused``: NUMPY_DOT_FUSED)."""
    if fused:
        return 0.0 + fma(az, bz, fma(ay, by, fma(ax, bx, 0.0)))  # numpy adds BLAS's sum to 0.0
    return 0.0 + ax * bx + ay * by + az * bz


def _dot4(
    fused: bool, ax: float, ay: float, az: float, aw: float, bx: float, by: float, bz: float, bw: float
) -> float:
    """``np.dot`` of two 4-vectors as numpy computes it (``fused``: NUMPY_DOT_FUSED)."""
    if fused:
        return 0.0 + fma(aw, bw, fma(az, bz, fma(ay, by, fma(ax, bx, 0.0))))
    return 0.0 + ax * bx + ay * by + az * bz + aw * bw


dot3 = jit(_dot3)
dot4 = jit(_dot4)
