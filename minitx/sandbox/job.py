"""One job of confined code, from the trusted side: a fresh process forked by a fork server, its pipes,
its token, its deadline and its verdict.

    servers = ForkServers("minitx.labs.learner_process:warm", "minitx.labs.learner_process:serve")
    job = servers.spawn()                  # a Job: a Confined handle (poll, wait, kill, verdict)
    job.start()                            # its limits and token; the watch on its process tree begins
    answer = job.ask({"op": ...})          # the answer with this job's token, or Stopped(verdict)
    printed = job.end()                    # ended with all it started; what it printed, capped

The job's process holds itself to its processor time, address space and processes (minitx.sandbox
.limits); this side holds the whole job to the wall clock (each answer's deadline) and to the processor
time and memory of its process tree together, every 0.1 s (an orphan comes back to the job's init,
a subreaper, so it stays in the tree).
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

from .confine import Confined, Confinement, confinement
from .limits import LIMITS, Limits
from .verdict import Kind, Verdict, how_it_ended
from .wire import Lines

FORK_TIMEOUT, START_TIMEOUT, WATCH_SECONDS = 10.0, 90.0, 0.1


class Stopped(BaseException):
    """The job's process was stopped, or ended without answering: not the learner's exception, so no check
    catches it as one. `verdict` says why; `found` (a check's cases so far) goes back beside it."""

    def __init__(self, verdict: Verdict):
        super().__init__(verdict.message)
        self.verdict, self.found = verdict, None


class Job(Confined):
    """One job's process, as the trusted side holds it: its keeper's process id (the job's root, as seen
    from here), its pipes, and the conversation with it under its limits and deadline."""

    def __init__(self, pid: int, fds: tuple[int, int, int, int], limits: Limits, folder: str | None):
        super().__init__(pid)
        stdin, stdout, stderr, self._status = fds
        self.limits, self.folder = limits, folder       # folder: its working folder here (limits only), removed after
        self.stdin, self.token, self.deadline, self._code = os.fdopen(stdin, "wb"), secrets.token_hex(16), None, None
        self.answers, self._printed = Lines(os.fdopen(stdout, "rb"), limits.reply_bytes), bytearray()
        self._reader = threading.Thread(target=self._read_output, args=(os.fdopen(stderr, "rb"),), daemon=True)
        self._reader.start()

    def _read_output(self, stream) -> None:
        with stream:
            for chunk in iter(lambda: stream.read1(65536), b""):
                self._printed += chunk[: max(0, self.limits.output_bytes + 1 - len(self._printed))]

    def wait(self, timeout: float | None = None) -> int | None:
        """How the job's process ended (negative: a signal), once its keeper says so; None before."""
        data = b""
        try:
            while self._code is None and select.select([self._status], [], [], timeout)[0]:
                chunk = os.read(self._status, 64)
                if not chunk:
                    self._code = int(data)
                data += chunk
        except (OSError, TypeError, ValueError):        # ended and closed meanwhile, or nothing said
            pass
        return self._code

    def start(self) -> None:
        """Its limits and token; from now on its deadline runs and its process tree is watched."""
        wall = self.limits.wall_seconds
        self.deadline = None if wall is None else time.monotonic() + wall
        self.watch(self.limits, WATCH_SECONDS)
        self.ask({"op": "start", "token": self.token, "limits": self.limits.to_dict()}, expect="started")

    def ask(self, message: dict, expect: str | None = None) -> dict:
        """Send one message and wait for the answer with this job's token; Stopped when none comes in
        time (or the process ended, or sent something else)."""
        try:
            self.stdin.write(json.dumps(message).encode() + b"\n")
            self.stdin.flush()
        except (OSError, ValueError):
            raise Stopped(self._why_silent()) from None
        while True:
            try:
                answer = self.answers.get(None if self.deadline is None else self.deadline - time.monotonic())
            except queue.Empty:
                self._stop(Verdict(Kind.WALL_TIME, {"seconds": self.limits.wall_seconds}))
            if answer is None:
                raise Stopped(self._why_silent())
            size = answer.get("__too_large__") or (answer.get("too_large") if answer.get("token") == self.token else 0)
            if size:
                self._stop(Verdict(Kind.ANSWER_TOO_LARGE, {"limit_mb": self.limits.reply_bytes / 2**20,
                                                           "size": f" (about {int(size) / 2**20:,.0f} MB)"}))
            if answer.get("token") == self.token:       # any other line is never taken for its answer
                if expect is not None and expect not in answer:
                    self._stop(Verdict(Kind.ENDED, {"how": "it answered out of turn"}))
                return answer

    def _stop(self, verdict: Verdict):
        self.kill(verdict)
        raise Stopped(self.verdict)

    def _why_silent(self) -> Verdict:
        """Why no answer came: what this side stopped it for, else how it ended, else (still running)
        that it closed its channel."""
        if self.verdict is None:
            code = self.wait(timeout=1.0)
            if code is None:
                self.kill(Verdict(Kind.CHANNEL_CLOSED))
                return self.verdict
            signal_number = -code if code < 0 else code - 128 if code > 128 else 0
            if signal_number == signal.SIGXCPU:
                return Verdict(Kind.CPU_TIME, {"seconds": self.limits.cpu_seconds})
            return Verdict(Kind.ENDED, {"how": how_it_ended(-signal_number if signal_number else code)})
        return self.verdict

    def end(self) -> str:
        """End the job's process and all it started; what it printed, capped."""
        self.kill()
        for closing in (self.stdin.close, lambda: os.close(self._status)):
            try:
                closing()
            except OSError:
                pass
        self._reader.join(timeout=0.5)     # the last of what it printed (its pipe closes at the end of file)
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        printed = bytes(self._printed[: self.limits.output_bytes]).decode("utf-8", "replace")
        return printed + ("\n... (cut: the rest of what your code printed is not shown)"
                          if len(self._printed) > self.limits.output_bytes else "")


class ForkServer:
    """A fork server (minitx.sandbox.fork_server), started confined: warm ("module:function", called once
    with warm_argument) prepares it; serve ("module:function") runs in each job's process. read_only:
    more folders its jobs may read."""

    def __init__(self, warm: str, serve: str, warm_argument: str | None = None, read_only=(),
                 limits: Limits = LIMITS, where: Confinement | None = None):
        self.where, self.limits = where or confinement(), limits
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)    # each message says who sent it
        args = [str(theirs.fileno()), "isolated" if self.where.isolates_jobs else "limits only", warm, serve,
                *([warm_argument] if warm_argument else [])]
        self.process = self.where.start_python("minitx.sandbox.fork_server", args, read_only=read_only,
                                               pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()
        self.control, self.ready = mine, False
        self.start_timeout = START_TIMEOUT + (120.0 if warm_argument else 0.0)   # a model the first time: dequantizing

    def alive(self) -> bool:
        return self.process.poll() is None

    def _receive(self, timeout: float) -> tuple[bytes, int | None]:
        """The next message from the fork server or a keeper, and the sender's process id as seen here."""
        self.control.settimeout(timeout)
        message, ancillary, _, _ = self.control.recvmsg(16, socket.CMSG_SPACE(struct.calcsize("3i")))
        pids = [struct.unpack("3i", data[:12])[0] for level, kind, data in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS]
        return message, pids[0] if pids else None

    def spawn(self, limits: Limits | None = None) -> Job:
        """A fresh process for one job, forked by the fork server."""
        folder = None if self.where.isolates_jobs else tempfile.mkdtemp(prefix="minitx-job-")
        try:
            self.ready = self.ready or self._receive(self.start_timeout)[0] == b"ready"
            if not self.ready:
                raise OSError("the fork server did not start")
            pipes = [os.pipe() for _ in range(4)]                 # stdin, stdout, stderr, the exit status
            theirs = [pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1]]
            try:
                socket.send_fds(self.control, [b"fork\0" + os.fsencode(folder or "/tmp")], theirs)
            finally:
                for fd in theirs:
                    os.close(fd)
            message, pid = self._receive(FORK_TIMEOUT)
            if message != b"born" or pid is None or pid == self.process.pid:
                raise OSError("the fork server did not fork")
        except OSError as error:
            self.close()
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
            raise Stopped(Verdict(Kind.NOT_STARTED, {"why": f" ({error})"})) from None
        return Job(pid, (pipes[0][1], pipes[1][0], pipes[2][0], pipes[3][0]), limits or self.limits, folder)

    def close(self) -> None:
        self.process.kill()
        self.control.close()


