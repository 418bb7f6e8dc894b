"""``inference-server bench --json`` names a path it cannot write before any model is loaded."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from inference_server import cli


@pytest.mark.parametrize(
    ("json_arg", "message"),
    [
        ("{tmp}", "ConfigError: --json {tmp} is a folder, expected a file path\n"),
        (
            "{tmp}/missing/b.json",
            "ConfigError: --json {tmp}/missing/b.json: no folder {tmp}/missing to write it in\n",
        ),
    ],
)
def test_an_unwritable_json_path_is_refused_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], json_arg: str, message: str
) -> None:
    """It failed after the whole run with a bare ``FileNotFoundError`` / ``IsADirectoryError``."""
    with mock.patch("inference_server.bench.load_bundle") as load, pytest.raises(SystemExit) as info:
        cli.main(["bench", "--policy", str(tmp_path), "--json", json_arg.format(tmp=tmp_path)])
    assert info.value.code == 1
    assert capsys.readouterr().err == message.format(tmp=tmp_path)
    load.assert_not_called()
