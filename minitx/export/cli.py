"""`python -m minitx.export`: a trained language model out of minitx, as a Hugging Face folder or a GGUF file.

    python -m minitx.export my-lm-run --to hf exported/my-lm          # transformers reads the folder
    python -m minitx.export my-lm-run --to gguf my-lm.gguf --type q8_0   # llama.cpp runs the file

RUN is a saved run: its name in --checkpoint-dir, or its folder. The export is written under a
temporary name beside the target and renamed when complete, so a failure leaves nothing half-written;
an existing target is refused unless --force. Bad input ends with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import time
from pathlib import Path

from ..arguments import OneLineArgumentParser
from ..checkpoint import load_run, named_run
from .exportable import GGUF_TYPES, export_problem
from .gguf_file import write_gguf
from .hf_folder import write_hf_folder


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="python -m minitx.export",
                                   description="Write a language model trained with minitx as a Hugging Face "
                                               "folder or a GGUF file.")
    parser.add_argument("run", help="a saved run: its name in --checkpoint-dir, or its folder")
    parser.add_argument("--to", required=True, choices=["hf", "gguf"], help="hf: a model folder; gguf: one file")
    parser.add_argument("target", metavar="TARGET", help="the folder (hf) or file (gguf) to write")
    parser.add_argument("--type", default="f32", choices=GGUF_TYPES,
                        help="gguf: the matrices' type (default f32; q8_0, q4_1, q4_0 are GGML's blocks)")
    parser.add_argument("--force", action="store_true", help="replace a target that exists")
    parser.add_argument("--checkpoint-dir", default="checkpoints", help="where saved runs are (default: checkpoints/)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line: what was written, its size")
    return parser


def export(run_path: Path, to: str, target: Path, kind: str = "f32", force: bool = False) -> dict:
    """Write the run to target ("hf": a folder, "gguf": a file), through a temporary name. Returns what was
    written: {"target", "bytes", "seconds", "tensors" (gguf: how many in each type)}."""
    started = time.perf_counter()
    if target.exists() and not force:
        raise ValueError(f"{target} exists; give another name, or --force to replace it.")
    if not target.parent.is_dir():
        raise ValueError(f"{target.parent} is not a folder to write into.")
    loaded = load_run(run_path)
    problem = export_problem(loaded.model_config, loaded.tokenizer, to)
    if problem:
        raise ValueError(problem)
    staging = target.parent / f".{target.name}.{secrets.token_hex(6)}"
    try:
        staging.mkdir()             # an ordinary folder, as the user's umask makes them (mkdtemp's is private)
    except OSError as error:
        raise ValueError(f"cannot write into {target.parent} ({error.strerror}).") from None
    model, name, counts = loaded.model.eval(), run_path.name, {}
    try:
        if to == "hf":
            write_hf_folder(model, loaded.tokenizer, staging, name)
            written = staging
        else:
            written = staging / target.name
            counts = write_gguf(model, loaded.tokenizer, written, name, kind)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        written.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) if target.is_dir() else target.stat().st_size
    return {"target": str(target), "bytes": size, "seconds": round(time.perf_counter() - started, 3), "tensors": counts}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.to == "hf" and args.type != "f32":
            raise ValueError("--type is for GGUF files; a Hugging Face folder holds float32 weights.")
        result = export(named_run(args.run, args.checkpoint_dir), args.to, Path(args.target), args.type, args.force)
    except (ValueError, OSError) as error:
        parser.error(str(error).rstrip("."))
    what = "a Hugging Face folder" if args.to == "hf" else f"a GGUF file ({args.type})"
    print(f"wrote {what}: {result['target']}, {result['bytes'] / 1e6:,.1f} MB in {result['seconds']:.1f} s")
    if args.json:
        print(json.dumps(result))
    return 0
