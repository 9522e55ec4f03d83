"""Helpers the end-to-end tests share: a study in a temporary folder, its records, the harness as a
command, and the audit of a sweep's records."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from tests import in_process
from tests.conftest import TINY_STUDY

ROOT = Path(__file__).resolve().parent.parent


def _run_code(code, env, errors):
    os.environ.clear()
    os.environ.update(env)
    try:
        exec(compile(code, "<code>", "exec"), {"__name__": "__main__"})
    except Exception:  # noqa: BLE001 - said as a process would: its traceback, exit 1
        import traceback

        Path(errors).write_text(traceback.format_exc())
        raise SystemExit(1) from None


class WarmPython:
    """``python -c CODE`` in a fresh process forked from a forkserver that imported MLflow's store once
    (the harness's own recorders fork from it: ``recorder._start_method``), not a new interpreter that
    imports it again (2 CPU-s each). The process has imported modules and nothing else: no store opened,
    no client made. ``poll``, ``wait``, ``kill`` and ``stderr`` (an exception's traceback, once it ended) as
    a Popen's."""

    def __init__(self, code, env=None):
        import multiprocessing
        import tempfile

        from harness.records import recorder

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(recorder.PRELOADED)
        handle, self._errors = tempfile.mkstemp(prefix="warm-python-")
        os.close(handle)
        self.stderr = None
        self.process = context.Process(target=_run_code, args=(code, dict(env or os.environ), self._errors))
        self.process.start()

    def poll(self):
        return self.process.exitcode

    def wait(self, timeout=300):
        self.process.join(timeout)
        if self.process.exitcode is not None and self.stderr is None:
            self.stderr = Path(self._errors).read_text()
            Path(self._errors).unlink()
        return self.process.exitcode

    def kill(self):
        self.process.kill()


def warm_python(code, env=None, timeout=300):
    """``WarmPython(code, env)`` run to its end: (exit code, stderr)."""
    process = WarmPython(code, env)
    return process.wait(timeout), process.stderr


def load_file(path):
    """A Python file that is not in a package (a benchmark, a script, an example) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_study(folder, text=TINY_STUDY, name="tiny.toml"):
    path = Path(folder) / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def store_uri(folder):
    return f"sqlite:///{Path(folder) / 'mlruns' / 'mlflow.db'}"


def journal(folder, study="tiny"):
    return Path(folder) / "mlruns" / "optuna" / f"{study}.journal"


def optuna_trials(folder, study="tiny"):
    """{optuna study name: trials} of a local sweep's journal."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(journal(folder, study))))
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)
        for s in optuna.get_all_study_summaries(storage)
    }


def mlflow_runs(folder, study="tiny"):
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(folder))
    experiment = client.get_experiment_by_name(study)
    return client, client.search_runs([experiment.experiment_id], max_results=5000)


def harness(*args, cwd, env=None, timeout=300, check=False, subprocess=False):
    """``harness ARGS`` as a user runs it; a CompletedProcess (returncode, stdout, stderr). It runs in
    this process, as a fresh process would (tests/in_process.py: 2-3 s of imports saved per command),
    unless ``subprocess`` (what is tested is the process itself: its exit on a signal, its imports, what
    it leaves running) or a fault in ``env`` kills or holds the process."""
    if not subprocess and in_process.possible(env):
        done = in_process.run(args, cwd, env, timeout)
    else:
        done = harness_process(*args, cwd=cwd, env=env, timeout=timeout)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def harness_process(*args, cwd, env=None, timeout=300):
    """``python -m harness ARGS`` in a process of its own; the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def start_harness(*args, cwd, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def json_summary(stdout):
    return json.loads(stdout)["summary"]


def audit_sweep(folder, study_file, printed_summary=None, flags=None, storage=None, uri=None):
    """Problems the audit finds in a local sweep's records ([] when they are right)."""
    from harness.records.recorder import InlineRecorder
    from harness.studies.parse import read_study
    from harness.studies.study import resolve
    from harness.sweep.audit import audit

    study = resolve(read_study(study_file), **(flags or {}))
    return audit(
        study,
        storage or f"journal:{journal(folder, study.name)}",
        InlineRecorder(uri or store_uri(folder)),
        printed_summary,
    )


def compare_json(folder, study="tiny"):
    done = harness("compare", study, "--format", "json", "--out", str(Path(folder) / "report"), cwd=folder, check=True)
    return json.loads(done.stdout)


def start_ui(folder, port):
    """``harness ui`` on ``port`` over the store in ``folder``, as a user starts it; the Popen (stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "ui", "--port", str(port)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


class Watched:
    """A running command whose stderr lines a test waits for (``wait_for``) while it runs: the test acts
    when the command says it reached a point, never after a sleep. Both pipes are read as they fill."""

    def __init__(self, process):
        self.process, self.out, self.err, self._open = process, [], [], 2
        self._said = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(process.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe, lines):
        for line in pipe:
            with self._said:
                lines.append(line)
                self._said.notify_all()
        with self._said:
            self._open -= 1
            self._said.notify_all()

    def wait_for(self, text, count=1, timeout=300):
        """Until stderr holds ``text`` ``count`` times. Counted in the whole text, not per line: processes
        sharing the pipe interleave their writes (print writes a line's text and its newline apart)."""
        with self._said:
            self._said.wait_for(lambda: "".join(self.err).count(text) >= count or not self._open, timeout)
            said = "".join(self.err)
        assert said.count(text) >= count, f"never said {text!r} {count} time(s): {said[-3000:]}"

    def communicate(self, timeout):
        """(stdout, stderr) once the command ended."""
        self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=60)
        return "".join(self.out), "".join(self.err)


def wait_paused(folder, count, process, timeout=300):
    """The pids held at ``HARNESS_FAULT=pause-at-epoch=N:FOLDER`` once ``count`` processes wait there."""
    deadline = time.monotonic() + timeout
    while len(held := list(Path(folder).iterdir())) < count:
        assert process.poll() is None, f"the command ended ({process.returncode}) before its fault point"
        assert time.monotonic() < deadline, f"{len(held)} of {count} processes reached the fault point"
        time.sleep(0.05)
    return sorted(int(marker.name) for marker in held)


def release(folder):
    """Let every process held at ``pause-at-epoch`` go on."""
    for marker in Path(folder).iterdir():
        marker.unlink(missing_ok=True)


def wait_until(condition, what, process=None, timeout=300, every=0.05):
    """``condition()``'s first truthy value, polled until it comes: a test acts once something happened,
    never after a sleep. Fails when ``process`` ended first, or after ``timeout`` s (a bound that holds on
    a loaded machine, not a moment: a test that passes returns as soon as the condition holds)."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if process is not None:
            assert process.poll() is None, f"the command ended ({process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"never {what} within {timeout} s"
        time.sleep(every)
    return found


def process_gone(pid):
    """Whether ``pid`` has ended (no such process, or a zombie no one reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
