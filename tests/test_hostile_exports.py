"""An export is a stranger's data: nothing it names is imported, opened or fetched before it is checked,
and the code it carries runs only with ``--rebuild-code``. Each case is one a hostile tester crafted
(issue 32); each failed before its fix."""

import hashlib
import http.server
import json
import os
import threading
import zipfile

import pytest

from harness.common.errors import HarnessError
from harness.records.logged import ExportedRun
from tests.helpers import harness

MARKER_MODULE = "open({marker!r}, 'w').write('imported')\nfrom harness.engine.optimizers import SGD as Anything\n"
"""A user's own script in the working folder (or an export's method): importing it writes ``marker``."""


def forge(exported, path, config=None, tags=None, members=None):
    """``exported`` with config.json's settings and run.json's tags updated, and members added."""
    with zipfile.ZipFile(exported) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    settings, run = json.loads(files["config.json"]), json.loads(files["run.json"])
    settings.update(config or {})
    run["tags"].update(tags or {})
    files.update({"config.json": json.dumps(settings), "run.json": json.dumps(run), **(members or {})})
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return path


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["analysis:Anything", "this:X"])
def test_a_module_the_export_names_without_its_source_is_never_imported(exported, tmp_path, name):
    marker = tmp_path / "marker"
    (tmp_path / "analysis.py").write_text(MARKER_MODULE.format(marker=str(marker)))  # a user's own script
    forge(exported, tmp_path / "evil.zip", config={"optimizer": name})
    for flags in ((), ("--rebuild-code",)):
        done = harness("reproduce", "evil.zip", *flags, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stdout + done.stderr
        assert "recorded no source of module" in done.stderr and "nothing of it is imported" in done.stderr
        assert not marker.exists(), "the export made reproduce import a module of the working folder"
        assert "Beautiful is better" not in done.stdout + done.stderr  # `import this` prints the Zen


@pytest.mark.e2e
def test_an_exports_own_method_runs_only_with_rebuild_code_even_when_a_same_file_is_here(exported, tmp_path):
    marker = tmp_path / "marker"
    source = MARKER_MODULE.format(marker=str(marker)).encode()
    (tmp_path / "analysis.py").write_bytes(source)  # byte for byte the export's: still the export's code
    digest = hashlib.sha256(source).hexdigest()
    forge(
        exported,
        tmp_path / "own.zip",
        config={"optimizer": "analysis:Anything"},
        tags={"harness.method.analysis": digest, "version.numpy": "0.0.1"},  # a warning the sender chose
        members={"methods/analysis.py": source},
    )
    refused = harness("reproduce", "own.zip", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "is code from the export; it runs only with --rebuild-code" in refused.stderr and not marker.exists()

    asked = harness("reproduce", "own.zip", "--rebuild-code", cwd=tmp_path)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    first = asked.stderr.splitlines()[0]  # what runs is said first, before any line the sender chose
    assert "'analysis' is the export's own" in first and f"methods/analysis.py (sha256 {digest[:12]})" in first
    assert marker.exists() and "reproduced exactly" in asked.stdout  # SGD under another name: the same curves

    other = forge(
        exported,
        tmp_path / "other.zip",
        config={"optimizer": "analysis:Anything"},
        tags={"harness.method.analysis": "0" * 64},
        members={"methods/analysis.py": source},
    )
    marker.unlink()
    mismatched = harness("reproduce", str(other), "--rebuild-code", cwd=tmp_path)
    assert mismatched.returncode == 2 and "with its recorded digest" in mismatched.stderr and not marker.exists()


class _Counting(http.server.BaseHTTPRequestHandler):
    requests: list = []

    def do_GET(self):  # noqa: N802 - the standard library's name
        self.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"a,b,label\n1,2,0\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def listener():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Counting)
    _Counting.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Counting.requests
    server.shutdown()


@pytest.mark.e2e
def test_a_csv_url_is_never_fetched(exported, tmp_path, listener):
    url, requests = listener
    forge(exported, tmp_path / "leak.zip", config={"dataset": "csv", "csv": f"{url}/leak?who=victim"})
    done = harness("reproduce", "leak.zip", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is a URL; only a local file is read" in done.stderr
    trained = harness("train", "--csv", f"{url}/data.csv", cwd=tmp_path)
    assert trained.returncode == 2 and trained.stderr.count("\n") == 1, trained.stderr
    assert "is a URL" in trained.stderr and not (tmp_path / "mlruns").exists()
    assert requests == [], "a URL named as a CSV was fetched"


@pytest.mark.e2e
def test_a_fifo_or_a_device_named_as_csv_is_refused_without_reading(exported, tmp_path):
    os.mkfifo(tmp_path / "pipe.csv")  # opening it to read would wait for a writer for ever
    (tmp_path / "zero.csv").symlink_to("/dev/zero")  # reading it never ends
    for name in ("pipe.csv", "zero.csv"):
        path = str(tmp_path / name)
        forge(exported, tmp_path / "odd.zip", config={"dataset": "csv", "csv": path})
        for argv in (("reproduce", "odd.zip"), ("train", "--csv", path)):
            done = harness(*argv, cwd=tmp_path, timeout=120)
            assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
            assert "is not a regular file (a FIFO, device or socket)" in done.stderr


def _minimal(path, run=None, curves=None):
    base = {"format": "harness-run-export 1", "run_id": "0" * 32, "run_name": "r", "tags": {}, "metrics": {}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("run.json", json.dumps({**base, **(run or {})}))
        archive.writestr("curves.json", json.dumps(curves or {}))
    return path


@pytest.mark.parametrize(
    "run,curves,field",
    [
        ({"tags": {"mlflow.source.git.commit": "--output=/tmp/owned"}}, None, "tags.mlflow.source.git.commit"),
        ({"tags": {"git_commit": "HEAD~3"}}, None, "tags.git_commit"),
        ({"run_id": "../../etc/passwd"}, None, "run_id"),
        ({"run_name": "r\x1b]0;owned\x07"}, None, "run_name"),
        ({"tags": {"version.numpy": "2.0\x1b[2J"}}, None, "tags.version.numpy"),
        ({"tags": {"harness.method.os;x": "0" * 64}}, None, "a method tag's module"),
        ({"tags": {"git_diff": "$(reboot)"}}, None, "tags.git_diff"),
        # today's names are held to the same forms as the names exports carried before (tags.OLD_NAMES)
        ({"tags": {"harness.git_commit": "HEAD~3"}}, None, "tags.harness.git_commit"),
        ({"tags": {"harness.version.numpy": "2.0\x1b[2J"}}, None, "tags.harness.version.numpy"),
        ({"tags": {"harness.git_diff": "$(reboot)"}}, None, "tags.harness.git_diff"),
        ({"tags": {"harness.state": "../x"}}, None, "tags.harness.state"),
        ({"tags": {"state": "../x"}}, None, "tags.state"),
        ({"tags": {"harness.dataset_digest": "x"}}, None, "tags.harness.dataset_digest"),
        ({"metrics": {"\x1b[31mred": 1.0}}, None, "a metric name"),
        ({"metrics": {"loss": "1.0"}}, None, "metrics.loss"),
        ({"command": "rm -rf ~"}, None, "command"),
        (None, {"train_loss": [[True, 1.0]]}, "curves.train_loss"),
        (None, {"train_loss": [[1, 1.0, "x"]]}, "curves.train_loss"),
        (None, {"\x1b[2Jx": []}, "a curve's name"),
    ],
)
def test_every_field_a_reader_uses_has_one_allowed_form(tmp_path, run, curves, field):
    path = _minimal(tmp_path / "x.zip", run, curves)
    with pytest.raises(HarnessError) as refused:
        ExportedRun(path).curves  # noqa: B018 - read when a comparison needs them
    message = str(refused.value)
    assert message.count("\n") == 0 and f"{field} = " in message and "is not allowed" in message, message
    assert "\x1b" not in message and "\x07" not in message  # quoted, never echoed raw to a terminal


def test_a_well_formed_export_passes_the_schema(tmp_path):
    """Written with the tag names exports carried before ``harness.`` prefixed them all: read under today's."""
    tags = {
        "mlflow.source.git.commit": "a" * 40,
        "git_diff": "0123456789abcdef",
        "version.numpy": "2.4.6",
        "harness.method.my_methods": "f" * 64,
        "mlflow.note.content": "any\nnote",
        "state": "complete",
    }
    run = ExportedRun(
        _minimal(
            tmp_path / "x.zip",
            {"tags": tags, "metrics": {"val_accuracy": float("nan")}},
            {"val_accuracy": [[1, 0.5], [2, 0.75]]},
        )
    )
    assert run.curves == {"val_accuracy": [(1, 0.5), (2, 0.75)]}
    assert run.run["tags"] == {
        "mlflow.source.git.commit": "a" * 40,
        "harness.git_diff": "0123456789abcdef",
        "harness.version.numpy": "2.4.6",
        "harness.method.my_methods": "f" * 64,
        "mlflow.note.content": "any\nnote",
        "harness.state": "complete",
    }


def test_an_export_of_many_or_repeated_members_is_refused(tmp_path):
    path = _minimal(tmp_path / "many.zip")
    with zipfile.ZipFile(path, "a") as archive:
        for i in range(100):
            archive.writestr(f"pad/{i}", "")
    with pytest.raises(HarnessError, match="holds 102 files; an export holds at most 64"):
        ExportedRun(path)
    path = _minimal(tmp_path / "twice.zip")
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("config.json", '{"lr": 0.1}')  # unzip shows one, a reader would use the other
    with pytest.raises(HarnessError, match="holds 'config.json' more than once"):
        ExportedRun(path)


def test_a_message_quoting_a_name_from_a_file_is_one_line_without_terminal_escapes():
    message = str(
        HarnessError("weights.npz: \x1b[31mRED\x1b]0;title\x07\nharness reproduce: reproduced exactly \u202e")
    )
    assert message == ("weights.npz: \\x1b[31mRED\\x1b]0;title\\x07\\nharness reproduce: reproduced exactly \\u202e")


@pytest.mark.e2e
def test_predict_prints_class_names_one_line_each_and_reads_no_curves(exported, tmp_path):
    import io

    import numpy as np

    with zipfile.ZipFile(exported) as archive:
        with np.load(io.BytesIO(archive.read("weights.npz"))) as saved:
            arrays = {key: saved[key] for key in saved.files}
    arrays["classes"] = np.array(["\x1b[31mred\x1b]0;title\x07", "b\nFAKE LINE", "c"])
    weights = io.BytesIO()
    np.savez(weights, **arrays)
    forge(exported, tmp_path / "names.zip", members={"weights.npz": weights.getvalue(), "curves.json": b"[" * 10})
    (tmp_path / "rows.csv").write_text(
        "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n"
        + "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n" * 20
    )
    done = harness("predict", "names.zip", "rows.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 40 and "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert set(lines) <= {"\\x1b[31mred\\x1b]0;title\\x07", "b\\nFAKE LINE", "c"}
