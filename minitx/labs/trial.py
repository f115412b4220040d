"""A learner's function inside a real language model: SmolLM2 writing with your attention, RoPE, RMSNorm...

Both runs are jobs forked from one fork server that has loaded the model (neither loads it again):
minitx's, in a process that loads nothing of the learner's; the learner's, with their function at its
swap point (minitx.labs.demos.write_with). The comparison is made here: the same greedy text? the
largest difference of the logits after the prompt? A 135 M-parameter model takes more time: TRY_LIMITS.
"""

from __future__ import annotations

from dataclasses import replace

from ..sandbox.bubblewrap import readable_folders
from ..sandbox.job import ForkServers, Stopped
from ..sandbox.limits import LIMITS
from ..sandbox.verdict import Kind, Verdict
from ..sandbox.wire import decode
from . import get_lab
from .checking import LearnerCodeError, LearnerRaised
from .learner_process import load

# the labs whose function the decoder calls, so SmolLM2 can run with the learner's
TRY_LABS = ("attention", "repeat_kv", "rope", "rms_norm", "causal_mask", "kv_step", "top_p", "block")
TRY_LIMITS = replace(LIMITS, cpu_seconds=60, wall_seconds=90.0, reply_bytes=16 * 2**20)
MAX_NEW_TOKENS = 64


def sampling_for(lab: str) -> dict:
    """Greedy, except for top_p, whose function only runs when sampling (seeded, so both runs agree)."""
    return {"temperature": 1.0, "top_k": 0, "top_p": 0.9} if lab == "top_p" else \
        {"temperature": 0.0, "top_k": 0, "top_p": 1.0}


def run(servers: ForkServers, model: str, ids: list[int], max_new_tokens: int, sampling: dict,
        lab=None, source: str | None = None, filename: str | None = None) -> tuple[Verdict, dict | None, str]:
    """One run of the model in a job of its own, with the learner's file if `source` is given:
    (the verdict, {"ids", "first_logits"} or None, what the learner's code printed)."""
    job, verdict, result = None, Verdict(Kind.OK), None
    try:
        job = servers.spawn(readable_folders(model), warm_argument=model, limits=TRY_LIMITS)
        job.start()
        if source is not None:
            load(job, lab, source, filename or f"{lab.name}.py")
        reply = job.ask({"op": "write", "ids": list(ids), "max_new_tokens": max_new_tokens, "sampling": sampling})
        if "raised" in reply:
            raise LearnerRaised(reply["raised"])
        result = reply.get("result")
    except LearnerCodeError as error:
        verdict = Verdict(Kind.UNUSABLE, {"text": f"{error.title} {error.detail or ''}".strip()})
    except LearnerRaised as error:
        verdict = Verdict(Kind.RAISED, {"text": error.memory or error.text})
    except Stopped as stop:
        verdict = stop.verdict
    finally:
        output = job.end() if job is not None else ""
    return verdict, result, output


def try_ids(pretrained, text: str, max_new_tokens: int, chat: bool = True) -> list[int]:
    """The ids a try starts from: the text (in the chat template, with chat), cut from the left to leave
    room for max_new_tokens; never empty."""
    ids = pretrained.chat.encode([{"role": "user", "content": text}]) if chat and pretrained.chat else \
        pretrained.tokenizer.encode(text).ids
    return ids[-(pretrained.model.cfg.max_len - max_new_tokens):] or pretrained.tokenizer.encode(" ").ids


def try_in_model(lab_name: str, source: str, model: str, ids: list[int], max_new_tokens: int,
                 filename: str | None = None, reference: dict | None = None,
                 servers: ForkServers | None = None) -> dict:
    """The pretrained model (a .gguf file or folder) with minitx's function and with the learner's:
    {"ours", "yours": the new ids, "same", "largest_difference"}, or {"ours", "problem"} when the learner's
    code did not run to the end; "reference": minitx's run, to give back for the same ids next time;
    "output": what the learner's code printed."""
    if lab_name not in TRY_LABS:
        raise ValueError(f"{lab_name} is not a function the decoder calls; these are: {', '.join(TRY_LABS)}.")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max new tokens must be from 1 to {MAX_NEW_TOKENS}, not {max_new_tokens}.")
    mine = servers is None
    servers = servers or ForkServers("minitx.labs.learner_process:warm", "minitx.labs.learner_process:serve",
                                     TRY_LIMITS)
    sampling = sampling_for(lab_name)
    try:
        if reference is None:
            verdict, reference, _ = run(servers, model, ids, max_new_tokens, sampling)
            if not verdict.ok:
                raise RuntimeError(f"minitx's own run of the model did not finish: {verdict.message}")
        verdict, answer, output = run(servers, model, ids, max_new_tokens, sampling, get_lab(lab_name), source,
                                      filename)
    finally:
        if mine:
            servers.close()
    result = {"ours": reference["ids"], "reference": reference, "output": output}
    if not verdict.ok:
        return {**result, "problem": verdict.message}
    try:
        theirs = [int(i) for i in answer["ids"]]
        difference = (decode(answer["first_logits"]).float() - decode(reference["first_logits"]).float()).abs().max()
    except (KeyError, TypeError, ValueError, RuntimeError):
        return {**result, "problem": "the run with your function sent back something that is not a generation."}
    return {**result, "yours": theirs, "same": theirs == reference["ids"], "largest_difference": difference.item()}
