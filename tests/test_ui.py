"""``harness ui`` stops its MLflow server however it is stopped: Ctrl-C, or SIGTERM from a process
manager or a closing terminal (the server's whole process group, so the port is free again)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.helpers import ROOT, harness
from tests.services import free_port

pytestmark = pytest.mark.e2e


def _answers(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _port_free(port):
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server restarting on it would
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.mark.parametrize(
    ("signum", "access_log"), [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["sigterm", "ctrl-c-access-log"]
)
def test_the_server_goes_when_harness_ui_is_told_to_stop_and_logs_requests_only_if_asked(tmp_path, signum, access_log):
    """SIGTERM (a process manager, a closing terminal) or Ctrl-C: exit 0 and the port free again. Browsing
    the UI made 553 access-log lines that scrolled the printed links away: none by default, one per request
    with ``--access-log``."""
    port = free_port()
    flags = ["--access-log"] if access_log else []
    out, err = (tmp_path / "out.txt").open("w"), (tmp_path / "err.txt").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "ui", "--port", str(port), *flags],
        cwd=tmp_path,
        stdout=out,
        stderr=err,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.time() + 120
        # the server answering is not the command having said so: wait for its line (a loaded machine
        # interrupted it in between)
        while time.time() < deadline and "MLflow UI on" not in (tmp_path / "out.txt").read_text():
            assert process.poll() is None, (tmp_path / "err.txt").read_text()
            time.sleep(0.5)
        for _ in range(5):
            assert _answers(port), "the MLflow UI did not answer"
        process.send_signal(signum)  # to harness alone, as a process manager does
        assert process.wait(timeout=30) == 0
        deadline = time.time() + 20
        while time.time() < deadline and not _port_free(port):
            time.sleep(0.5)
        assert _port_free(port), "the MLflow server kept the port after harness ui stopped"
    finally:
        if process.poll() is None:
            process.kill()
        out.close(), err.close()
    printed = (tmp_path / "out.txt").read_text() + (tmp_path / "err.txt").read_text()
    requests = [line for line in printed.splitlines() if "GET /health" in line]
    assert len(requests) >= 5 if access_log else requests == [], printed
    assert f"MLflow UI on http://127.0.0.1:{port}" in printed


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_a_port_out_of_range_is_one_line_before_anything_starts(tmp_path, port):
    done = harness("ui", "--port", port, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"--port = {port} is not allowed; must be an integer in [1, 65535]" in done.stderr
    assert not (tmp_path / "mlruns").exists()


def test_a_port_in_use_is_one_line_naming_it(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = harness("ui", "--port", str(port), cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"--port {port}: 127.0.0.1:{port} is already in use" in done.stderr
    assert not (tmp_path / "mlruns").exists()
