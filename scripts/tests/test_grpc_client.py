"""The gRPC client a platform team would write (scripts/grpc_client.py: stubs generated with
grpcio-tools from proto/, Debian's python3-grpcio) against the real server: it classifies the
shipped samples and gets the numbers /classify gives, raw and in `contents`, with API keys on."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "models" / "fashion-pc" / "samples").glob("*.png"))
KEY = "python-client-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass  # not listening yet, or 503 while the model loads
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def server():
    node = shutil.which("node")
    assert node, "node is not on PATH (npm test puts it there)"
    assert (ROOT / "dist" / "server.js").exists(), "dist/ is built by npm test's pretest"
    http, grpc_port = free_port(), free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(http), "GRPC_PORT": str(grpc_port),
           "LOG_LEVEL": "warn", "API_KEYS": KEY}
    child = subprocess.Popen([node, str(ROOT / "dist" / "server.js")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http}"
    if not wait_ready(base):
        child.kill()
        raise AssertionError(f"server did not become ready: {child.stdout.read().decode()[-2000:]}")
    yield base, f"127.0.0.1:{grpc_port}"
    child.terminate()
    child.wait(timeout=30)


@pytest.mark.parametrize("form", [[], ["--contents"]], ids=["raw_input_contents", "contents"])
def test_client_gets_the_numbers_of_classify(server, form):
    base, address = server
    assert len(SAMPLES) >= 4
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "grpc_client.py"), "--grpc", address, "--http", base,
         "--key", KEY, "--timesteps", "6", *form, *map(str, SAMPLES)],
        capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(SAMPLES)} images x 7 timesteps, 0 differ" in run.stdout
    assert "health=SERVING" in run.stdout


def test_client_without_the_key_is_refused(server):
    _, address = server
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "grpc_client.py"), "--grpc", address, str(SAMPLES[0])],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode != 0
    assert "UNAUTHENTICATED" in run.stderr
    # one line naming the status, not a stack trace
    assert run.stderr.strip().count("\n") == 0 and run.stderr.startswith("grpc_client: UNAUTHENTICATED")


def test_an_unknown_model_is_one_line(server):
    _, address = server
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "grpc_client.py"), "--grpc", address, "--key", KEY,
         "--model", "no-such-model", str(SAMPLES[0])],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grpc_client: NOT_FOUND") and "no-such-model" in lines[0], run.stderr


def test_a_stop_sent_to_the_whole_process_group_drains_grpc_calls():
    """kill -- -PGID (systemd's control-group stop, Ctrl-C) with a gRPC call in flight: the
    engine's child process ignores it, the server drains, and the call is answered."""
    import re
    import signal

    node = shutil.which("node")
    http, grpc_port = free_port(), free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(http), "GRPC_PORT": str(grpc_port), "LOG_LEVEL": "warn"}
    server = subprocess.Popen([node, str(ROOT / "dist" / "server.js")], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{http}"
    try:
        assert wait_ready(base), "server did not become ready"
        client = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "grpc_client.py"), "--grpc", f"127.0.0.1:{grpc_port}",
             "--timesteps", "64", *map(str, SAMPLES)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        held = False
        for _ in range(500):
            with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
                held = bool(re.search(r'^predify_engine_in_flight\{model="fashion-pc"\} [1-9]', r.read().decode(), re.M))
            if held or client.poll() is not None:
                break
            time.sleep(0.01)
        assert held, "the call never reached the engine"
        os.killpg(server.pid, signal.SIGTERM)
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, err
        assert all(p.name in out for p in SAMPLES)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
