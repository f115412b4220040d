"""A fork server: a confined process that has imported torch (and what its `warm` function loads) and
forks a fresh process for each job, which starts in milliseconds instead of the seconds a new Python
and torch take. It never runs a job's code itself.

    python -P -m minitx.sandbox.fork_server CONTROL_FD MODE WARM SERVE [WARM_ARGUMENT]

    trusted side --(control socket: "fork", the job's folder, its four pipe ends)--> fork server
    fork server --fork--> keeper: the job's own session; isolated: a new user and PID namespace
    keeper      --fork--> init: PID 1 of that namespace, the subreaper of all the job starts
    init        --fork--> the job's process: SERVE() ("module:function") on the job's three pipes

The keeper says "born", and the kernel tells the trusted side its process id (SCM_CREDENTIALS). The
job's folder (isolated: /tmp) is its working folder, HOME and TMPDIR, emptied before it starts (a fork
server's jobs come one at a time: the lab worker serves one request at a time). When
the job's process ends, init ends what is left (isolated, the kernel does) and the keeper writes the
exit status on the status pipe. The fork server is not dumpable: a job cannot read its memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import shutil
import signal
import socket
import sys

from .processes import descendants, kill

CLONE_NEWUSER, CLONE_NEWPID = 0x10000000, 0x20000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36
FAILED_TO_START = 70                     # the keeper's exit code when the job's namespace cannot be made


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def named(target: str):
    """"package.module:function" -> the function."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def _empty(folder: str) -> None:
    for entry in os.scandir(folder):
        with contextlib.suppress(OSError):
            shutil.rmtree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)


def _init(job_fds: tuple[int, int, int], serve, isolate: bool) -> None:
    """PID 1 of the job (isolated), or its subreaper (limits only): start the job's process, reap
    every orphan of the job, and when that process ends, end all that is left (isolated, the kernel
    does: it ends every process of a PID namespace whose PID 1 ends)."""
    libc = _libc()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)       # the keeper gone: the job's gone
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    job = os.fork()
    if job == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for target, fd in enumerate(job_fds):
            os.dup2(fd, target)
        os.closerange(3, 1 << 16)        # the control socket, the status pipe: only the job's three pipes
        try:
            serve()
        finally:
            os._exit(0)
    for fd in job_fds:
        os.close(fd)
    while True:                          # the job's process, and the orphans that come back to init
        pid, status = os.wait()
        if pid == job:
            break
    if not isolate:
        for below in descendants(os.getpid()):
            kill(below)
    # PID 1 cannot end itself by a signal: the job's signal goes up as 128 + its number
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def _keeper(control: socket.socket, fds: list[int], folder: str, serve, isolate: bool) -> None:
    """One job, in a fork of the fork server; never returns."""
    status_fd = fds[3]
    code = FAILED_TO_START
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        control.send(b"born")            # the kernel adds this process's id, as the trusted side sees it
        control.close()
        _empty(folder)
        os.chdir(folder)
        os.environ.update(HOME=folder, TMPDIR=folder)
        libc = _libc()
        if isolate and libc.unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        init = os.fork()
        if init == 0:
            os.close(status_fd)
            _init(tuple(fds[:3]), serve, isolate)
        for fd in fds[:3]:               # the job's pipes end when the job's process does
            os.close(fd)
        _, status = os.waitpid(init, 0)
        if os.WIFSIGNALED(status):
            code = -os.WTERMSIG(status)
        else:
            code = os.WEXITSTATUS(status)
            code = -(code - 128) if code > 128 else code
    finally:
        try:
            os.write(status_fd, str(code).encode())
        finally:
            os._exit(0)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    isolate = sys.argv[2] == "isolated"
    named(sys.argv[3])(*sys.argv[5:6])
    serve = named(sys.argv[4])
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)         # keepers are reaped by the kernel
    control.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 4096, 4)
        except OSError:
            return
        if not message:                  # the trusted side has gone
            return
        verb, _, folder = message.partition(b"\0")
        if verb == b"fork" and len(fds) == 4 and folder:
            sys.stderr.flush()
            if os.fork() == 0:
                _keeper(control, fds, os.fsdecode(folder), serve, isolate)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    main()
