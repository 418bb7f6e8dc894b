"""The public surface, and the promise that safety stays pure numpy."""

from __future__ import annotations

import subprocess
import sys

import safety


def test_exported_members() -> None:
    for name in safety.__all__:
        assert hasattr(safety, name), name
    assert sorted(safety.__all__) == sorted(set(safety.__all__))
    assert {"Shield", "SafetyConfig", "EStop", "SAFETY_RULE_KINDS", "verify_trace", "Decision"} <= set(
        safety.__all__
    )


def test_imports_neither_agent_nor_server_nor_heavy_libraries() -> None:
    code = (
        "import sys, safety, safety.rotations, safety.shield, safety.verify; "
        "bad = [m for m in ('torch', 'grpc', 'scipy', 'robot_agent', 'inference_server', 'vla', 'cv2') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""
