"""`python -m minitx.generate`: write with a language model from the command line, a pretrained one or one trained here.

    python -m minitx.generate --chat --prompt "What is the capital of France?"
    python -m minitx.generate --model smollm2-135m --prompt "Once upon a time" --temperature 0.8 --seed 1
    python -m minitx.generate --model my-lm-run --prompt "This movie"       # a run in checkpoints/
    python -m minitx.generate --chat --prompt "Hi" --json                   # ends with one JSON line

--model is a model minitx knows (smollm2-135m, the default unless $MINITX_PRETRAINED says
otherwise), a .gguf file, a Hugging Face model folder or Hub id, or a saved run (its name in
--checkpoint-dir, or its folder). Tokens are printed as they come. Bad flags and a model that
cannot be found end with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from ..arguments import OneLineArgumentParser
from ..checkpoint import CONFIG_FILE, load_run
from ..pretrained import DTYPES, ENVIRONMENT, PretrainedUnavailable, load_pretrained
from ..quant.stored import in_blocks_of
from . import check_sampling, generate, prompt_ids


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="python -m minitx.generate",
                                   description="Write with a language model: SmolLM2-135M-Instruct, another "
                                               "Llama-family checkpoint, or a run trained with minitx.train.")
    parser.add_argument("--model", default=None,
                        help=f"smollm2-135m, a .gguf file, a model folder, a Hub id (owner/name) or a saved run "
                             f"(default: ${ENVIRONMENT}, else smollm2-135m)")
    parser.add_argument("--prompt", required=True, help="the text to continue, or with --chat the message to answer")
    parser.add_argument("--chat", action="store_true",
                        help="put the prompt in the model's chat template and print the answer only")
    parser.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="at most this many (default 128)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0 (the default) takes the most likely token every time; higher is more varied")
    parser.add_argument("--top-k", type=int, default=0, metavar="K", help="sample among the K most likely (0: off)")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P",
                        help="sample among the most likely tokens that make up P of the probability (1: off)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed writes the same text (default 0)")
    parser.add_argument("--no-cache", action="store_true", help="no KV cache: run the whole text again for every token")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32",
                        help="the weights in fp32 (default), bf16, or q4: 4-bit blocks as a GGUF file stores "
                             "them (a model stored otherwise, or trained here, is quantized on load)")
    parser.add_argument("--checkpoint-dir", default="checkpoints", help="where saved runs are (default: checkpoints/)")
    parser.add_argument("--json", action="store_true",
                        help="end with one JSON line: the text, new tokens, speeds and load time")
    return parser


def _saved_run(model: str | None, checkpoint_dir: str) -> Path | None:
    """The run folder --model names, or None if it names no saved run."""
    if not model:
        return None
    for candidate in (Path(model), Path(checkpoint_dir) / model):
        if (candidate / CONFIG_FILE).is_file() and (candidate / "model.safetensors").is_file() \
                and not (candidate / "tokenizer_config.json").exists():
            return candidate
    return None


def load(args) -> tuple[torch.nn.Module, object, object, str, float, object, tuple[str, ...]]:
    """(model, tokenizer, chat template or None, name, seconds to load, decode engine or None, notes) for --model."""
    started = time.perf_counter()
    run = _saved_run(args.model, args.checkpoint_dir)
    if run is not None:
        loaded = load_run(run)
        if not loaded.model_config.is_lm:
            raise ValueError(f"run {run.name} is a sentiment classifier; it cannot write text.")
        model, engine, notes = loaded.model.eval(), None, ()
        if args.dtype == "q4":
            model, engine, notes = in_blocks_of(model)
        elif args.dtype == "bf16":
            model = model.to(torch.bfloat16)
        return model, loaded.tokenizer, None, run.name, time.perf_counter() - started, engine, notes
    pretrained = load_pretrained(args.model, args.dtype)
    return (pretrained.model, pretrained.tokenizer, pretrained.chat, pretrained.name, pretrained.load_seconds,
            pretrained.engine, pretrained.notes)


class Stream:
    """Prints the new text as tokens come. A byte-level token may be part of a character that the next
    finishes: the text is printed only as far as it is whole."""

    def __init__(self, tokenizer, out=None):
        self.tokenizer, self.out, self.ids, self.printed = tokenizer, out or sys.stdout, [], ""

    def __call__(self, token: int) -> None:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        whole = text.rstrip("\ufffd")
        if len(whole) > len(self.printed) and whole.startswith(self.printed):
            self.out.write(whole[len(self.printed):])
            self.out.flush()
            self.printed = whole


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_sampling(args.temperature, args.top_k, args.top_p)
        if args.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be at least 1, not {args.max_new_tokens}.")
        model, tokenizer, chat, name, load_seconds, engine, load_notes = load(args)
        if args.chat and chat is None:
            raise ValueError(f"{name} has no chat template: leave out --chat and give it text to continue.")
        ids = chat.encode([{"role": "user", "content": args.prompt}]) if args.chat else prompt_ids(tokenizer, args.prompt)
        if not ids:
            raise ValueError(f"the prompt is empty and {name} starts a text with no token of its own: give it some text.")
    except (ValueError, OSError) as error:       # PretrainedUnavailable is a ValueError: one sentence and the fix
        parser.error(str(error).rstrip("."))
    stream = Stream(tokenizer)
    try:
        out = generate(model, ids, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed,
                       use_cache=not args.no_cache, eos_id=tokenizer.stop_ids, n_top=0, engine=engine,
                       on_token=stream)
    except KeyboardInterrupt:
        print("\ninterrupted.", file=sys.stderr)
        return 130
    print(flush=True)
    for note in (*load_notes, *out.notes):
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({
            "model": name, "text": tokenizer.decode(out.new_ids), "new_tokens": len(out.new_ids),
            "prompt_tokens": len(out.prompt_ids), "stopped_at_end": out.stopped_at_eos,
            "tokens_per_second": round(out.tokens_per_second, 2),
            "prefill_tokens_per_second": round(out.prefill_tokens_per_second, 1),
            "load_seconds": round(load_seconds, 2), "seconds": round(out.seconds, 3), "cache": not args.no_cache,
            "dtype": args.dtype, "threads": torch.get_num_threads()}), flush=True)
    return 0
