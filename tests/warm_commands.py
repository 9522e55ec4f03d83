"""``.venv/bin/harness`` for the docs pages' commands, served by forking a process that imported the harness once.

A page's bash blocks run ``.venv/bin/harness ...`` a dozen times; each real process spent 2-3 s importing
mlflow, optuna and scikit-learn before it did anything, most of the docs test's time. Here the page's
``.venv/bin/harness`` is a small client (``CLIENT``): it hands its arguments, working folder, environment and
standard streams (the descriptors themselves, so a redirect such as ``> x.json`` is the command's) to a
server that imported those modules once (``serve``). The server forks; the child becomes the command, as
the console script would run it (``harness.cli.run``), and its exit status becomes the client's. A
command's recorder forks from a forkserver the server started with MLflow imported (a real process's
first recorder is spawned and imports MLflow itself: ``recorder._start_method``).

What the docs test checks is the pages' commands and their results, not the interpreter's start: the tests
of the process itself (its imports, signals, what it leaves running) run real processes.
"""

import atexit
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

WARM = ("harness.cli", "mlflow", "mlflow.store.tracking.sqlalchemy_store", "optuna", "sklearn.preprocessing", "pandas")
"""What a command imports on its way: imported once, by the server."""

CLIENT = """#!{python} -S
# The docs test's harness command (tests/warm_commands.py): a warm server runs it.
import json, os, socket, struct, sys
here = os.path.dirname(os.path.abspath(sys.argv[0]))
request = {{"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "bin": here}}
server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
server.connect({socket!r})
socket.send_fds(server, [json.dumps(request).encode()], [0, 1, 2])
answer = server.recv(4)
sys.exit(struct.unpack("i", answer)[0] if len(answer) == 4 else 70)  # 70: the command died unanswered
"""


def serve(path):
    """Accept a command per connection, each run in a child forked from this warm process."""
    import importlib

    for name in WARM:
        importlib.import_module(name)
    _share_a_forkserver()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(8)
    sys.stdout.flush()
    sys.stderr.flush()
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            _command(connection)  # never returns
        connection.close()
        while _reaped():
            pass


def _share_a_forkserver():
    """The commands' recorders fork from one forkserver that this server starts with MLflow imported, as
    the recorders of a process's later commands do (``recorder._start_method``): a command's first
    recorder would otherwise be spawned and import MLflow again, 2-3 CPU-s per command."""
    import multiprocessing
    from multiprocessing import forkserver

    from harness.records import recorder

    recorder._recorders_started = 1  # each command's first recorder is then a later one: forked
    multiprocessing.get_context("forkserver").set_forkserver_preload(recorder.PRELOADED)
    forkserver.ensure_running()


def _forkserver_inherited():
    """In a command's child: use the server's forkserver (``ensure_running`` would ask this process to
    wait for a process that is not its child)."""
    from multiprocessing import forkserver, resource_tracker

    forkserver._forkserver.ensure_running = resource_tracker.ensure_running


def _reaped():
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return False
    return pid != 0


def _command(connection):
    """This child becomes the client's command: its streams, folder, environment and argv; then its
    exit status is sent back and the child leaves as an interpreter would (exit handlers run)."""
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    request = json.loads(message)
    for fd, target in zip(fds, (0, 1, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    sys.path[0] = request["bin"]  # a console script's own folder, as python puts it first
    sys.modules["__main__"] = types.ModuleType("__main__")  # spawned children: no main module to re-run
    _forkserver_inherited()
    code = 1
    try:
        if "code" in request:  # ``python -c CODE``
            exec(compile(request["code"], "<string>", "exec"), vars(sys.modules["__main__"]))
            code = 0
        else:
            from harness.cli import run

            run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the client's stderr gets it, as a real process's would
        traceback.print_exc()
    try:
        from harness.common import interrupts

        atexit.unregister(interrupts._end)  # it would leave (os._exit) before the client heard the status
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        connection.sendall(struct.pack("i", code))
    finally:
        os._exit(code)


class Server:
    """A warm server for one test module: ``install(folder)`` puts the client at ``folder/.venv/bin/harness``
    beside links to everything else of this virtualenv."""

    def __init__(self, env):
        self.folder = Path(tempfile.mkdtemp(prefix="hw-"))  # a short path: a socket's is at most 107 bytes
        self.socket = str(self.folder / "s")
        self.log = open(self.folder / "server.log", "w")  # noqa: SIM115 - closed by stop()
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.warm_commands", self.socket],
            cwd=root,
            env={**env, "PYTHONPATH": str(root)},
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 120
        while not os.path.exists(self.socket):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the warm harness server did not start: {(self.folder / 'server.log').read_text()}")
            time.sleep(0.05)

    def install(self, folder):
        """``folder/.venv``: this virtualenv's files linked, its ``bin/harness`` the client."""
        venv, prefix = Path(folder) / ".venv", Path(sys.prefix)
        (venv / "bin").mkdir(parents=True)
        for entry in prefix.iterdir():
            if entry.name != "bin":
                (venv / entry.name).symlink_to(entry)
        for entry in (prefix / "bin").iterdir():
            if entry.name != "harness":
                (venv / "bin" / entry.name).symlink_to(entry)
        client = venv / "bin" / "harness"
        client.write_text(CLIENT.format(python=sys.executable, socket=self.socket))
        client.chmod(0o755)
        return venv

    def python(self, code, cwd, env):
        """``python -c CODE`` in ``cwd`` with ``env``, forked from the server: a CompletedProcess with its
        output (a docs page's python block, whose imports the server has made)."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, open(os.devnull) as stdin:
            request = {"argv": ["-c"], "cwd": str(cwd), "env": env, "bin": "", "code": code}
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server:
                server.connect(self.socket)
                socket.send_fds(server, [json.dumps(request).encode()], [stdin.fileno(), out.fileno(), err.fileno()])
                answer = server.recv(4)
            returncode = struct.unpack("i", answer)[0] if len(answer) == 4 else 70
            out.seek(0), err.seek(0)
            return subprocess.CompletedProcess(
                ["python", "-c", code],
                returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.log.close()


if __name__ == "__main__":
    serve(sys.argv[1])
