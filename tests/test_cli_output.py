"""What the commands print when their output goes to a log or a pipe, ``-q/--quiet``, and their exit codes."""

import re
from collections import Counter

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


def test_a_piped_sweeps_last_progress_line_has_the_summarys_counts(tmp_path):
    """Piped, every progress line said ``confirmed 0/5`` and the last line, after the confirmations, was never
    printed (``close`` returned early off a terminal); a short sweep printed no progress at all."""
    done = harness("sweep", write_study(tmp_path), "--json", "--workers", "2", cwd=tmp_path, check=True)
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
