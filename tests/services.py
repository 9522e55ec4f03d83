"""Throwaway PostgreSQL cluster and MLflow tracking server, for the distributed test and benchmark.

Everything runs on 127.0.0.1 in a temporary directory and is stopped by process id (the server by
its process group: its workers outlive a signal to the main pid alone). ``missing()`` says why these
services cannot run here, so a test can skip with the reason.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin():
    """The newest installed PostgreSQL server's bin directory (Debian layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def missing():
    """Why a PostgreSQL cluster cannot be started here, or None."""
    if postgres_bin() is None:
        return "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to own the cluster"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[distributed]')"
    return None


class Postgres:
    """``initdb`` + ``pg_ctl start`` in ``root`` (as root: a folder of its own); ``url(db)`` gives a psycopg
    URL; ``stop()`` stops it."""

    def __init__(self, root):
        as_postgres = os.geteuid() == 0
        if as_postgres:  # not under pytest's /tmp/pytest-of-root: every pytest run started meanwhile makes that
            root = tempfile.mkdtemp(prefix="harness-postgres-")  # 0700 again, and pg_ctl (as postgres) fails
        self.root, self.port = Path(root), free_port()
        self.data, self.sockets, self.log = self.root / "data", self.root / "sock", self.root / "postgres.log"
        self.bin = postgres_bin()
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if as_postgres:  # postgres refuses to run as root: the cluster belongs to the postgres user
            user = pwd.getpwnam("postgres")
            for parent in self.root.resolve().parents:  # mkdtemp folders are private (0700)
                if parent.stat().st_uid == os.geteuid():
                    parent.chmod(parent.stat().st_mode | 0o011)
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "-N",
            ]
        )
        self.start()

    def start(self):
        self._pg_ctl("start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def restart(self):
        """``pg_ctl restart -m fast``: every session is cut, as in a database restart or failover."""
        self._pg_ctl("restart", "-m", "fast")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop_server(self):
        self._pg_ctl("stop", "-m", "fast")

    def running(self):
        """``pg_ctl status``: whether the server is up (a test that stopped it starts it again)."""
        status = [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]
        return subprocess.run(self._prefix + status, capture_output=True, cwd="/").returncode == 0

    def _pg_ctl(self, action, *options):
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                *options,
                "-o",
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off -c max_connections=200",
                action,
            ]
        )

    def _run(self, command):
        done = subprocess.run(self._prefix + command, capture_output=True, text=True, cwd="/")
        if done.returncode:
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()[-500:]}")

    def create_database(self, name):
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, name):
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        try:
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        except RuntimeError:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class MlflowServer:
    """``mlflow server`` with a database backend, serving artifacts itself (``--artifacts-destination``)."""

    def __init__(self, backend_uri, artifacts_dir, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend_uri, self.artifacts_dir = backend_uri, artifacts_dir
        self._log = open(log_path, "ab")
        self.start()

    def start(self):
        """(Again) on the same port."""
        backend_uri, artifacts_dir = self.backend_uri, self.artifacts_dir
        mlflow = Path(sys.executable).with_name("mlflow")
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self.process = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                backend_uri,
                "--artifacts-destination",
                str(artifacts_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait_ready(self, timeout=180):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}; see {self._log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server not ready on {self.url} after {timeout} s")

    def stop(self):
        self.stop_server()
        self._log.close()

    def stop_server(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_services(root):
    """A PostgreSQL cluster with an ``optuna`` and an ``mlflow`` database, and a server on the latter."""
    root = Path(root)
    postgres = Postgres(root / "pg")
    try:
        storage = postgres.create_database("optuna")
        backend = postgres.create_database("mlflow")
        (root / "artifacts").mkdir(exist_ok=True)
        server = MlflowServer(backend, root / "artifacts", root / "mlflow-server.log")
    except BaseException:
        postgres.stop()
        raise
    return postgres, server, storage


def stop_services(postgres, server):
    try:
        server.stop()
    finally:
        postgres.stop()
    shutil.rmtree(postgres.root, ignore_errors=True)
