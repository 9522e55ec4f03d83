"""What the commands print when their output goes to a log or a pipe, ``-q/--quiet``, and their exit codes."""

import io
import json
import re
from collections import Counter

import pandas as pd
import pytest

from tests.helpers import harness, json_summary, mlflow_runs, write_study

PROGRESS = re.compile(
    r"(?P<condition>[\w.-]+) (?P<done>\d+)/(?P<budget>\d+) \((?:best [\d.]+, )?confirmed (?P<confirmed>\d+)/\d+"
)


def _progress(line):
    """{condition: (search trials done, confirmations done)} of one progress line."""
    return {m["condition"]: (int(m["done"]), int(m["confirmed"])) for m in PROGRESS.finditer(line)}


def _tag(run, name):
    tags = run.data.tags
    return tags.get(f"harness.{name}", tags.get(name))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The tiny study swept by two workers, its output piped: (folder, the sweep's CompletedProcess)."""
    folder = tmp_path_factory.mktemp("swept")
    done = harness("sweep", write_study(folder), "--json", "--workers", "2", cwd=folder, check=True)
    return folder, done


def test_a_piped_sweeps_last_progress_line_has_the_summarys_counts(swept):
    """Piped, every progress line said ``confirmed 0/5`` and the last line, after the confirmations, was never
    printed (``close`` returned early off a terminal); a short sweep printed no progress at all."""
    tmp_path, done = swept
    lines = [line for line in done.stderr.splitlines() if line.startswith("harness sweep: tiny: ")]
    assert lines, done.stderr[-2000:]
    assert lines[-1].endswith(" [done]"), lines[-1]
    last = _progress(lines[-1])
    summary = {row["condition"]: row for row in json_summary(done.stdout)}
    assert last == {name: (row["trials"], row["seeds"]) for name, row in summary.items()}
    assert set(last.values()) == {(4, 2)}  # the tiny study's budget and seeds
    _, runs = mlflow_runs(tmp_path)
    confirms = Counter(_tag(run, "condition") for run in runs if _tag(run, "kind") == "confirm")
    assert {name: confirmed for name, (_, confirmed) in last.items()} == dict(confirms)


def test_a_bad_study_file_exits_2_in_one_line(tmp_path):
    bad = write_study(tmp_path, "name = 'tiny'\n[conditions]\nloss = ['hinge']\n")
    done = harness("sweep", bad, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("harness sweep: error: ") and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlruns").exists()


def test_failures_while_running_exit_1_bad_input_2(monkeypatch, capsys):
    """Every HarnessError exited 2, a lost server mid-run and a full disk too (those: a failure, not bad
    input); the kind survives the trip from a worker or the recorder process."""
    from harness import cli
    from harness.common import errors
    from harness.common.outages import OutageError

    cases = [
        (errors.HarnessError("bad"), 2),
        (errors.ConfigError("bad"), 2),
        (errors.RunTimeFailure("lost"), 1),
        (errors.RecordingError("lost"), 1),
        (errors.DiskFullError("full"), 1),
        (OutageError("away"), 1),
    ]
    for error, code in cases:
        sent = errors.from_kind(errors.kind_of(error), str(error))
        assert isinstance(error, type(sent)) and isinstance(sent, errors.RunTimeFailure) == (code == 1)

        def fail(args, error=sent):
            raise error

        monkeypatch.setattr(cli.export, "run", fail)
        assert cli.main(["export", "0" * 32]) == code, error
        assert capsys.readouterr().err == f"harness export: error: {error}\n"


def test_compare_csv_is_one_table_with_integer_counts_and_writes_nothing_unasked(swept):
    """``--format csv`` printed the conditions and the pairs in one file (a "section" column), counts as
    ``16.0``, and wrote reports/<study>/ into the working folder unasked."""
    folder, _ = swept
    before = sorted(p.name for p in folder.iterdir())
    done = harness("compare", "tiny", "--format", "csv", cwd=folder, check=True)
    assert sorted(p.name for p in folder.iterdir()) == before  # no reports/
    lines = done.stdout.splitlines()
    assert lines[0].startswith("condition,trials,") and "section" not in lines[0]
    assert [line.split(",")[0] for line in lines[1:]] == ["mse", "cross_entropy"]
    row = dict(zip(lines[0].split(","), lines[1].split(",")))
    assert (row["trials"], row["seeds"], row["diverged_seeds"], row["test_rows"]) == ("4", "2", "0", "30")
    table = pd.read_csv(io.StringIO(done.stdout))  # "2/2" was text to pandas, and a date to a spreadsheet
    assert "target_reached" not in table and table["seeds_reached_target"].dtype == "int64"
    assert list(table["seeds_confirmed"]) == list(table["seeds"])


def test_compare_out_writes_each_table_as_its_own_csv(swept, tmp_path):
    folder, _ = swept
    out = tmp_path / "report"
    done = harness("compare", "tiny", "--out", str(out), cwd=folder, check=True)
    assert f"report: {out / 'report.html'}" in done.stdout
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "summary.csv", "paired_differences.csv", "curves_by_condition.png"} <= names
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["condition"]) == ["mse", "cross_entropy"] and summary["test_rows"].dtype == "int64"
    pairs = pd.read_csv(out / "paired_differences.csv")
    assert list(pairs[["a", "b"]].iloc[0]) == ["mse", "cross_entropy"] and "condition" not in pairs
    assert ",30," in (out / "summary.csv").read_text()  # test rows, not 30.0
    client, runs = mlflow_runs(folder)
    for parent in [run for run in runs if _tag(run, "kind") == "condition"]:  # the parents' artifacts as before
        logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert {"report.html", "summary.csv", "paired_differences.csv", "curves_by_condition.png"} <= logged


