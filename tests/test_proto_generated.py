"""The generated code in vla/v1 must be exactly what `make proto` produces from proto/."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla import _codegen


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the [dev] extra) regenerates the code")
    fresh = _codegen.generate(tmp_path)
    committed = _codegen.REPO_ROOT / "vla" / "v1"
    for path in fresh:
        assert (committed / path.name).read_bytes() == path.read_bytes(), (
            f"vla/v1/{path.name} is stale: run `make proto` and commit the result"
        )
