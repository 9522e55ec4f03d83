"""The package's folders are its layers: each group imports only the groups below it, read from the code's
own imports (every ``import``, at the top of a module or inside a function), not from a list of files."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"
LAYERS = ("common", "engine", "studies", "records", "reproduce", "analysis", "sweep", "top")
"""Bottom to top. ``top``: the commands, the CLI and the notebook API, which wire the others."""
FORBIDDEN = {
    "common": {"mlflow", "optuna", "sklearn"},
    "engine": {"mlflow", "optuna"},
    "studies": {"mlflow", "optuna"},
    "records": {"optuna"},
    "reproduce": {"optuna"},
    "analysis": {"optuna", "harness.engine.training"},
}
"""Third-party packages (and modules) a group never imports: the numpy core knows nothing of MLflow or
Optuna; the analysis reads records, it neither trains nor searches."""


def group_of(module):
    """The layer of ``harness.x.y`` (a module of this package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else "top"


def imports(path, package_dir=PACKAGE):
    """(line, absolute module) of every import in a file of the package."""
    module = ".".join(("harness", *path.relative_to(package_dir).with_suffix("").parts))
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module
            else:
                here = module.split(".")[: len(module.split(".")) - node.level]
                base = ".".join(here + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
            found += [(node.lineno, name if _is_module(name, package_dir) else base) for name in names]
    return module, found


def _is_module(name, package_dir):
    parts = name.split(".")
    if parts[0] != "harness":
        return False
    path = package_dir.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(package=PACKAGE):
    """Lines that import upwards or import what their group never may, one string each."""
    found = []
    for path in sorted(package.rglob("*.py")):
        module, targets = imports(path, package)
        mine = group_of(module)
        for line, target in targets:
            where = f"{path.relative_to(package.parent)}:{line}"
            if target.startswith("harness.") and LAYERS.index(group_of(target)) > LAYERS.index(mine):
                found.append(f"{where}: {mine} imports {target} ({group_of(target)} is above it)")
            for banned in FORBIDDEN.get(mine, ()):
                if target == banned or target.startswith(banned + "."):
                    found.append(f"{where}: {mine} imports {target}")
    return found


def test_every_group_imports_only_the_groups_below_it():
    assert violations() == []


def test_each_group_is_a_folder_and_nothing_else_lies_beside_them():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {*LAYERS[:-1], "commands"}
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py", "api.py", "cli.py"]


@pytest.mark.parametrize(
    "group,line",
    [
        ("engine", "from ..records.operations import HARNESS_TAG"),
        ("engine", "import optuna"),
        ("analysis", "from ..engine.training import train_model"),
        ("records", "from ..sweep.conditions import seed_of"),
    ],
)
def test_an_import_that_runs_up_or_crosses_a_ban_is_found(tmp_path, group, line):
    """The check itself: a copy of the package with one bad line in one group fails it."""
    import shutil

    copy = tmp_path / "harness"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / group / "bad.py").write_text(f"def f():\n    {line}\n")
    found = violations(copy)
    assert len(found) == 1 and f"harness/{group}/bad.py:2" in found[0]


def test_no_function_runs_over_60_lines_outside_the_training_loop():
    """A reader sees a whole step at once; the training loop is the one place allowed to be longer."""
    allowed = {("engine/training.py", "_train_stack")}
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                where = (str(path.relative_to(PACKAGE)), node.name)
                if where not in allowed:
                    long.append(f"{where[0]}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


COMMAND_PROTOCOL = {"add_parser", "run"}
"""What every module of commands/ defines for ``cli.py``: one protocol, not one name used for two things."""


def defined_twice(package=PACKAGE):
    """A module file name, or a top-level public function or class name, defined in more than one place:
    one string each, naming the places (a reader, ``grep`` and a traceback then find the one meant)."""
    places = defaultdict(list)
    for path in sorted(package.rglob("*.py")):
        where = str(path.relative_to(package))
        if path.name not in ("__init__.py", "__main__.py"):
            places[f"module {path.name}"].append(where)
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name[0] == "_":
                continue
            if path.parent.name == "commands" and node.name in COMMAND_PROTOCOL:
                continue
            places[node.name].append(where)
    return [f"{name}: {', '.join(found)}" for name, found in places.items() if len(found) > 1]


def test_each_module_name_and_public_name_is_defined_once():
    assert defined_twice() == []


@pytest.mark.parametrize(
    "file,text,found",
    [
        ("records/compare.py", "", "module compare.py: commands/compare.py, records/compare.py"),
        ("sweep/extra.py", "def read_study(path):\n    pass\n", "read_study: studies/parse.py, sweep/extra.py"),
        ("records/extra.py", "class Study:\n    pass\n", "Study: records/extra.py, studies/study.py"),
        ("records/extra.py", "def run():\n    pass\n", "run: cli.py, records/extra.py"),
    ],
)
def test_a_name_defined_twice_is_found(tmp_path, file, text, found):
    """The check itself: a copy of the package with one name defined again fails it; a command module's
    ``add_parser`` and ``run`` do not."""
    import shutil

    copy = tmp_path / "harness"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / file).write_text(text)
    assert defined_twice(copy) == [found]
