"""A learner's functions inside a real language model: SmolLM2 writing with your attention, RoPE, RMSNorm...

    worker / command line (trusted)
      loads SmolLM2 once  -> a fork of it, under limits: minitx's functions, greedy answer, first logits
      a zygote loads it too, in the sandbox (minitx.labs.job)
                          -> a learner process forked from it: the learner's function plugged in
                             (minitx.labs.plug), the same greedy answer and logits
      compares the two: the same text?  the largest logit difference

The learner's run is a job like a check's: a process of its own, isolated where bwrap runs,
forked from a zygote that holds the model (the fork shares its weights instead of loading
them again). minitx's run is a fork of the worker the learner's code never touched. The
comparison is made here, from the data both sent back. A process's memory limit is its
address space (the model included) plus the usual 2 GiB. Running a 135 M-parameter model
takes more processor time than a check: TRY_LIMITS.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..generate import generate
from .sandbox import LIMITS, decode, encode, run_limited

# the labs whose function the decoder calls, so SmolLM2 can run with the learner's
TRY_LABS = ("attention", "repeat_kv", "rope", "rms_norm", "causal_mask", "kv_step", "top_p", "block")
TRY_LIMITS = replace(LIMITS, cpu_seconds=60, wall_seconds=90.0, reply_bytes=16 * 2**20)
MAX_NEW_TOKENS = 64
SAMPLING = {"temperature": 0.0, "top_k": 0, "top_p": 1.0}
TOP_P_SAMPLING = {"temperature": 1.0, "top_k": 0, "top_p": 0.9}      # greedy never calls top-p: sample


def sampling_for(lab: str) -> dict:
    """Greedy, except for top_p, whose function only runs when sampling (seeded, so both runs agree)."""
    return TOP_P_SAMPLING if lab == "top_p" else SAMPLING


def write_with(model, tokenizer, ids: list[int], max_new_tokens: int, sampling: dict, functions: dict) -> dict:
    """The model's continuation of ids with these functions in place of minitx's ({} for minitx's own),
    through CausalLM.forward and its KV cache, and the logits after the prompt's last token."""
    from .plug import learner_code

    with learner_code(functions), torch.inference_mode():
        first = model(torch.tensor([ids]), last_only=True).logits[0, -1]                  # (V,)
        out = generate(model, ids, max_new_tokens, seed=0, eos_id=tokenizer.stop_ids, n_top=0, fast=False,
                       **sampling)
    return {"ids": out.new_ids, "first_logits": encode(first.float())}


def _run_yours(lab, source: str, filename: str, pretrained, ids: list[int], max_new_tokens: int, sampling: dict,
               zygotes) -> dict:
    """The learner's run, a job of its own: {"status": "ok", "result": {"ids", "first_logits"} or
    {"problem": ...}} or {"status": "limit" | "error", "message": ...}; "output": what it printed."""
    from .checking import JobStopped, LearnerCodeError
    from .job import Job

    job, answer = None, None
    try:
        job = Job(zygotes.spawn(model=str(pretrained.source), limits=TRY_LIMITS), TRY_LIMITS)
        job.start()
        job.load(lab, source, filename)
        reply = job.ask({"op": "write", "ids": list(ids), "max_new_tokens": max_new_tokens, "sampling": sampling})
        if "raised" in reply:
            answer = {"status": "error", "message": f"{reply['raised'].get('type', 'Error')}: "
                                                    f"{reply['raised'].get('text', '')}"}
        else:
            answer = {"status": "ok", "result": reply.get("result")}
    except LearnerCodeError as error:
        answer = {"status": "ok", "result": {"problem": f"{error.title} {error.detail or ''}".strip()}}
    except JobStopped as stop:
        answer = {"status": "limit", "message": stop.message}
    finally:
        output = job.end() if job is not None else ""
    return {**answer, "output": output}


def try_in_model(lab_name: str, source: str, pretrained, ids: list[int], max_new_tokens: int,
                 filename: str | None = None, reference: dict | None = None, zygotes=None) -> dict:
    """Run the pretrained model with minitx's function and with the learner's, and compare: {"ours",
    "yours": {"ids", "text"}, "same", "largest_difference"}, or {"problem": ...} when the learner's
    code did not run to the end. `reference` is minitx's run, if already made; `zygotes`: the
    worker's (`minitx.labs.job.Zygotes`), one made for this run if not given."""
    from . import get_lab
    from .job import Zygotes

    if lab_name not in TRY_LABS:
        raise ValueError(f"{lab_name} is not a function the decoder calls; these are: {', '.join(TRY_LABS)}.")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max new tokens must be from 1 to {MAX_NEW_TOKENS}, not {max_new_tokens}.")
    lab = get_lab(lab_name)
    model, tokenizer = pretrained.model, pretrained.tokenizer
    sampling = sampling_for(lab_name)
    mine = zygotes is None
    zygotes = Zygotes(TRY_LIMITS) if mine else zygotes
    zygotes.zygote_for(model=str(pretrained.source))     # the learner's run's zygote starts beside minitx's run
    try:
        if reference is None:
            reference = run_limited(lambda: write_with(model, tokenizer, ids, max_new_tokens, sampling, {}),
                                    TRY_LIMITS)
            if reference.get("status") != "ok":
                raise RuntimeError(f"minitx's own run of the model did not finish: {reference.get('message')}")
        learner = _run_yours(lab, source, filename or f"{lab_name}.py", pretrained, ids, max_new_tokens, sampling,
                             zygotes)
    finally:
        if mine:
            zygotes.close()
    ours = reference["result"]
    result = {"ours": {"ids": ours["ids"], "text": tokenizer.decode(ours["ids"])}, "reference": reference,
              "output": learner.get("output", "")}
    if learner.get("status") != "ok":
        return {**result, "problem": learner.get("message", "your code did not finish.")}
    answer = learner["result"]
    if "problem" in answer:
        return {**result, "problem": answer["problem"]}
    try:
        theirs_ids = [int(i) for i in answer["ids"]]
        theirs_logits = decode(answer["first_logits"])
        difference = (theirs_logits.float() - decode(ours["first_logits"]).float()).abs().max().item()
    except (KeyError, TypeError, ValueError, RuntimeError):
        return {**result, "problem": "the run with your function sent back something that is not a generation."}
    return {**result, "yours": {"ids": theirs_ids, "text": tokenizer.decode(theirs_ids)},
            "same": theirs_ids == ours["ids"], "largest_difference": difference}
