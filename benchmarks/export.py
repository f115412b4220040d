"""A trained language model out of minitx, timed: each export format, and "Same as transformers?" on SmolLM2.

    python benchmarks/export.py --run checkpoints/lm-quick     # writes benchmarks/results/export.json

- export: `python -m minitx.export`'s own function on the run (load the run, write under a temporary
  name, rename), to a Hugging Face folder and to GGUF in every type, 5 times each into a fresh target;
- "Same as transformers?": SmolLM2 (loaded once, as the server keeps it) written as a Hugging Face folder,
  loaded by transformers, then both run on a 64-token text (forward pass, top tokens, 16 greedy tokens
  each): the whole first click, 5 times, each with a new transformers copy.

Targets (issue 49): each export of lm-quick under 10 s; "Same as transformers?" under 10 s on a 64-token text.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from common import write_result  # noqa: E402

from minitx.export import GGUF_TYPES  # noqa: E402
from minitx.export.cli import export  # noqa: E402

REPEATS = 5
TEXT = ("The film opens on a quiet street, and for the first twenty minutes nothing much happens; then the "
        "letter arrives, and everything the family believed about their father starts to come apart. By the "
        "end I had forgotten the slow start: the last scene, in the empty kitchen, is one of the best I have "
        "seen this year, and the acting")


def exports(run: Path) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for to, kind in [("hf", "f32")] + [("gguf", kind) for kind in GGUF_TYPES]:
            seconds, size = [], 0
            for n in range(REPEATS):
                target = Path(folder) / f"{to}-{kind}-{n}"
                written = export(run, to, target, kind)
                seconds.append(written["seconds"])
                size = written["bytes"]
            label = "hf" if to == "hf" else f"gguf-{kind}"
            results[label] = {"seconds": seconds, "median_s": statistics.median(seconds), "bytes": size}
            print(label, results[label], flush=True)
    return results


def same_as_transformers() -> dict:
    from minitx.export.same_as_transformers import compare, in_transformers
    from minitx.pretrained import load_pretrained

    smollm2 = load_pretrained("smollm2-135m")
    ids = smollm2.tokenizer.encode(TEXT).ids[:64]
    assert len(ids) == 64, len(ids)
    seconds, differences, same = [], [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        twin = in_transformers(smollm2.model, smollm2.tokenizer, smollm2.name)
        found = compare(smollm2.model, twin, ids, 16, engine=smollm2.engine)
        seconds.append(round(time.perf_counter() - started, 3))
        differences.append(found.largest_difference)
        same.append(found.continuation_minitx == found.continuation_transformers)
        del twin
    return {"seconds": seconds, "median_s": statistics.median(seconds), "largest_logit_difference": max(differences),
            "same_16_greedy_tokens": all(same), "text_tokens": len(ids)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True, help="an lm-quick run folder")
    args = parser.parse_args()
    formats = exports(Path(args.run))
    compared = same_as_transformers()
    write_result("export", {
        "run": Path(args.run).name, "exports": formats, "same_as_transformers_smollm2": compared,
        "targets": {"export_s": 10.0, "same_as_transformers_s": 10.0},
        "targets_met": {"export": all(f["median_s"] <= 10.0 for f in formats.values()),
                        "same_as_transformers": compared["median_s"] <= 10.0}})


if __name__ == "__main__":
    main()
