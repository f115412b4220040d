"""What of minitx a learner's file uses, read from its syntax tree (never by matching text).

`import minitx.x`, `from minitx.x import y`, `__import__("minitx.x")` and
`importlib.import_module("minitx.x")` bind names; every attribute chain read from such a name is a
use (`A.explicit_attention` after `import minitx.attention as A`). A use reaches the lab's own answer
when it names one of the functions the lab's answer is written with (`Lab.answer`, its reference),
anything in minitx.labs (which holds every lab's answer), or a whole module holding one of them that
the check cannot follow (passed to getattr, imported by a call). A comment or a string that says
"minitx" is no use.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass

from .lab import Lab


@dataclass
class MinitxUse:
    sentence: str                 # what the file uses, for the report ("" when nothing)
    borrows_answer: bool          # it reaches the lab's own answer


def _chain(node: ast.AST) -> list[str] | None:
    """a.b.c as ["a", "b", "c"], or None when it is not a plain chain of names."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _imported_by_call(node: ast.AST) -> str | None:
    """The module an __import__(...) or importlib.import_module(...) call names ("?" when it is computed),
    or None when node is no such call."""
    if not isinstance(node, ast.Call) or _chain(node.func) not in (["__import__"], ["importlib", "import_module"],
                                                                  ["import_module"]):
        return None
    first = node.args[0] if node.args else None
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else "?"


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def uses(source: str) -> tuple[list[tuple[str, int, bool]], bool]:
    """Every minitx name the file reads: (dotted name, line, whether it is a whole module the check
    cannot follow), and whether the file imports a module by a name computed when it runs."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return [], False
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    bound: dict[str, str] = {}           # local name -> what of minitx it is
    found, computed = set(), False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound.update({alias.asname or "minitx": alias.name if alias.asname else "minitx"
                          for alias in node.names if alias.name.split(".")[0] == "minitx"})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "minitx" and not node.level:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                found.add((f"{node.module}.{alias.name}", node.lineno, False))
        elif (module := _imported_by_call(node)) is not None:
            computed |= module == "?"
            if module.split(".")[0] == "minitx":
                found.add((module, node.lineno, True))
                parent = parents.get(node)
                if isinstance(parent, ast.Assign):
                    bound.update({t.id: module for t in parent.targets if isinstance(t, ast.Name)})
    for node in ast.walk(tree):          # the longest chain read from each bound name
        if isinstance(node, (ast.Attribute, ast.Name)) and not isinstance(parents.get(node), ast.Attribute):
            parts = _chain(node)
            if parts and parts[0] in bound and isinstance(getattr(node, "ctx", None), ast.Load):
                name = ".".join([bound[parts[0]], *parts[1:]])
                found.add((name, node.lineno, len(parts) == 1 and _is_module(name)))
    return sorted(found, key=lambda f: (f[1], f[0])), computed


def minitx_use(lab: Lab, source: str) -> MinitxUse:
    """What the learner's file uses of minitx, and whether it reaches the lab's own answer."""
    found, computed = uses(source)
    answers = {f"{fn.__module__}.{fn.__qualname__}" for fn in (*lab.answer, lab.reference)}

    def reaches(name: str, whole_module: bool) -> bool:
        return name.startswith("minitx.labs") or any(
            name == a or name.startswith(a + ".") or (whole_module and a.startswith(name + ".")) for a in answers)

    borrowed = next((name for name, _, whole in found if reaches(name, whole)), None)
    parts = []
    if found:
        names = list(dict.fromkeys(f"`{name}` (line {line})" for name, line, _ in found))
        parts.append(f"Your file uses minitx: {', '.join(names[:3])}{' and more' if len(names) > 3 else ''}.")
    if computed:
        parts.append("It imports a module by a name computed when it runs, which the check cannot follow.")
    if borrowed:
        parts.append(f"`{borrowed}` is minitx's own answer to this lab, so a pass with it does not count as yours.")
    return MinitxUse(" ".join(parts), borrowed is not None)
