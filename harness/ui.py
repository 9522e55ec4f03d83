"""``harness ui``: the MLflow UI over the project's tracking store, stopped cleanly on Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .errors import HarnessError


def server_command(uri, host, port):
    mlflow = Path(sys.executable).with_name("mlflow")
    return [str(mlflow), "server", "--backend-store-uri", uri, "--host", host, "--port", str(port), "--workers", "1"]


def wait_healthy(url, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise HarnessError(f"the MLflow server exited with status {process.returncode} (is port in use?)")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise HarnessError(f"the MLflow server did not answer on {url} within {timeout} s")


def stop(process):
    """Stop the server's whole process group: its workers outlive a signal to the main pid alone."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_ui(uri, host, port):
    from .tracking import check_server, open_client

    if uri.startswith(("http://", "https://")):  # a tracking server is its own UI
        from .urls import redact

        check_server(uri)
        print(f"the tracking store is a server: open {redact(uri)} in a browser")
        return 0
    open_client(uri).search_experiments()  # create the store's schema before the server reads it
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(server_command(uri, host, port), env=env, start_new_session=True)
    url = f"http://{host}:{port}"
    for ending in (signal.SIGTERM, signal.SIGHUP):  # process managers and closing terminals, as Ctrl-C
        signal.signal(ending, _interrupt)
    try:
        wait_healthy(url, process)
        print(f"MLflow UI on {url} (store {uri}); Ctrl-C to stop", flush=True)
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(process)
    return 0
