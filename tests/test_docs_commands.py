"""Every command the README and docs/ show runs, so the documentation cannot drift from the code.

Each page's fenced ``bash`` and ``python`` blocks run in order in one temporary folder (a copy of
``studies/`` and the test's virtualenv as ``.venv``, whose ``harness``, and the python blocks, a warm
server runs: tests/warm_commands.py) against a fresh store. Sweeps are shortened with
``SMOKE_FLAGS`` (each added unless the command already gives that flag); ``RUN_ID`` is a confirmation
run of the page's quickstart sweep. A block that cannot run here is preceded by
``<!-- docs-test: skip: REASON -->``, and a skip without a reason fails.
"""

import os
import re
import shutil
import subprocess

import pytest

from tests.helpers import ROOT, store_uri
from tests.warm_commands import Server

pytestmark = pytest.mark.e2e

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SMOKE_FLAGS = {"--trials": "2", "--epochs": "3", "--confirm-seeds": "3"}
BLOCK = re.compile(
    r"(?:^[ \t]*<!-- docs-test: skip:(?P<reason>[^>]*)-->\n)?^[ \t]*```(?P<lang>bash|python)\n(?P<body>.*?)^[ \t]*```",
    re.M | re.S,
)
SWEEP = re.compile(r"^(?P<command>.*harness sweep\s[^#]*?)(?P<comment>\s+#.*)?$")


def blocks(page):
    """[(lang, body, skip_reason or None)] of a page, in order."""
    found = []
    for match in BLOCK.finditer(page.read_text()):
        body = "\n".join(line.strip() for line in match["body"].splitlines())
        reason = match["reason"].strip() if match["reason"] is not None else None
        found.append((match["lang"], body, reason))
    return found


def shortened(script):
    """The script with every ``harness sweep`` line given the smoke flags it does not set itself."""
    lines = script.replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        match = SWEEP.match(line)
        if match:
            command = match["command"]
            extra = [f"{flag} {value}" for flag, value in SMOKE_FLAGS.items() if flag not in command.split()]
            line = " ".join([command, *extra]) + (match["comment"] or "")
        out.append(line)
    return "\n".join(out)


def confirmation_run(folder):
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(folder))
    experiment = client.get_experiment_by_name("quickstart")
    assert experiment is not None, "RUN_ID is used before the page swept the quickstart"
    runs = client.search_runs(
        [experiment.experiment_id],
        # the seed with the model
        "tags.`harness.kind` = 'confirm' and tags.`harness.state` = 'complete' and params.seed = '1'",
        max_results=1,
    )
    assert runs, "RUN_ID is used but the quickstart has no complete confirmation run of seed 1"
    return runs[0].info.run_id


def run_block(lang, body, folder, env, warm):
    """A bash block as ``bash -e``; a python block as ``python -c``, forked from the warm server."""
    if "RUN_ID" in body:
        run_id = confirmation_run(folder)
        body = f'RUN_ID = "{run_id}"\n' + body if lang == "python" else re.sub(r"\bRUN_ID\b", run_id, body)
    if lang == "python":
        return warm.python(body, folder, env)
    command = ["bash", "-e", "-o", "pipefail", "-c", shortened(body)]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def runnable(page):
    return [(lang, body) for lang, body, reason in blocks(page) if reason is None]


def page_env():
    """A user's shell: none of the test run's MLflow or harness variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HARNESS_"))}


@pytest.fixture(scope="module")
def warm():
    """The pages' ``.venv/bin/harness``, run by a server that imported the harness once
    (tests/warm_commands.py): each command saves the 2-3 s of imports a real process pays."""
    server = Server(page_env())
    yield server
    server.stop()


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: p.name)
def test_every_command_of_the_page_runs(page, tmp_path, warm):
    todo = runnable(page)
    shutil.copytree(ROOT / "studies", tmp_path / "studies")
    venv = warm.install(tmp_path)
    env = page_env()
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    uses_records = any("quickstart" in body or "RUN_ID" in body for _, body in todo)
    if uses_records and not any("harness sweep" in body for _, body in todo):
        todo = [("bash", ".venv/bin/harness sweep studies/quickstart.toml")] + todo  # the page reads its records
    for lang, body in todo:
        done = run_block(lang, body, tmp_path, env, warm)
        assert done.returncode == 0, (
            f"{page.name}: this {lang} block failed:\n{body}\n--- stderr:\n{done.stderr[-3000:]}"
        )


def test_each_skipped_block_says_why():
    skipped = [(page.name, body, reason) for page in PAGES for _, body, reason in blocks(page) if reason is not None]
    assert all(reason for _, _, reason in skipped), [s for s in skipped if not s[2]]
    assert sum(len(runnable(page)) for page in PAGES) >= 10  # the runner finds the pages' commands


def test_the_runner_reads_fences_skips_and_sweeps(tmp_path):
    path = tmp_path / "page.md"
    path.write_text("<!-- docs-test: skip: starts a server -->\n```bash\nharness ui\n```\n\n```python\nprint(1)\n```\n")
    assert blocks(path) == [("bash", "harness ui", "starts a server"), ("python", "print(1)", None)]
    extended = shortened("harness sweep s.toml --trials 24   # extend")
    assert extended == "harness sweep s.toml --trials 24 --epochs 3 --confirm-seeds 3   # extend"
    continued = shortened("harness sweep a.toml \\\n    --workers 2")
    assert continued.split() == "harness sweep a.toml --workers 2 --trials 2 --epochs 3 --confirm-seeds 3".split()


def test_every_relative_link_and_image_of_the_docs_exists():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert broken == []


def test_the_studies_folder_describes_every_study_file_it_holds():
    listed = (ROOT / "studies" / "README.md").read_text()
    assert [p.name for p in sorted((ROOT / "studies").glob("*.toml")) if p.name not in listed] == []


def test_the_pages_harness_is_the_command_with_its_status_streams_and_folder(tmp_path, warm):
    """The warm server stands in for the console script only if a failing command fails the page and the
    command's output lands where the shell sent it."""
    venv = warm.install(tmp_path)
    (tmp_path / "sub").mkdir()
    env = {**page_env(), "PATH": f"{venv / 'bin'}:{page_env().get('PATH', '')}"}
    bad = run_block("bash", ".venv/bin/harness train --dataset nope", tmp_path, env, warm)
    assert bad.returncode == 2 and bad.stderr.startswith("harness train: error: dataset = 'nope'"), bad.stderr
    good = run_block("bash", "cd sub && harness --version > version.txt && echo $?", tmp_path, env, warm)
    assert (good.returncode, good.stdout) == (0, "0\n")
    assert (tmp_path / "sub" / "version.txt").read_text().startswith("harness ")
    # a python block: its output, its folder, the page's environment, and a failure that fails the page
    marked = {**env, "PAGE_MARK": "the page's"}
    code = "import os, sys\nprint(os.getcwd(), sys.argv, os.environ.get('PAGE_MARK'))"
    shown = run_block("python", code, tmp_path, marked, warm)
    assert (shown.returncode, shown.stdout) == (0, f"{tmp_path} ['-c'] the page's\n"), shown.stderr
    failed = run_block("python", "print('before')\nraise ValueError('from the page')", tmp_path, env, warm)
    assert (failed.returncode, failed.stdout) == (1, "before\n")
    assert failed.stderr.strip().splitlines()[-1] == "ValueError: from the page"
    ended = run_block("python", "import sys\nsys.exit(3)", tmp_path, env, warm)
    assert ended.returncode == 3
