"""Shared fixtures: composing configs, an isolated output root, the smoke study, a live MLflow server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"


def compose(overrides: List[str] | None = None):
    """Compose conf/config.yaml with overrides, as `python -m ecosweep` would (no hydra node)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ecosweep.config.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides or []))


def compose_cell(overrides: List[str]):
    """The Cell (settings and id) those overrides compose to."""
    from ecosweep.cells import Cell, cell_id, to_settings

    s = to_settings(compose(overrides))
    return Cell(cell_id(s), s)


@pytest.fixture
def output_root(tmp_path) -> Path:
    root = tmp_path / "outputs"
    return root


def run_cli(args: List[str], cwd: Path, env_extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m ecosweep ARGS` in a subprocess and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "ecosweep", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory, worker_id):
    """The smoke study, run once per test session: (work dir, output root, completed process)."""
    claim_smoke_study(tmp_path_factory, worker_id)
    work = tmp_path_factory.mktemp("smoke")
    out = work / "outputs"
    return work, out, run_cli(["+experiment=smoke", f"output_root={out}", f"reuse.reference_dir={work / 'references'}"],
                              cwd=work)


def claim_smoke_study(tmp_path_factory, worker_id: str) -> None:
    """Fail at once where a second xdist worker sets the smoke study up: its tests are grouped onto one worker
    (``pytest_collection_modifyitems`` below), and a grouping that silently stopped working would run the whole
    study twice, ~100 s of the suite's 2 cores."""
    if worker_id == "master":  # not distributed
        return
    claim = tmp_path_factory.getbasetemp().parent / "smoke_study.worker"  # the session's folder, shared by workers
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        pytest.fail(f"the smoke study was already set up on {claim.read_text()}, and {worker_id} needs it too: "
                    "pytest-xdist's --dist loadgroup did not keep its tests on one worker (pytest >= 9.2 with "
                    "pytest-xdist 3.8 ignores xdist_group; pyproject's test extra pins pytest < 9.2)")
    with os.fdopen(fd, "w") as f:
        f.write(worker_id)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(tmp_path):
    """An `mlflow server` on loopback with its own sqlite store: (process, url)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
                             "--default-artifact-root", str(tmp_path / "artifacts"), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            # MLflow 3's server otherwise starts seven job-runner processes (huey consumers), each
                            # importing mlflow: ~40 s of CPU per server on a 2-core host, for jobs no test submits
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("mlflow server did not start")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One `mlflow server` (its URL) for the whole session, for tests that each write experiments of their own
    study names (a test that stops the server starts its own)."""
    proc, url = start_mlflow_server(tmp_path_factory.mktemp("mlflow_server"))
    yield url
    stop_mlflow_server(proc)


def stop_mlflow_server(proc) -> None:
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers
    except ProcessLookupError:
        return
    proc.wait(timeout=30)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n``, the default: pyproject's addopts), every test of the session-wide smoke study
    runs on one worker, so the study is measured once."""
    for item in items:
        if "smoke_study" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("smoke_study"))