def test_the_report_opens_with_the_printed_answer_and_ends_with_where_its_terms_are_explained(swept, tmp_path):
    """report.html (on every parent, the page a colleague opens from the MLflow UI) began with findings
    and tables: the answer in plain words and the door to docs/statistics.md were the terminal's only."""
    import html
    import re

    folder, _ = swept
    out = tmp_path / "report"
    printed = harness("compare", "tiny", "--out", str(out), cwd=folder, check=True).stdout
    lines = printed.splitlines()
    paragraph = lines[: next(i for i, line in enumerate(lines[1:], 1) if not line.startswith(" "))]
    answer = " ".join(line.removeprefix("answer: ").strip() for line in paragraph)  # fill()'s indented lines
    assert printed.startswith("answer: ") and len(answer) > 40
    page = (out / "report.html").read_text()
    shown = html.unescape(re.search(r"<h2>Answer</h2><p class='answer'>(.*?)</p>", page, re.S)[1])
    assert shown == answer
    assert page.index("<h2>Answer</h2>") < page.index("<h2>Results</h2>")
    doors = html.unescape(re.search(r"<p class='explained'>(.*?)</p>", page, re.S)[1])
    last = printed[printed.index("Explained in docs/statistics.md") :].split("\n\n")[0]
    assert " ".join(doors.split()) == " ".join(last.split())


def test_counts_are_nullable_integers():
    from harness.analysis.study_comparison import with_counts

    frame = pd.DataFrame(
        {"trials": [16.0, None], "seeds_needed": [3.0, float("inf")], "test_rows": [360.0, 360.0], "p": [1.0, 0.0]}
    )
    typed = with_counts(frame)
    assert str(typed["trials"].dtype) == "Int64" and typed["trials"].isna().tolist() == [False, True]
    assert typed["seeds_needed"].dtype == "float64"  # a count of infinity stays a float
    assert typed.to_csv(index=False).splitlines() == [
        "trials,seeds_needed,test_rows,p",
        "16,3.0,360,1.0",
        ",inf,360,0.0",
    ]


def test_quiet_drops_progress_and_tables_not_errors_or_results(swept, tmp_path):
    """No command had ``-q``: a script got the progress, the findings and the tables whatever it wanted."""
    folder, first = swept
    fresh = harness("sweep", write_study(tmp_path), "-q", "--trials", "2", "--epochs", "2", cwd=tmp_path, check=True)
    assert (fresh.stdout, fresh.stderr) == ("", "")
    again = harness("sweep", "tiny.toml", "-q", "--json", cwd=folder, check=True)
    assert again.stderr == "" and json_summary(again.stdout) == json_summary(first.stdout)  # the same result
    assert harness("compare", "tiny", "-q", cwd=folder, check=True).stdout == ""
    csv = harness("compare", "tiny", "--format", "csv", cwd=folder, check=True).stdout
    assert harness("compare", "tiny", "-q", "--format", "csv", cwd=folder, check=True).stdout == csv
    trained = harness("train", "--dataset", "iris", "--epochs", "2", "-q", "--json", cwd=tmp_path, check=True)
    run_id = json.loads(trained.stdout)["run_id"]
    assert (
        trained.stderr == "" and harness("train", "--dataset", "iris", "--epochs", "2", "-q", cwd=tmp_path).stdout == ""
    )
    reproduced = harness("reproduce", run_id, "-q", cwd=tmp_path)
    assert (reproduced.returncode, reproduced.stdout) == (0, "")
    bad = harness("sweep", write_study(tmp_path, "name = 'x'\n[search]\nlr = 3\n", "bad.toml"), "-q", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("harness sweep: error: ") and bad.stdout == ""
