"""The committed demo bundle carries its own copy of the plugin (a bundle must be self-contained);
that copy must be the source the training command exports, or the two drift apart silently."""

from __future__ import annotations

from pathlib import Path

import vla_demo
from vla_demo.demo import DEFAULT_POLICY


def test_bundled_plugin_is_the_exported_source() -> None:
    source = Path(vla_demo.__file__).with_name("bundle_policy.py")
    bundled = Path(DEFAULT_POLICY) / "demo_policy.py"
    assert bundled.read_bytes() == source.read_bytes(), (
        f"{bundled} differs from {source}: re-export with `python -m vla_demo train --out policies/demo`"
    )
