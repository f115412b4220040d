"""`python -m minitx.inspect`: what built a model's next-token prediction, from a terminal.

    python -m minitx.inspect attribution --prompt "The capital of France is" --target " Paris"
    python -m minitx.inspect attribution --prompt "..." --target " Paris" --versus " London" --json
    python -m minitx.inspect graph --prompt "When Mary and John went to the store, John gave a drink to" --json

attribution prints the heads and feed-forward blocks that wrote most in the target token's direction at
the last position (direct logit attribution, minitx.attribution); graph prints the contribution graph's
edges that reach the last position (minitx.contribution_graph). --model is what `python -m
minitx.generate` takes: smollm2-135m (the default), a .gguf file, a model folder or a saved run. Bad input
ends with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json

from .analysis_input import MAX_TOKENS, analysis_text, target_token
from .arguments import OneLineArgumentParser
from .attribution import attribute, explainable, record
from .contribution_graph import contribution_graph
from .generate import cli as generate_cli


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="python -m minitx.inspect",
                                   description="What built a language model's next-token prediction.")
    parser.add_argument("analysis", choices=["attribution", "graph"],
                        help="attribution: each head's and block's part of a token's logit; graph: the routes "
                             "by which information reached the last position")
    parser.add_argument("--model", default=None,
                        help="smollm2-135m (default), a .gguf file, a model folder, a Hub id or a saved run")
    parser.add_argument("--prompt", required=True, help=f"the text (its last {MAX_TOKENS} tokens are read)")
    parser.add_argument("--target", default=None,
                        help="attribution: the token explained (default: the model's prediction), e.g. ' Paris'")
    parser.add_argument("--versus", default=None, help="attribution: explain target minus this token, e.g. ' London'")
    parser.add_argument("--top", type=int, default=10, help="attribution: how many parts to print (default 10)")
    parser.add_argument("--threshold", type=float, default=0.04,
                        help="graph: keep edges whose share is at least this (default 0.04)")
    parser.add_argument("--checkpoint-dir", default="checkpoints", help="where saved runs are (default: checkpoints/)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.top < 1:
            raise ValueError(f"--top must be at least 1, not {args.top}.")
        if not 0 <= args.threshold <= 1:
            raise ValueError(f"--threshold is a share between 0 and 1, not {args.threshold}.")
        args.dtype = "fp32"
        model, tokenizer, _, name, _, _, _ = generate_cli.load(args)
        problem = explainable(model)
        if problem:
            raise ValueError(problem)
        text = analysis_text(tokenizer, args.prompt)
        notes = list(text.notes)
        recording = record(model, text.ids)
        predicted = int(recording.logits[-1].argmax())
        target, other = predicted, None
        for flag, value in (("target", args.target), ("versus", args.versus)):
            if value is not None:
                token, note = target_token(tokenizer, value)
                notes += [note] if note else []
                target, other = (token, other) if flag == "target" else (target, token)
    except (ValueError, OSError) as error:
        parser.error(str(error).rstrip("."))
    piece = tokenizer.piece
    result = {"model": name, "tokens": [piece(i) for i in text.ids], "predicted": piece(predicted), "notes": notes}
    if args.analysis == "attribution":
        parts = attribute(model, recording, target, other=other)
        result |= {"target": piece(target), "versus": piece(other) if other is not None else None,
                   "logit": round(parts.logit, 4), "sum_of_parts": round(parts.total, 4),
                   "parts": [{"part": part, "contribution": round(value, 4)} for part, value in parts.top(args.top)]}
    else:
        edges = contribution_graph(model, recording).edges(-1, args.threshold)
        result |= {"threshold": args.threshold, "edges": [edge.as_dict() for edge in edges]}
    print(json.dumps(result) if args.json else as_text(result))
    return 0


def as_text(result: dict) -> str:
    tokens = result["tokens"]
    lines = [f"{result['model']}, {len(tokens)} tokens; it predicts {result['predicted']!r} next."]
    lines += [f"note: {note}" for note in result["notes"]]
    if "parts" in result:
        what = repr(result["target"]) + (f" minus {result['versus']!r}" if result["versus"] is not None else "")
        lines.append(f"logit of {what}: {result['logit']:.3f}, the parts add up to {result['sum_of_parts']:.3f}")
        lines += [f"  {part['part']:>20}  {part['contribution']:+8.3f}" for part in result["parts"]]
    else:
        lines.append(f"{len(result['edges'])} edges with a share of at least {result['threshold']:g}, "
                     "from layer 0 up (L: the block; a stream node before block L):")
        for edge in result["edges"]:
            source, target = edge["from"], edge["to"]
            head = f" head {edge['head']}" if "head" in edge else ""
            lines.append(f"  {source[0]} L{source[1]} {tokens[source[2]]!r} -> {target[0]} L{target[1]} "
                         f"{tokens[target[2]]!r}: {edge['kind']}{head}, {edge['share']:.3f}")
    return "\n".join(lines)
