"""``harness ui``: the MLflow UI over the project's tracking store, stopped cleanly on Ctrl-C."""

import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..common.errors import ConfigError, HarnessError, RunTimeFailure
from ..common.urls import redact


def server_command(uri, host, port, access_log=False):
    """``mlflow server`` on one worker; without ``access_log``, none of uvicorn's line per request (browsing
    the UI made 553 of them, scrolling the printed links away): its warnings and errors still show."""
    mlflow = Path(sys.executable).with_name("mlflow")
    quiet = [] if access_log else ["--uvicorn-opts", "--no-access-log"]
    command = [str(mlflow), "server", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    return [*command, "--workers", "1", *quiet]


def check_port(port):
    """Checked before anything starts: the server, given a port out of range, printed pages of tracebacks."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port = {port} is not allowed; must be an integer in [1, 65535]")


def check_free(host, port):
    """A port the server cannot listen on is said in one line, before it starts: it would log the error
    among its start-up lines and exit, leaving a guess."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):  # SO_REUSEADDR, as the server binds
            pass
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise HarnessError(
                f"--port {port}: {host}:{port} is already in use by another program; stop it or give another --port"
            ) from None
        raise HarnessError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None


def wait_healthy(url, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RunTimeFailure(
                f"the MLflow server exited with status {process.returncode} before answering on {url} "
                "(its own messages are above)"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RunTimeFailure(f"the MLflow server did not answer on {url} within {timeout} s")


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


def study_links(recorder, base, study):
    """Where a study's comparison is in the UI: its runs in the model-training view, through the
    study's saved view (``views``) when the sweep wrote one, and its condition parents side by side
    (Compare), whose charts overlay the conditions' mean curves."""
    import json
    from urllib.parse import quote

    from .table import parents, records_frame
    from .views import VIEW_KEY, VIEW_TAG

    experiment_id, runs = recorder.call("study_runs", study)
    if experiment_id is None:
        raise HarnessError(f"study {study!r}: no experiment of that name in this store; run `harness sweep` first")
    ids = list(parents(records_frame(runs)).values())
    view = f"viewStateShareKey={VIEW_KEY}&" if VIEW_TAG in recorder.call("experiment_tags", study) else ""
    runs_page = f"{base}/#/experiments/{experiment_id}/runs?{view}workflowType=machine_learning"
    compare = (
        f"{base}/#/compare-runs?runs={quote(json.dumps(ids))}&experiments={quote(json.dumps([experiment_id]))}"
        "&workflowType=machine_learning"
    )
    return runs_page, compare


def run_ui(uri, host, port, study=None, access_log=False):
    from .recorder import InlineRecorder
    from .store import check_server, open_client

    check_port(port)
    if uri.startswith(("http://", "https://")):  # a tracking server is its own UI
        check_server(uri)
        print(f"the tracking store is a server: open {redact(uri)} in a browser")
        if study:
            for link in study_links(InlineRecorder(uri), redact(uri).rstrip("/"), study):
                print(link)
        return 0
    check_free(host, port)
    open_client(uri).search_experiments()  # create the store's schema before the server reads it
    links = study_links(InlineRecorder(uri), f"http://{host}:{port}", study) if study else ()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(server_command(uri, host, port, access_log), env=env, start_new_session=True)
    url = f"http://{host}:{port}"
    for ending in (signal.SIGTERM, signal.SIGHUP):  # process managers and closing terminals, as Ctrl-C
        signal.signal(ending, _interrupt)
    try:
        wait_healthy(url, process)
        print(f"MLflow UI on {url} (store {redact(uri)}); Ctrl-C to stop", flush=True)
        for label, link in zip(("the study's runs:", "its conditions compared:"), links):
            print(f"  {label} {link}", flush=True)
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(process)
    return 0
