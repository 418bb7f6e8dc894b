"""``cpu_threads``: the model's CPU kernels get every CPU but one by default (the event loop's),
or the number set; from the flag or the file through the bundle to torch and onnxruntime."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference_server import ConfigError, ServerConfig, cli, load_bundle
from inference_server import config as config_module
from inference_server.backends import base, create_backend
from inference_server.config import load_config
from inference_server.new_bundle import write_example_bundle
from tests.utils import run_server, write_python_bundle

torch = pytest.importorskip("torch", reason="the torch backend needs torch (the [server] extra)")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example bundle with model.onnx and model.pt2."""
    return write_example_bundle(tmp_path_factory.mktemp("bundles") / "example", backend="onnx", seed=0)


@pytest.fixture
def keep_torch_threads() -> Iterator[None]:
    """torch's thread count is the process's: put this thread's back after the test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@given(cpus=st.integers(1, 256), requested=st.integers(0, 64))
def test_zero_is_every_cpu_but_one_and_a_number_is_itself(cpus: int, requested: int) -> None:
    bundle = mock.Mock(cpu_threads=requested)
    with mock.patch.object(base.os, "sched_getaffinity", return_value=set(range(cpus))):
        threads = base.cpu_threads(bundle)
    assert threads == (requested or max(1, cpus - 1))


def test_the_default_counts_the_cpus_this_process_may_use(example: Path) -> None:
    # A server pinned to 3 CPUs of a larger machine gives the model 2, not os.cpu_count() - 1.
    with mock.patch.object(base.os, "sched_getaffinity", return_value={4, 5, 6}):
        assert base.cpu_threads(load_bundle(example)) == 2


@pytest.fixture
def eight_cpus() -> Iterator[None]:
    """A machine of 8 CPUs, so counts up to 8 are valid whatever runs the tests."""
    with mock.patch.object(config_module.os, "cpu_count", return_value=8):
        yield


@pytest.mark.parametrize("count", [-1, 9, 999999, 2**63])
def test_a_count_outside_0_to_the_cpus_is_refused_naming_the_field(count: int, eight_cpus: None) -> None:
    # 999999 held the onnx server at load for 7.5 minutes, deaf to Ctrl-C; 2**63 overflowed there.
    with pytest.raises(ConfigError, match=f"cpu_threads is {count}, expected 0..8, this machine's CPUs") as info:
        ServerConfig(policy=Path("b"), cpu_threads=count)
    assert info.value.field == "cpu_threads"
    assert ServerConfig(policy=Path("b"), cpu_threads=8).cpu_threads == 8


@pytest.mark.parametrize("command", [[], ["bench"]])
def test_the_flag_above_the_cpus_is_refused_in_one_line(
    command: list[str], eight_cpus: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.main([*command, "--policy", "b", "--cpu-threads", "999999"])
    assert "argument --cpu-threads: 999999 is above 8, this machine's CPUs" in capsys.readouterr().err


def test_the_file_and_the_flag_set_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], eight_cpus: None
) -> None:
    path = tmp_path / "server.toml"
    path.write_text('policy = "b"\ncpu_threads = 3\n')
    assert load_config(path).cpu_threads == 3
    assert ServerConfig(policy=Path("b")).cpu_threads == 0
    with mock.patch.object(cli, "run") as run:
        cli.main(["--config", str(path), "--cpu-threads", "1"])
    assert run.call_args.args[0].cpu_threads == 1
    with mock.patch("inference_server.bench.bench_model") as bench:
        cli.main(["bench", "--policy", "b", "--cpu-threads", "2"])
    assert bench.call_args.kwargs["cpu_threads"] == 2
    with pytest.raises(SystemExit):
        cli.main(["--policy", "b", "--cpu-threads", "-1"])
    assert "argument --cpu-threads: -1 is below 0" in capsys.readouterr().err


@pytest.mark.parametrize("threads", [1, 3])
def test_torch_runs_on_the_count_on_the_thread_that_loads_it(
    example: Path, threads: int, keep_torch_threads: None
) -> None:
    bundle = load_bundle(example, backend="torch", cpu_threads=threads)

    def load_and_count() -> int:  # as the model worker does: load, then every batch, on one thread
        backend = create_backend(bundle)
        try:
            return int(torch.get_num_threads())
        finally:
            backend.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(load_and_count).result(timeout=60) == threads


@pytest.mark.parametrize("threads", [1, 3])
def test_onnxruntime_session_gets_the_count(example: Path, threads: int) -> None:
    backend: Any = create_backend(load_bundle(example, backend="onnx", cpu_threads=threads))
    try:
        assert backend._session.get_session_options().intra_op_num_threads == threads
    finally:
        backend.close()


async def test_the_server_hands_its_setting_to_the_backend(tmp_path: Path, eight_cpus: None) -> None:
    seen = []

    def factory(bundle: Any) -> Any:
        seen.append(bundle.cpu_threads)
        return create_backend(bundle)

    bundle = write_python_bundle(tmp_path / "echo", "tests.inference_server.policies:EchoPolicy")
    config = dataclasses.replace(ServerConfig(policy=bundle), cpu_threads=5, warmup_iters=0)
    async with run_server(config, backend_factory=factory):
        pass
    assert seen == [5]
