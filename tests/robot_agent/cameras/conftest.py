"""Share the drivers' SDK autospec helper with the camera tests."""

from __future__ import annotations

import sys
from pathlib import Path

# The tests tree has no packages (pytest's default import mode); the helper lives next to the
# driver tests, so make it importable here too.
_DRIVERS_TESTS = str(Path(__file__).resolve().parents[1] / "drivers")
if _DRIVERS_TESTS not in sys.path:
    sys.path.insert(0, _DRIVERS_TESTS)
