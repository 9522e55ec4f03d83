"""Kill a sweep at random moments, resume it, and check its records after every resume.

    .venv/bin/python scripts/kill_resume_loop.py [--study studies/quickstart.toml] [--kills 10] [--seed 0]
        [--workers 1] [--flags "--trials 8"]

Each round starts the study in a fresh folder, SIGKILLs it at a random moment (the first round within
the first second, while the tracking store is being created; the others anywhere in the expected
run time; half of the kills hit the whole process group, half only the command's process, whose
recorder and workers must then end by themselves), resumes it with the same command, and checks:
exact budget, unique trial numbers, nothing RUNNING, one run holding its results per trial and per
confirmation seed, and the resumed sweep's summary equal to ``harness compare``'s table. Prints one
line per round and the counts; exits 1 if any round found a problem.
"""

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CODE = ROOT  # the checkout whose commands are run (--code: an older one, to compare); the checks are ROOT's


def harness(args, cwd, **kw):
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(CODE)},
        **kw,
    )


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def one_round(study_file, folder, moment, group, flags, workers):
    from harness.records.recorder import InlineRecorder
    from harness.studies.parse import read_study
    from harness.studies.study import resolve
    from harness.sweep.audit import audit

    command = [sys.executable, "-m", "harness", "sweep", str(study_file), "--workers", str(workers), *flags]
    process = subprocess.Popen(
        command,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(CODE)},
    )
    time.sleep(moment)
    finished_first = process.poll() is not None
    if not finished_first:
        os.killpg(process.pid, signal.SIGKILL) if group else os.kill(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(1.0)  # what a user does between the kill and typing the command again
    resumed = harness(["sweep", str(study_file), "--workers", str(workers), *flags, "--json"], folder, timeout=900)
    if resumed.returncode != 0:
        return finished_first, [f"resume exited {resumed.returncode}: {resumed.stderr.strip()[-300:]}"]
    summary = last_json(resumed.stdout)["summary"]
    study = resolve(read_study(study_file), **vars(_flags(flags)))
    problems = audit(
        study,
        f"journal:{folder / 'mlruns' / 'optuna' / f'{study.name}.journal'}",
        InlineRecorder(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"),
        summary,
    )
    compared = harness(
        ["compare", study.name, "--format", "json", "--out", str(folder / "report")], folder, timeout=600
    )
    if compared.returncode != 0:
        problems.append(f"compare exited {compared.returncode}: {compared.stderr.strip()[-300:]}")
    elif _conditions(last_json(compared.stdout)) != summary:
        problems.append("compare's table differs from the resumed sweep's summary")
    return finished_first, problems


def _conditions(document):
    return document["conditions"] if isinstance(document, dict) else document


def _flags(flags):
    parser = argparse.ArgumentParser()
    for name in ("trials", "epochs", "confirm_seeds", "stack"):
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=int)
    return parser.parse_known_args(flags)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(ROOT / "studies" / "quickstart.toml"))
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--flags", default="", help='extra sweep flags, e.g. "--trials 8"')
    parser.add_argument("--span", type=float, default=14.0, help="seconds a sweep of the study takes here")
    parser.add_argument("--code", help="run the commands of another checkout (to measure an older version)")
    args = parser.parse_args()
    global CODE
    CODE = Path(args.code).resolve() if args.code else ROOT
    rng = random.Random(args.seed)
    flags = shlex.split(args.flags)
    clean = 0
    for round_ in range(args.kills):
        moment = rng.uniform(0.0, 1.0) if round_ == 0 else rng.uniform(0.0, args.span)
        group = rng.random() < 0.5
        with tempfile.TemporaryDirectory(prefix="kill-resume-") as tmp:
            start = time.perf_counter()
            finished_first, problems = one_round(
                Path(args.study).resolve(), Path(tmp), moment, group, flags, args.workers
            )
            took = time.perf_counter() - start
        clean += not problems
        what = "finished before the kill" if finished_first else ("process group" if group else "command only")
        print(
            f"round {round_ + 1}: kill at {moment:5.2f} s ({what}), resume + checks {took:5.1f} s: "
            + ("clean" if not problems else f"{len(problems)} problem(s): " + "; ".join(problems[:3])),
            flush=True,
        )
    print(f"{args.kills} kills, {clean} clean, {args.kills - clean} with problems")
    return 0 if clean == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
