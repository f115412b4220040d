"""The exported GGUF file run by llama.cpp against minitx: the same text written, the same perplexity.

    python benchmarks/export_llama_cpp.py --run checkpoints/lm-quick --llama-bin path/to/llama.cpp/build/bin

Needs llama.cpp built (benchmarks/README.md says how; never committed). For each of f32 and q8_0:
the run exported with `minitx.export`, then
- greedy text: `llama-simple` continues "This movie" for 40 tokens; minitx continues the same ids;
- perplexity: `llama-perplexity` on 20 IMDB test reviews (chunks of the model's context, the second half
  of each chunk scored, each chunk starting with the start token, as llama.cpp does); minitx computes the
  same chunks the same way, on the model read back from the very file.
Writes benchmarks/results/export-llama-cpp.json.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from common import write_result  # noqa: E402

import torch  # noqa: E402

from minitx.data import load_imdb  # noqa: E402
from minitx.export.cli import export  # noqa: E402
from minitx.generate import generate  # noqa: E402
from minitx.pretrained import load_pretrained  # noqa: E402

PROMPT = "This movie"


@torch.inference_mode()
def minitx_perplexity(model, tokenizer, text: str, n_ctx: int) -> tuple[float, int]:
    """llama-perplexity's procedure: the text's tokens after the start token, cut into chunks of n_ctx,
    each chunk's first token made the start token, the second half of each chunk scored."""
    tokens = tokenizer.start_ids + tokenizer.encode(text).ids
    first, nll, count = n_ctx // 2, 0.0, 0
    for chunk in range(len(tokens) // n_ctx):
        batch = tokens[chunk * n_ctx:(chunk + 1) * n_ctx]
        batch[0] = tokenizer.start_ids[0]
        logits = model(torch.tensor([batch])).logits[0].float().log_softmax(-1)      # (n_ctx, V)
        targets = torch.tensor(batch[first + 1:])
        nll -= float(logits[first:-1].gather(1, targets[:, None]).sum())
        count += len(targets)
    return math.exp(nll / count), count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--llama-bin", required=True, help="llama.cpp's build/bin folder")
    args = parser.parse_args()
    binaries = Path(args.llama_bin)
    reviews = load_imdb()["test"].shuffle(seed=0).select(range(20))["text"]
    text = "\n\n".join(reviews)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "reviews.txt"
        corpus.write_text(text)
        for kind in ("f32", "q8_0"):
            file = Path(folder) / f"lm-quick-{kind}.gguf"
            export(Path(args.run), "gguf", file, kind)
            back = load_pretrained(file, use_cache=False)
            model, tokenizer, n_ctx = back.model, back.tokenizer, back.model.cfg.max_len
            ids = tokenizer.start_ids + tokenizer.encode(PROMPT).ids
            ours = PROMPT + tokenizer.decode(generate(model, ids, 40, temperature=0, n_top=0, eos_id=None).new_ids)
            simple = subprocess.run([str(binaries / "llama-simple"), "-m", str(file), "-n", "40", PROMPT],
                                    capture_output=True, text=True, timeout=300)
            theirs = simple.stdout.strip().removeprefix(tokenizer.id_to_token(ids[0]))   # it prints the start token
            perplexity = subprocess.run([str(binaries / "llama-perplexity"), "-m", str(file), "-f", str(corpus),
                                         "-c", str(n_ctx), "-t", "2", "-b", str(n_ctx)],
                                        capture_output=True, text=True, timeout=600)
            found = re.search(r"Final estimate: PPL = ([\d.]+)", perplexity.stdout + perplexity.stderr)
            ppl, scored = minitx_perplexity(model, tokenizer, text, n_ctx)
            results[kind] = {"minitx_text": ours, "llama_cpp_text": theirs, "same_text": theirs == ours, "minitx_perplexity": round(ppl, 4),
                             "llama_cpp_perplexity": float(found.group(1)) if found else None,
                             "tokens_scored": scored}
            print(kind, results[kind], flush=True)
            if not found:
                print((perplexity.stdout + perplexity.stderr)[-2000:])
    write_result("export-llama-cpp", {"run": Path(args.run).name, "reviews": 20, "results": results})


if __name__ == "__main__":
    main()
