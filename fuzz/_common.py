"""What both fuzz targets share: the bundle they check against, the corpus, atheris set-up.

Nothing here imports the code under test, so each target can import it inside
:func:`instrumented` and atheris sees its branches.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BUNDLE_DIR", "CORPUS_DIR", "MAX_MESSAGE_CHARS", "MAX_REQUEST_BYTES", "instrumented", "main"]

FUZZ_DIR = Path(__file__).resolve().parent
BUNDLE_DIR = FUZZ_DIR / "bundle"
CORPUS_DIR = FUZZ_DIR / "corpus"
#: The server's request limit in the request target: below libFuzzer's ``-max_len`` (4096 in
#: ``make fuzz``), so the refusal of an oversize request is reached too.
MAX_REQUEST_BYTES = 3000
#: Longest INVALID message allowed: validation shortens peer text before echoing it (``shown``).
MAX_MESSAGE_CHARS = 1024
#: Packages whose code atheris instruments for coverage.
INSTRUMENTED = ("vla", "inference_server", "robot_agent")


def instrumented(module_name: str) -> contextlib.AbstractContextManager[Any]:
    """atheris's import instrumentation when ``module_name`` runs as ``__main__``, else nothing.

    Imported by pytest (corpus replay), a target must not instrument: the hooks need
    ``atheris.Setup`` and would slow every other test in the process.
    """
    if module_name != "__main__":
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=list(INSTRUMENTED))


def main(check: Callable[[bytes], object], argv: Sequence[str] | None = None) -> None:
    """Run ``check`` under libFuzzer with ``argv`` (default ``sys.argv``: corpus dirs, ``-runs=``...).

    Any exception ``check`` raises is a crash: libFuzzer prints it and writes the input to
    ``<-artifact_prefix>crash-<sha1>``.
    """
    import atheris

    def one_input(data: bytes) -> None:
        check(data)

    atheris.Setup(list(sys.argv if argv is None else argv), one_input)
    atheris.Fuzz()
