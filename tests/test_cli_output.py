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
    lines = [line for line in done.stderr.splitlines() if line.startswith("harness sweep: tiny (")]
    assert lines, done.stderr[-2000:]
    assert lines[-1].startswith("harness sweep: tiny (done): "), lines[-1]
    last = _progress(lines[-1])
    summary = {row["condition"]: row for row in json_summary(done.stdout)}
    assert last == {name: (row["trials"], row["seeds"]) for name, row in summary.items()}
    assert set(last.values()) == {(4, 2)}  # the tiny study's budget and seeds
    _, runs = mlflow_runs(tmp_path)
    confirms = Counter(_tag(run, "condition") for run in runs if _tag(run, "kind") == "confirm")
    assert {name: confirmed for name, (_, confirmed) in last.items()} == dict(confirms)
