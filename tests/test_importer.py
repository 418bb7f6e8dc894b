"""``vla.importer``: the one ``"module:attr"`` importer of both sides, and what a failed import means."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vla.importer import ImportFromStringError, MissingPackage, import_from_string


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nocolon", r'must be in format "<module>:<attribute>"'),  # no attribute part
        ("no_such_module_xyz:Thing", r'Could not import module "no_such_module_xyz"'),  # module absent
        ("vla.codec:Nope", r'Attribute "Nope" not found in module "vla.codec"'),  # attribute absent
    ],
)
def test_a_string_that_does_not_resolve_names_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(ImportFromStringError, match=expected):
        import_from_string(text)


def test_dotted_attributes_resolve() -> None:
    assert import_from_string("vla.importer:MissingPackage.__name__") == "MissingPackage"


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on ``sys.path`` for throwaway modules; they are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_dependency_not_installed_is_a_missing_package(modules: Path) -> None:
    (modules / "needs_sdk.py").write_text("import no_such_sdk_xyz.sub\n\nclass Driver: ...\n")
    with pytest.raises(MissingPackage) as info:
        import_from_string("needs_sdk:Driver")
    assert (info.value.name, info.value.package, info.value.module) == (
        "no_such_sdk_xyz",
        "no_such_sdk_xyz",
        "needs_sdk",
    )


def test_one_of_our_own_modules_missing_is_a_packaging_bug_not_an_extra(modules: Path) -> None:
    (modules / "needs_ours.py").write_text("import robot_agent.no_such_module_xyz\n")
    with pytest.raises(ModuleNotFoundError) as info:
        import_from_string("needs_ours:Thing")
    assert not isinstance(info.value, MissingPackage)
    assert info.value.name == "robot_agent.no_such_module_xyz"


def test_importing_it_pulls_nothing_heavy() -> None:
    code = (
        "import sys, vla.importer; print(sorted(m for m in ('torch', 'numpy', 'grpc') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
