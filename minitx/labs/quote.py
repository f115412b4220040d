"""Quoting the learner's own line: found in the syntax tree of their file, never by matching text
(a comment or a string that says "softmax" is not a line that computes one)."""

from __future__ import annotations

import ast

OPERATORS = {"@": ast.MatMult, "/": ast.Div, "//": ast.FloorDiv, "*": ast.Mult, "**": ast.Pow, "+": ast.Add,
             "-": ast.Sub, "<<": ast.LShift, "|": ast.BitOr}
COMPARISONS = {">=": ast.GtE, ">": ast.Gt, "<=": ast.LtE, "<": ast.Lt}
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
    """Whether `node` is what the anchor names: a call's name ("softmax"), an operator ("@", "/", ">="),
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
        return isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, OPERATORS[anchor])
    if anchor in COMPARISONS:
        return isinstance(node, ast.Compare) and any(isinstance(op, COMPARISONS[anchor]) for op in node.ops)
    return _called(node) == anchor


def find_line(source: str, anchors: tuple[str, ...], function: str | None = None) -> tuple[int, str] | None:
    """The first statement of the learner's file (of `function` if it defines one) that holds the first
    anchor found: its line and its text on one line; None when none is there or the file does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    scope = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function), tree)
    lines = source.splitlines()
    for anchor in anchors:
        for where in (scope, tree):                        # the function first, then its helpers
            found = sorted((statement for statement in ast.walk(where) if isinstance(statement, ast.stmt)
                            and any(_is(anchor, part) for part in _own_parts(statement))), key=lambda n: n.lineno)
            if found:
                first = found[0]
                segment = lines[first.lineno - 1] if hasattr(first, "body") else ast.get_source_segment(source, first)
                text = " ".join(line.strip() for line in (segment or "").splitlines())
                return first.lineno, text if len(text) <= 100 else text[:97] + "..."
    return None


def _own_parts(statement: ast.stmt):
    """The nodes a statement holds itself: a simple one whole, a compound one (if, while, for, with)
    only its header, not the statements in its body."""
    if not hasattr(statement, "body"):
        return ast.walk(statement)
    header = [getattr(statement, name) for name in ("test", "iter", "target") if hasattr(statement, name)]
    header += [item.context_expr for item in getattr(statement, "items", [])]
    return (node for part in header for node in ast.walk(part))


def quoted(message: str, source: str, anchors: tuple[str, ...], function: str) -> tuple[str, int | None]:
    """The message with the learner's line it points at, and that line's number."""
    found = find_line(source, anchors, function) if anchors and source else None
    if found is None:
        return message, None
    return f"{message} Your line {found[0]}: `{found[1]}`", found[0]
