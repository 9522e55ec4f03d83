"""A tracking server behind HTTP Basic authentication: credentials in the URL reach the probe and
MLflow's client as a header, and no message shows the password."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.cli import main
from harness.common.errors import HarnessError
from harness.records.store import check_server, resolve_tracking_uri

USER, PASSWORD = "alice", "s3cret/pw@1"
QUOTED = "s3cret%2Fpw%401"  # as it is written in a URL


class _Server(BaseHTTPRequestHandler):
    """Answers MLflow's experiment search (the probe's path) to alice only."""

    seen: list = []

    def _answer(self):
        self.seen.append(self.headers.get("Authorization"))
        if not self.path.startswith("/api/2.0/mlflow/experiments/search"):
            self.send_error(404)
        elif self.headers.get("Authorization") != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
            self.end_headers()
        else:
            body = json.dumps({"experiments": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        return


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    _Server.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], _Server.seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def no_credentials(monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_the_probe_sends_the_urls_credentials_as_basic_auth(server, no_credentials):
    port, seen = server
    check_server(f"http://{USER}:{QUOTED}@127.0.0.1:{port}")
    assert seen == ["Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]


def test_refused_credentials_are_one_line_without_the_password(server, no_credentials):
    port, _ = server
    with pytest.raises(HarnessError) as refused:
        check_server(f"http://{USER}:wrong-{QUOTED}@127.0.0.1:{port}")
    said = str(refused.value)
    assert "answered 401" in said and "refused the credentials" in said and "s3cret" not in said, said


def test_mlflows_client_authenticates_with_the_urls_credentials(server, no_credentials):
    """MLflow's client (``requests``) takes them from the URL itself: the URL is handed on as it is."""
    import os

    from mlflow import MlflowClient

    port, seen = server
    uri = resolve_tracking_uri(f"http://{USER}:{QUOTED}@127.0.0.1:{port}")
    assert list(MlflowClient(uri).search_experiments()) == []
    assert seen == ["Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]
    assert not os.environ.get("MLFLOW_TRACKING_PASSWORD")  # nothing outlives the call


def test_harness_ui_on_a_server_with_credentials_in_its_url(server, no_credentials, capsys):
    port, _ = server
    assert main(["ui", "--tracking-uri", f"http://{USER}:{QUOTED}@127.0.0.1:{port}"]) == 0
    captured = capsys.readouterr()
    assert f"open http://{USER}:***@127.0.0.1:{port} in a browser" in captured.out
    assert "s3cret" not in captured.out + captured.err


class _Starting(BaseHTTPRequestHandler):
    """A server whose database is restarting: 503 twice, then the probe's answer."""

    answers: list = []

    def do_GET(self):  # noqa: N802 - the standard library's name
        self.answers.append(503 if len(self.answers) < 2 else 200)
        self.send_response(self.answers[-1])
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        return


def test_a_503_while_the_servers_database_restarts_is_waited_for_not_fatal(no_credentials, capsys):
    """A worker whose recorder connected during a database outage got 503 and ended the sweep (exit 2)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Starting)
    _Starting.answers = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{httpd.server_address[1]}"
        check_server(uri, patience=30)
        assert _Starting.answers == [503, 503, 200]
        err = capsys.readouterr().err
        assert "answered 503" in err and "waiting up to 30 s" in err and "answers again" in err
        _Starting.answers = []
        with pytest.raises(HarnessError, match="answered 503"):  # without patience: one line at once
            check_server(uri)
    finally:
        httpd.shutdown()
        httpd.server_close()
