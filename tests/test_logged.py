"""A run that travels: one exported file is reproduced and predicts in a folder with no store."""

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from harness.common.errors import HarnessError
from harness.records.logged import ExportedRun, is_export
from harness.records.weights import parse_weights
from tests.helpers import harness


@pytest.mark.e2e
def test_an_exported_run_reproduces_and_predicts_in_a_fresh_folder_with_no_store(tmp_path):
    home, away = tmp_path / "home", tmp_path / "away"
    home.mkdir(), away.mkdir()
    trained = harness("train", "--dataset", "iris", "--epochs", "6", "--json", cwd=home, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    exported = harness("export", run_id, "-o", str(away / "run.zip"), cwd=home, check=True)
    assert "config.json" in exported.stdout and "weights.npz" in exported.stdout
    with zipfile.ZipFile(away / "run.zip") as archive:
        run = json.loads(archive.read("run.json"))
    assert (
        run["tags"]["harness.dataset_digest"]
        and run["tags"]["harness.version.numpy"]
        and run["tags"]["mlflow.source.git.commit"]
    )

    checked = harness("reproduce", "run.zip", cwd=away)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "reproduced exactly: 37 metrics" in checked.stdout and "not logged" in checked.stdout
    (away / "rows.csv").write_text(
        "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
    )
    far = harness("predict", "run.zip", "rows.csv", cwd=away, check=True)
    near = harness("predict", run_id, str(away / "rows.csv"), cwd=home, check=True)
    assert far.stdout == near.stdout and len(far.stdout.split()) == 2
    assert sorted(p.name for p in away.iterdir()) == ["rows.csv", "run.zip"], "a store was created"

    with zipfile.ZipFile(away / "run.zip") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    curves = json.loads(members["curves.json"])
    curves["train_loss"][2][1] *= 1 + 1e-6
    with zipfile.ZipFile(away / "edited.zip", "w") as archive:
        for name, content in {**members, "curves.json": json.dumps(curves)}.items():
            archive.writestr(name, content)
    edited = harness("reproduce", "edited.zip", cwd=away)
    assert edited.returncode == 1 and "train_loss" in edited.stdout.splitlines()[-1]


@pytest.mark.e2e
def test_every_command_that_reports_speaks_json_with_one_flag(tmp_path):
    """--json on train and sweep, --format json on compare, and no JSON from reproduce/export/predict."""
    trained = harness("train", "--dataset", "iris", "--epochs", "3", "--json", cwd=tmp_path, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    exported = json.loads(harness("export", run_id, "-o", "run.zip", "--json", cwd=tmp_path, check=True).stdout)
    assert exported["path"] == "run.zip" and "weights.npz" in exported["files"]
    verdict = json.loads(harness("reproduce", run_id, "--json", cwd=tmp_path, check=True).stdout)
    assert verdict["reproduced"] is True and verdict["run_id"] == run_id and verdict["reproduction_run_id"]
    assert {row["metric"] for row in verdict["compared"]} >= {"train_loss", "weights.npz"}
    (tmp_path / "rows.csv").write_text(
        "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
    )
    predicted = json.loads(harness("predict", "run.zip", "rows.csv", "--json", cwd=tmp_path, check=True).stdout)
    assert len(predicted["predictions"]) == 2 and all(type(label) is int for label in predicted["predictions"])
    assert predicted["source"] == "run.zip" and predicted["run_id"] == run_id  # was "run_id": "run.zip"


@pytest.mark.e2e
def test_export_errors_are_one_line_and_write_nothing(tmp_path):
    trained = harness("train", "--dataset", "iris", "--epochs", "1", "--json", cwd=tmp_path, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    unknown = harness("export", "0" * 32, "-o", "x.zip", cwd=tmp_path)
    assert unknown.returncode == 2 and "not found" in unknown.stderr and not (tmp_path / "x.zip").exists()
    nowhere = harness("export", run_id, "-o", "no/such/folder/x.zip", cwd=tmp_path)
    assert nowhere.returncode == 2 and "folder no/such/folder does not exist" in nowhere.stderr
    assert nowhere.stderr.count("\n") == 1
    missing = harness("reproduce", "elsewhere/run.zip", cwd=tmp_path)
    assert missing.returncode == 2 and "no such export file" in missing.stderr


def test_a_file_that_is_not_an_export_is_named(tmp_path):
    (tmp_path / "junk.zip").write_text("junk")
    with pytest.raises(HarnessError, match="junk.zip: not a run exported"):
        ExportedRun(tmp_path / "junk.zip")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("run.json", json.dumps({"format": "something else"}))
        archive.writestr("curves.json", "{}")
    with pytest.raises(HarnessError, match="other.zip: not a run exported.*format 'something else'"):
        ExportedRun(tmp_path / "other.zip")
    assert is_export(str(tmp_path / "other.zip")) and not is_export("0123abcd" * 4)


def _export(path, members):
    """A minimal export holding ``members`` beside a well-formed run.json and curves.json."""
    run = {"format": "harness-run-export 1", "run_id": "0" * 32, "run_name": "r", "tags": {}, "metrics": {}}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("run.json", json.dumps(run))
        archive.writestr("curves.json", "{}")
        for name, write in members.items():
            with archive.open(name, "w", force_zip64=True) as member:
                write(member)


def _zeros(size):
    def write(member):
        chunk = bytes(1 << 22)
        for _ in range(size // len(chunk)):
            member.write(chunk)

    return write


def test_a_member_the_harness_does_not_use_is_never_read(tmp_path):
    _export(tmp_path / "padded.zip", {"junk.bin": _zeros(128 << 20)})
    tracemalloc.start()
    try:
        ExportedRun(tmp_path / "padded.zip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MB allocated to read a 1 MB export"


def _declare_size(path, name, size):
    """Rewrite the uncompressed size the zip declares for ``name`` (local header and central directory),
    as a crafted file may: the content stays small."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            if data[start + name_at : start + name_at + len(encoded)] == encoded:
                data[start + size_at : start + size_at + 4] = struct.pack("<I", size)
            start += 4
    path.write_bytes(bytes(data))


def test_a_member_declaring_more_than_its_limit_is_refused_before_it_is_read(tmp_path):
    _export(tmp_path / "forged.zip", {})
    _declare_size(tmp_path / "forged.zip", "run.json", 3_000_000_000)
    with pytest.raises(HarnessError, match=r"forged.zip: run.json declares 3000000000 bytes; at most \d+ are read"):
        ExportedRun(tmp_path / "forged.zip")
    _export(tmp_path / "weights.zip", {"weights.npz": _zeros(8 << 20)})
    _declare_size(tmp_path / "weights.zip", "weights.npz", 4_000_000_000)
    with pytest.raises(HarnessError, match="weights.zip: weights.npz declares 4000000000 bytes"):
        ExportedRun(tmp_path / "weights.zip").artifact("weights.npz")


def _npz(arrays_and_headers):
    """An npz whose members are raw .npy bytes (a header may declare any shape)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in arrays_and_headers.items():
            archive.writestr(f"{name}.npy", content)
    return buffer.getvalue()


def _npy_header(shape, descr="<f8"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


def test_weights_declaring_a_huge_array_are_refused_before_it_is_allocated():
    content = _npz({"weight_0": _npy_header((10**12,)), "bias_0": _npy_header((3,)), "classes": _npy_header((3,))})
    tracemalloc.start()
    try:
        with pytest.raises(HarnessError, match=r"w.npz: weight_0 declares shape \(1000000000000,\) of float64"):
            parse_weights(content, "w.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    buffer = io.BytesIO(_npz({"weight_0": _npy_header((2, 3))}))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("notes.txt", "not an array")
    with pytest.raises(HarnessError, match="w.npz: notes.txt is not a .npy array"):
        parse_weights(buffer.getvalue(), "w.npz")


def _rewrite(source, path, name, content):
    with zipfile.ZipFile(source) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in {**members, name: content}.items():
            archive.writestr(member, data)


def _nudged(content, relative):
    """The same weights.npz with one weight moved by ``relative``."""
    with np.load(io.BytesIO(content)) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["weight_1"][2, 1] *= 1 + relative
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.e2e
def test_the_final_weights_are_compared_too_in_an_export_and_in_the_store(tmp_path):
    trained = harness("train", "--dataset", "iris", "--epochs", "3", "--json", cwd=tmp_path, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    harness("export", run_id, "-o", "run.zip", cwd=tmp_path, check=True)
    with zipfile.ZipFile(tmp_path / "run.zip") as archive:
        weights = archive.read("weights.npz")

    _rewrite(tmp_path / "run.zip", tmp_path / "garbage.zip", "weights.npz", b"PK\x03\x04 not weights")
    garbage = harness("reproduce", "garbage.zip", cwd=tmp_path)
    assert garbage.returncode == 2 and garbage.stderr.count("\n") == 1, garbage.stdout + garbage.stderr
    assert "garbage.zip weights.npz: not a readable weights file" in garbage.stderr

    _rewrite(tmp_path / "run.zip", tmp_path / "nudged.zip", "weights.npz", _nudged(weights, 1e-6))
    nudged = harness("reproduce", "nudged.zip", cwd=tmp_path)
    assert nudged.returncode == 1, nudged.stdout + nudged.stderr
    last = nudged.stdout.splitlines()[-1]
    assert last.startswith("NOT reproduced: the final weights differ") and "weight_1" in last, last
    assert "weights.npz" in nudged.stdout and "weight_1[2, 1]" in nudged.stdout

    (stored,) = [p for p in (tmp_path / "mlruns").rglob("weights.npz") if run_id in str(p)]
    stored.write_bytes(_nudged(weights, 1e-12))
    near = harness("reproduce", run_id, cwd=tmp_path)
    assert near.returncode == 0 and "largest relative difference" in near.stdout, near.stdout + near.stderr
    exact = harness("reproduce", run_id, "--rtol", "0", cwd=tmp_path)
    assert exact.returncode == 1 and "the final weights differ" in exact.stdout.splitlines()[-1], exact.stdout
