"""The fault-injection proxy for tests: ``bench/faultproxy.py`` (also a command-line tool)."""

from bench.faultproxy import FaultProxy, frozen

__all__ = ["FaultProxy", "frozen"]
