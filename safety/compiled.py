"""Compile small scalar kernels with numba when it is installed: the one place that decides how.

Used by the shield's motion filter (``safety/motion.py``) and the simulated Panda's kinematics
(``robot_agent/sim/panda_chain.py``). Kernels are plain loops over float64 scalars; numba removes
numpy's per-call cost, which dominates on 3- to 7-element arrays (``bench/shield_cost.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["jit"]

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