class ForkServers:
    """The fork servers of one worker, by what their jobs may read and what warm loaded: the usual one,
    started ahead of the first job, and the two used last of the others."""

    KEEP = 3

    def __init__(self, warm: str, serve: str, limits: Limits = LIMITS):
        self.warm, self.serve, self.limits, self.servers = warm, serve, limits, {}

    def server_for(self, read_only=(), warm_argument: str | None = None) -> ForkServer:
        """The fork server whose jobs can read read_only too and were warmed with warm_argument: started
        now if there is none yet (it may start while the caller does something else)."""
        key = (tuple(read_only) if confinement().isolates_jobs else (), warm_argument)
        server = self.servers.pop(key, None)
        if server is None or not server.alive():
            if server is not None:
                server.close()
            server = ForkServer(self.warm, self.serve, warm_argument, key[0], self.limits)
        self.servers[key] = server
        while len(self.servers) > self.KEEP:
            self.servers.pop(next(k for k in self.servers if k != ((), None))).close()
        return server

    def start(self) -> None:
        """The usual fork server, started (again, if a job's end took it down) ahead of the next job."""
        self.server_for()

    def spawn(self, read_only=(), warm_argument: str | None = None, limits: Limits | None = None) -> Job:
        return self.server_for(read_only, warm_argument).spawn(limits)

    def keep(self) -> set[int]:
        """The fork servers' own processes (a clean-up after a job leaves them)."""
        return {s.process.pid for s in self.servers.values() if s.alive()}

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers = {}
