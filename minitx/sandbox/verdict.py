"""How a run of confined code ended, as a type: a `Verdict` is a `Kind` and the numbers its message quotes.

One table, `MESSAGES`, says what each kind means to a learner (as DMOJ's cptbox types a time limit or a
memory limit). Verdicts cross from the lab worker to the server as data; `Verdict.from_dict` takes
only the kinds it knows.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field


class Kind(str, enum.Enum):
    OK = "ok"                                    # it ran and answered
    RAISED = "raised"                            # the learner's code raised an exception
    UNUSABLE = "unusable"                        # the learner's file gives no function to run
    WALL_TIME = "wall time"
    CPU_TIME = "processor time"
    MEMORY = "memory"
    TREE_CPU_TIME = "processor time together"    # the job's processes, added up
    TREE_MEMORY = "memory together"
    ANSWER_TOO_LARGE = "answer too large"
    CHANNEL_CLOSED = "channel closed"            # it closed the pipe its answers go on, and went on running
    ENDED = "ended"                              # it ended without an answer: a signal or an exit code
    NOT_STARTED = "not started"                  # the sandbox itself did not start
    UNRESPONSIVE = "unresponsive"                # the lab worker stopped answering
    STUCK_AFTER_STOP = "stuck after stop"        # a training run that did not stop when asked
    TOO_MANY_EVENTS = "too many events"          # a training run that sent more than its share


MESSAGES = {
    Kind.OK: "It ran.",
    Kind.RAISED: "{text}",
    Kind.UNUSABLE: "{text}",
    Kind.WALL_TIME: "Your code ran for more than {seconds:g} s and was stopped. An endless loop, or waiting for "
                    "something that never comes?",
    Kind.CPU_TIME: "Your code used more than {seconds:g} s of processor time and was stopped. An endless loop, "
                   "or far more work than this needs?",
    Kind.MEMORY: "Your code asked for more memory than the {limit_gib:g} GiB it may have and was stopped{asked}.",
    Kind.TREE_CPU_TIME: "Your code and the processes it started used more than {seconds:g} s of processor time "
                        "together and were stopped.",
    Kind.TREE_MEMORY: "Your code and the processes it started used more than {limit_gib:g} GiB of memory together "
                      "and were stopped.",
    Kind.ANSWER_TOO_LARGE: "The answer was larger than {limit_mb:g} MB{size}: return what the function is asked "
                           "for, not more.",
    Kind.CHANNEL_CLOSED: "Your code closed the channel its answers go back on and was stopped: leave file "
                         "descriptors alone (print() is fine).",
    Kind.ENDED: "The process running your code ended without an answer ({how}): it ran out of memory, or it "
                "ended itself (exit(), os._exit, a signal).",
    Kind.NOT_STARTED: "The sandbox for your code did not start{why}.",
    Kind.UNRESPONSIVE: "The process running your code stopped answering and was started again.",
    Kind.STUCK_AFTER_STOP: "It did not stop within {seconds:g} s of Stop (your code did not return), so it was "
                           "ended unsaved.",
    Kind.TOO_MANY_EVENTS: "The training process sent more than {limit_mb:g} MiB of events and was stopped.",
}


def how_it_ended(code: int | None) -> str:
    """An exit status in words: "signal SIGKILL", "exit code 3" (negative: a signal, as subprocess says)."""
    if code is not None and code < 0 and -code in signal.valid_signals():
        return f"signal {signal.Signals(-code).name}"
    return "it is still running" if code is None else f"exit code {code}"


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.kind is Kind.OK

    @property
    def stopped(self) -> bool:
        """The sandbox stopped it, or it ended without answering: no answer from the learner's code."""
        return self.kind not in (Kind.OK, Kind.RAISED, Kind.UNUSABLE)

    @property
    def message(self) -> str:
        try:
            return MESSAGES[self.kind].format(**{"asked": "", "size": "", "why": "", "text": "", **self.details})
        except (KeyError, ValueError, IndexError):      # a detail missing or of the wrong type
            return MESSAGES[self.kind].split("{")[0].rstrip(" (") + "."

    def to_dict(self) -> dict:
        return {"kind": self.kind.value, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data) -> Verdict:
        """A verdict read back from data; anything that is not one counts as an unresponsive worker's."""
        try:
            details = data.get("details") or {}
            return cls(Kind(data["kind"]), dict(details) if isinstance(details, dict) else {})
        except (AttributeError, KeyError, TypeError, ValueError):
            return cls(Kind.UNRESPONSIVE)
