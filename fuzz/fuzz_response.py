"""Fuzz the agent's response path: raw bytes from the Predict stream → :meth:`PolicyClient.receive`.

Run ``python -m fuzz.fuzz_response [libFuzzer flags] [corpus dirs]`` from the repository root.
The client holds the spec the server announces for ``fuzz/bundle`` (chunk 4 x 7, ``dt_s`` 0.1);
the bytes are what its stream's ``read()`` returns. The oracle, :func:`check`, accepts a
:class:`Chunk` and nothing else (``receive`` must never raise on bytes from the server), and of a
chunk only:

- accepted actions: status OK, no problem, finite ``float64 [n, 7]`` with ``1 <= n <= 4``,
  ``dt_s`` the spec's;
- status OK without actions: a ``problem`` of kind ``invalid_chunk`` or ``non_finite``, and not
  the catch-all "response could not be checked" (an exception inside the checks, i.e. a bug);
- any other status: no actions.

Message and problem are at most 512 characters (they end up in logs).
"""

from __future__ import annotations

import math

import numpy as np

from fuzz._common import BUNDLE_DIR, MAX_REQUEST_BYTES, instrumented, main

with instrumented(__name__):
    from inference_server.bundle import load_bundle
    from inference_server.service import policy_spec
    from robot_agent.policy_client import CHUNK_PROBLEM_KINDS, Chunk, PolicyClient, check_spec

__all__ = ["SPEC", "check"]

SPEC = policy_spec(load_bundle(BUNDLE_DIR), max_batch=1, max_request_bytes=MAX_REQUEST_BYTES)
check_spec(SPEC)
_UNCHECKED = "response could not be checked"  # the detail of a check that raised


class _Call:
    """Stands in for the Predict call: ``read()`` returns the fuzzer's bytes without suspending."""

    data = b""

    async def read(self) -> bytes:
        return self.data


_CALL = _Call()
_CLIENT = PolicyClient("fuzz:0", session_id="fuzz")
_CLIENT.spec = SPEC
_CLIENT._call = _CALL  # type: ignore[assignment]


def check(data: bytes) -> str:
    """``"accepted"``, ``"refused"`` (OK with a problem) or ``"not_ok"``; raises for a crash."""
    _CALL.data = data
    coroutine = _CLIENT.receive()
    try:
        coroutine.send(None)
    except StopIteration as stop:
        chunk = stop.value
    else:  # pragma: no cover - receive() awaits nothing but _Call.read()
        coroutine.close()
        raise AssertionError("receive() suspended")
    assert isinstance(chunk, Chunk), chunk
    assert len(chunk.message) <= 512, len(chunk.message)
    assert chunk.problem is None or len(str(chunk.problem)) <= 512, chunk.problem
    if chunk.actions is not None:
        assert chunk.status == "OK" and chunk.problem is None, chunk
        actions = chunk.actions
        assert actions.dtype == np.float64 and actions.ndim == 2, actions
        assert 1 <= actions.shape[0] <= SPEC.chunk_length and actions.shape[1] == SPEC.action_dim, (
            actions.shape
        )
        assert np.isfinite(actions).all(), actions
        assert math.isclose(chunk.dt_s, SPEC.dt_s, rel_tol=1e-3), chunk.dt_s
        return "accepted"
    if chunk.status == "OK":
        assert chunk.problem is not None, chunk
        assert chunk.problem.kind in CHUNK_PROBLEM_KINDS, chunk.problem
        assert not chunk.problem.detail.startswith(_UNCHECKED), chunk.problem
        return "refused"
    assert chunk.problem is None or not chunk.problem.detail.startswith(_UNCHECKED), chunk.problem
    return "not_ok"


if __name__ == "__main__":
    main(check)
