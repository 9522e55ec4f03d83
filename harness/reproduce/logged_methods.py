"""A logged run's own loss or optimizer made importable again, without trusting the name it logged.

A logged config may name any ``module:Class``; the run's tags say which modules it recorded
(``harness.method.<module>``: the sha256 of the source it trained with). A module the config names
without such a tag is refused before anything is imported. A run in the store trains with the module
here when its file, found without importing it, has that digest; else with the source the run logged,
said before it runs. An export's method is code from the export: it runs only with ``--rebuild-code``,
from the source the export carries (``methods/<module>.py``, checked against the digest).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import HarnessError, printable
from ..engine.config import check_methods
from ..engine.methods import load_logged_module, module_file, module_source
from ..records.runs import METHOD_FOLDER, METHOD_TAG


@dataclass
class LoggedMethod:
    """One module a logged run's config names, and where its code comes from."""

    module: str
    digest: str
    source: bytes | None  # the logged source to run; None: the module here, which has the same digest
    said: str  # why the logged source runs: "is not found here", "differs here (...)", "is the export's own"
    root: str | None = None  # the folder holding the module here (a rebuilt code's child imports it from there)


def named_modules(config):
    """{module: 'loss = ...'} of the ``module:Class`` names a config gives (registered names aside)."""
    named = {}
    for kind, name in (("loss", config.loss), ("optimizer", config.optimizer)):
        if ":" in name:
            named.setdefault(name.partition(":")[0], f"{kind} = {name!r}")
    return named


def plan_methods(logged, config, export, allowed):
    """The modules the config names, each checked against the run's tags and logged sources; nothing is
    imported or written. ``allowed``: an export's logged source may run (``--rebuild-code``)."""
    tags = logged.run["tags"]
    planned = []
    for module, setting in sorted(named_modules(config).items()):
        digest = tags.get(METHOD_TAG + module)
        if digest is None:
            raise HarnessError(
                f"{logged.where}: its config names {setting}, but the run recorded no source of module "
                f"{module!r} ({METHOD_TAG}{module}); nothing of it is imported"
            )
        planned.append(_plan_one(logged, module, digest, export, allowed))
    return planned


def _plan_one(logged, module, digest, export, allowed):
    if export:
        if not allowed:
            raise HarnessError(
                f"{logged.where}: its own method {module!r} ({METHOD_FOLDER}{module}.py, sha256 {digest[:12]}) is "
                "code from the export; it runs only with --rebuild-code"
            )
        said = "is the export's own"
    else:
        here = module_file(module)
        if here is not None and module_source(here)[1] == digest:
            return LoggedMethod(module, digest, None, "", _root(here, module))
        said = "is not found here" if here is None else f"differs here ({here}: sha256 {module_source(here)[1][:12]})"
    source = logged.artifact(f"{METHOD_FOLDER}{module}.py")
    if source is None or hashlib.sha256(source).hexdigest() != digest:
        raise HarnessError(
            f"{logged.where}: module {module!r} {said}, and the run carries no {METHOD_FOLDER}{module}.py "
            f"with its recorded digest (sha256 {digest[:12]})"
        )
    return LoggedMethod(module, digest, source, said)


def _root(path, module):
    """The folder ``module`` is imported from (``path`` is its file)."""
    depth = module.count(".") + (1 if path.endswith("__init__.py") else 0)
    return str(Path(path).resolve().parents[depth])


def consent(planned):
    """What of the planned methods runs from a logged source, as the consent line says it."""
    return [
        f"{METHOD_FOLDER}{m.module}.py (sha256 {m.digest[:12]}; module {m.module!r} {m.said})"
        for m in planned
        if m.source
    ]


def load_methods(planned, config, stack, where, err, say):
    """Write the logged sources to a temporary folder (``stack`` owns it) and import them; then check the
    config's methods. ``say``: print what runs first (else the rebuild's consent line said it).
    Returns the folders a rebuilt code's child imports them from."""
    folder, paths = None, []
    for method in planned:
        if method.source is None:
            paths.append(method.root)
            continue
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="harness-methods-")))
            paths.insert(0, str(folder))
        (folder / f"{method.module}.py").write_bytes(method.source)
        if say:
            line = (
                f"module {method.module!r} {method.said}: training with the run's logged source "
                f"{METHOD_FOLDER}{method.module}.py (sha256 {method.digest[:12]})"
            )
            print(printable(line), file=err)
        load_logged_module(method.module, str(folder / f"{method.module}.py"))
    check_methods(config, where)
    return paths
