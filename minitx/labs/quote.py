"""Quoting the learner's own line: found in the syntax tree of their file, never by matching text
(a comment or a string that says "softmax" is not a line that computes one)."""

from __future__ import annotations

import ast

OPERATORS = {"@": ast.MatMult, "/": ast.Div, "*": ast.Mult, "**": ast.Pow, "<<": ast.LShift, "|": ast.BitOr}
WRITING_METHODS = {"copy_", "index_copy_", "index_put_", "scatter_", "masked_scatter_", "fill_"}


def _called(node: ast.AST) -> str | None:
    """The name a call calls: torch.softmax, F.softmax and x.softmax are all "softmax"."""
    if isinstance(node, ast.Call):
        function = node.func
        return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
    return None


def _subscripted(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _is(anchor: str, node: ast.AST) -> bool:
    """Whether `node` is what the anchor names: a call's name ("softmax"), an operator ("@", "/"),
    or a write into an argument ("write:cache_k": cache_k[...] = ..., cache_k.copy_(...))."""
    if anchor.startswith("write:"):
        target = anchor[len("write:"):]
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
            return any(isinstance(t, ast.Subscript) and _subscripted(t) == target for t in flat)
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in WRITING_METHODS and _subscripted(node.func.value) == target)
    if anchor in OPERATORS:
        return isinstance(node, ast.BinOp) and isinstance(node.op, OPERATORS[anchor])
    return _called(node) == anchor


def find_line(source: str, anchors: tuple[str, ...], function: str | None = None) -> tuple[int, str] | None:
    """The first statement of the learner's file (of `function` if it defines one) that holds the first
    anchor found: its line and its text on one line; None when none is there or the file does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    scope = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function), tree)
    for anchor in anchors:
        for where in (scope, tree):                        # the function first, then its helpers
            simple = [n for n in ast.walk(where) if isinstance(n, ast.stmt) and not hasattr(n, "body")]
            found = sorted((n for n in simple if any(_is(anchor, part) for part in ast.walk(n))),
                           key=lambda n: n.lineno)
            if found:
                text = " ".join(line.strip() for line in (ast.get_source_segment(source, found[0]) or "").splitlines())
                return found[0].lineno, text if len(text) <= 100 else text[:97] + "..."
    return None


def quoted(message: str, source: str, anchors: tuple[str, ...], function: str) -> tuple[str, int | None]:
    """The message with the learner's line it points at, and that line's number."""
    found = find_line(source, anchors, function) if anchors and source else None
    if found is None:
        return message, None
    return f"{message} Your line {found[0]}: `{found[1]}`", found[0]
