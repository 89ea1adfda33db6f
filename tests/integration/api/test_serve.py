"""`omnicc serve` as a real process: probes over real HTTP, clean exit on SIGTERM and SIGINT.

Waits are generous (a loaded machine must not fail these tests); nothing is timed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 20.0


def omnicc_command() -> list[str]:
    script = Path(sys.executable).with_name("omnicc")
    if script.exists():
        return [str(script)]
    found = shutil.which("omnicc")
    assert found, "the omnicc console script is not installed"
    return [found]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_environment(data_dir: Path, **extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OMNICC_")}
    environment.update(OMNICC_DATA_DIR=str(data_dir), **extra)
    return environment


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str
    stdout: Path
    stderr: Path

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=EXIT_TIMEOUT_S)

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()


def start_server(tmp_path: Path, environment: dict[str, str]) -> RunningServer:
    port = free_port()
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    # Files, not pipes: a chatty server must never block on a full pipe nobody reads.
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [*omnicc_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=err, env=environment, cwd=tmp_path,
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}", stdout, stderr)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"omnicc serve exited with {process.returncode}: {server.output()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    pytest.fail(f"omnicc serve did not answer /healthz within {START_TIMEOUT_S} s: "
                f"{server.output()}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path, server_environment(tmp_path / "data"))
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def test_serve_answers_probes_and_exits_cleanly_on_sigterm(
    server: RunningServer, tmp_path: Path
) -> None:
    ready = httpx.get(f"{server.url}/readyz", timeout=10.0)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "routing": "ok"}
    assert ready.headers["x-request-id"]

    missing = httpx.get(f"{server.url}/no-such-page", timeout=10.0)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"

    metrics = httpx.get(f"{server.url}/metrics", timeout=10.0)
    assert metrics.status_code == 200
    assert 'omnicc_http_requests_total{method="GET",route="/readyz",status="200"}' in metrics.text
    assert "process_resident_memory_bytes" in metrics.text

    assert server.stop(signal.SIGTERM) == 0
    stdout, stderr = server.output()
    assert f"serving on {server.url}" in stdout
    events = [json.loads(line) for line in stderr.splitlines()]  # every line one JSON event
    assert any(e["logger"] == "omnicc.access" and e["path"] == "/readyz" for e in events)
    assert any(e["message"] == "Application shutdown complete." for e in events)
    assert (tmp_path / "data" / "omnicc.db").is_file()
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0


def test_migrate_then_serve_on_each_backend(database_url: str, tmp_path: Path) -> None:
    environment = server_environment(tmp_path / "data", OMNICC_LOG_FORMAT="text")
    migrated = subprocess.run(
        [*omnicc_command(), "migrate", "--database-url", database_url],
        env=environment, cwd=tmp_path, capture_output=True, text=True,
        timeout=START_TIMEOUT_S, check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "is up to date" in migrated.stdout

    running = start_server(tmp_path, {**environment, "OMNICC_DATABASE_URL": database_url})
    try:
        ready = httpx.get(f"{running.url}/readyz", timeout=10.0)
        assert ready.status_code == 200, ready.text
        assert running.stop(signal.SIGINT) == 0
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def run_failing(tmp_path: Path, *arguments: str, **environment: str) -> tuple[int, str]:
    finished = subprocess.run(
        [*omnicc_command(), *arguments],
        env=server_environment(tmp_path / "data", **environment), cwd=tmp_path,
        capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False,
    )
    return finished.returncode, finished.stderr


def test_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, stderr = run_failing(tmp_path, "serve", OMNICC_LOG_FORMAT="xml")
    assert code == 2
    assert stderr.strip().splitlines() == [
        "omnicc: error: setting log_format (OMNICC_LOG_FORMAT): "
        "Input should be 'json' or 'text', got 'xml'"
    ]


def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = run_failing(tmp_path, "serve", "--port", str(port))
    assert code == 2
    assert stderr.strip().splitlines() == [
        f"omnicc: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_unreachable_database_fails_migrate_with_one_line(tmp_path: Path) -> None:
    code, stderr = run_failing(
        tmp_path, "migrate", "--database-url",
        f"postgresql+asyncpg://omnicc:hunter2@127.0.0.1:{free_port()}/omnicc",
    )
    assert code == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith("omnicc: error: migrating postgresql+asyncpg://omnicc:***@127.0.0.1:")
    assert "hunter2" not in line


def test_readyz_is_503_while_the_database_is_unreachable(tmp_path: Path) -> None:
    # An external database is not touched at start-up, so the server starts and says not ready.
    unreachable = f"postgresql+asyncpg://omnicc@127.0.0.1:{free_port()}/omnicc"
    running = start_server(tmp_path, server_environment(tmp_path / "data",
                                                        OMNICC_DATABASE_URL=unreachable))
    try:
        ready = httpx.get(f"{running.url}/readyz", timeout=10.0)
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/problem+json"
        assert ready.json()["checks"] == {"database": "failing"}
        assert running.stop(signal.SIGTERM) == 0
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def test_failed_start_up_ends_with_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("the database directory cannot be created under a file")
    code, stderr = run_failing(
        tmp_path, "serve", "--port", "0",
        OMNICC_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'a-file' / 'omnicc.db'}",
    )
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("omnicc: error: the server did not start: ")
    assert "a-file" in last
