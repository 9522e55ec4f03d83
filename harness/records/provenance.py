"""What a run needs written down to be reproduced later: code version, package versions, BLAS."""

import functools
import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .tags import GIT_COMMIT, GIT_DIFF, GIT_DIRTY, VERSION

PACKAGES = ("numpy", "scikit-learn", "pandas", "mlflow", "optuna", "matplotlib", "threadpoolctl")


def _git(*args):
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state():
    """(commit, dirty) of the checkout the harness runs from; ('unknown', 'unknown') outside git."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return "unknown", "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, "true" if status else "false"


DIFF_ARTIFACT = "git_diff.patch"
MAX_DIFF_BYTES = 1_000_000


@functools.lru_cache(maxsize=1)
def code_diff():
    """The uncommitted change to tracked files (``git diff HEAD``), so a run from a dirty tree can be
    rebuilt exactly; untracked files are never read (they may hold secrets). None when the tree is clean
    or outside git; a diff over ``MAX_DIFF_BYTES`` is left out (the ``git_diff`` tag says so)."""
    commit, dirty = git_state()
    return read_diff(Path(__file__).resolve().parent) if dirty == "true" else None


def read_diff(folder):
    """``git diff HEAD --binary`` of the checkout holding ``folder`` (tracked files only), or None."""
    try:
        out = subprocess.run(["git", "-C", str(folder), "diff", "HEAD", "--binary"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or None) if out.returncode == 0 else None


def diff_tag(diff):
    if diff is None:
        return {}
    if len(diff) > MAX_DIFF_BYTES:
        return {GIT_DIFF: f"too large ({len(diff)} bytes; not logged)"}
    return {GIT_DIFF: hashlib.sha256(diff).hexdigest()[:16]}


def package_versions():
    versions = {"python": platform.python_version()}
    for name in ("harness", *PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def blas_info():
    from threadpoolctl import threadpool_info

    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not blas:
        return {"blas": "unknown", "blas_threads": "unknown"}
    names = sorted({f"{p.get('internal_api')} {p.get('version')} {p.get('architecture') or ''}".strip() for p in blas})
    return {"blas": "; ".join(names), "blas_threads": str(blas[0].get("num_threads"))}


def source_tags(argv=None):
    """The run context ``mlflow.start_run`` would record (the UI's Source and User columns): the command
    that made the run, as typed (secrets hidden word by word before quoting: a password may hold a
    space), its commit and its user."""
    import getpass
    import shlex
    import sys

    from ..common.urls import redact, secrets_in

    words = list(sys.argv if argv is None else argv)
    hidden = {secret for word in words for secret in secrets_in(word)}
    command = " ".join(["harness", *(shlex.quote(redact(word, hidden)) for word in words[1:])])
    tags = {"mlflow.source.name": redact(command, hidden)[:500], "mlflow.source.type": "LOCAL"}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):
        pass
    commit, _ = git_state()
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


def provenance_tags():
    _, dirty = git_state()
    tags = {GIT_DIRTY: dirty, "harness.platform": platform.platform(), **diff_tag(code_diff())}  # commit: source_tags
    tags.update({f"{VERSION}{k}": v for k, v in package_versions().items()})
    return tags


def logged_commit(tags):
    """The commit a run was made at (``tags``: under today's names, ``tags.current_names``): MLflow's own tag, or
    ``git_commit`` on runs made before 0.2."""
    return tags.get("mlflow.source.git.commit") or tags.get(GIT_COMMIT)
