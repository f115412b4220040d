"""What crosses between confined code and the trusted side: one JSON object per line, never pickle.

What comes back from a learner's code is data, not code to run. Tensors travel as their dtype, shape
and a flat list of numbers (NaN and inf kept); tuples and dicts with any keys keep their type; anything
else arrives as its type's name and repr. `protocol_stream` gives a confined process its answer
channel and moves what it prints off it; `Lines` reads a channel on the other side.
"""

from __future__ import annotations

import json
import math
import os
import queue
import sys
import threading

import torch

DTYPES = {name: getattr(torch, name) for name in ("float32", "float64", "float16", "bfloat16", "int64", "int32",
                                                  "int16", "int8", "uint8", "bool")}


class Opaque:
    """What stands in for a value that is neither data nor a tensor (a learner's own object): its type's
    name and repr, enough for a message to say what it was."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return self.text


def encode(value):
    """Tensors, tuples, dicts and plain values as JSON-ready data; anything else as its type and repr."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).replace("torch.", "")
        if dtype not in DTYPES:
            return {"__opaque__": f"Tensor of dtype {dtype}", "repr": f"a tensor of dtype {dtype}"}
        data = value.detach().cpu()
        return {"__tensor__": dtype, "shape": list(value.shape),
                "data": (data.float() if dtype == "bfloat16" else data).flatten().tolist()}
    if isinstance(value, (tuple, list)):
        items = [encode(v) for v in value]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and callable(value.item):         # a numpy number
        try:
            return encode(value.item())
        except Exception:
            pass
    return {"__opaque__": type(value).__name__, "repr": repr(value)[:200]}


def least_size(value, depth: int = 0) -> int:
    """A lower bound on encode(value)'s size in bytes, found without encoding it (a number takes two
    characters at least): a 2 x 10^8-value tensor is too large before it is turned into a list."""
    if isinstance(value, torch.Tensor):
        return 2 * value.numel()
    if isinstance(value, (list, tuple, dict)) and depth < 20:
        items = value.items() if isinstance(value, dict) else ((v, None) for v in value)
        return sum(least_size(k, depth + 1) + least_size(v, depth + 1) for k, v in items)
    return len(value) if isinstance(value, str) else 1


def decode(value):
    """The inverse of `encode`; a tensor must have a known dtype and as many values as its shape says."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        dtype, shape, data = DTYPES.get(value["__tensor__"]), value.get("shape"), value.get("data")
        if dtype is None or not isinstance(shape, list) or not isinstance(data, list) or len(data) != math.prod(shape):
            raise ValueError("a tensor that came back from the sandbox is not well formed.")
        return torch.tensor(data, dtype=dtype).reshape(shape)
    if "__tuple__" in value:
        return tuple(decode(v) for v in value["__tuple__"])
    if "__dict__" in value:
        return {decode(k): decode(v) for k, v in value["__dict__"]}
    if "__opaque__" in value:
        return type(str(value["__opaque__"]), (Opaque,), {})(str(value["__opaque__"]), str(value.get("repr")))
    return {k: decode(v) for k, v in value.items()}


def protocol_stream():
    """This process's answer channel, on what was its stdout; fd 1 and sys.stdout now go to stderr with
    everything else it prints, so that a print can never land in the middle of an answer."""
    stream = os.fdopen(os.dup(1), "wb")
    os.set_inheritable(stream.fileno(), False)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def send(stream, message: dict) -> None:
    stream.write(json.dumps(message, default=str).encode() + b"\n")
    stream.flush()


def parse(line: bytes) -> dict | None:
    """One line as a JSON object, or None if it is not one (a line nobody may take for an answer)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


class Lines:
    """The JSON objects a stream sends, one per line, read by a thread of their own: `get` gives the
    next ({} for a line that is none, {"__too_large__": bytes} for one past max_bytes, after which
    reading stops), and None once the stream has ended."""

    def __init__(self, stream, max_bytes: int):
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(stream, max_bytes), daemon=True).start()

    def _read(self, stream, max_bytes: int) -> None:
        with stream:
            while line := stream.readline(max_bytes + 1):
                if len(line) > max_bytes:
                    self.queue.put({"__too_large__": len(line)})
                    break
                self.queue.put(parse(line) or {})
        self.queue.put(None)

    def get(self, timeout: float | None) -> dict | None:
        """The next object; queue.Empty when none comes within timeout seconds."""
        return self.queue.get(timeout=None if timeout is None else max(timeout, 0.0))
