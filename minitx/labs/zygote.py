"""The zygote: one process that has imported torch and the labs, and forks a fresh learner
process for each job, so that a job starts in milliseconds instead of the seconds a new Python
and torch take. It is started by the worker (`minitx.labs.job.Zygote`), inside bwrap where it
runs, and never runs a learner's code itself: every job's process is a fork of it, used once.

    worker --(control socket: "fork", with the job's four pipe ends)--> zygote
    zygote --fork--> keeper: the job's own session; isolated: a new user and PID namespace
    keeper --fork--> init: PID 1 of that namespace, the subreaper of all the job starts
    init   --fork--> learner process: `minitx.labs.child.serve()` on the job's pipes

The keeper says "born" on the control socket, and the kernel tells the worker its process id as
the worker sees it (SCM_CREDENTIALS), which the worker watches and kills. When the learner process
ends, init kills whatever is left below it and ends, and with it (isolated) the whole PID namespace;
the keeper writes the learner's exit status on the job's status pipe. The zygote is not dumpable:
a job's process, though it runs as the same user, cannot read or write its memory or its files.
Its jobs share the sandbox's /tmp (sized: `minitx.labs.jail`), which is not on their module path.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys

CLONE_NEWUSER, CLONE_NEWPID = 0x10000000, 0x20000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36
FAILED_TO_START = 70                     # the keeper's exit code when the job's namespace cannot be made


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _kill_below(pid: int) -> None:
    """Kill every process below pid (and reap those that are pid's children)."""
    from .job import descendants

    for below in descendants(pid):
        try:
            os.kill(below, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _init(learner_fds: tuple[int, int, int], isolate: bool) -> None:
    """PID 1 of the job (isolated), or its subreaper (limits only): start the learner process,
    reap every orphan of the job, and when the learner process ends, end all that is left
    (isolated, the kernel does: it ends every process of a PID namespace whose PID 1 ends)."""
    libc = _libc()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)       # the keeper gone: the job's gone
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    learner = os.fork()
    if learner == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for target, fd in enumerate(learner_fds):
            os.dup2(fd, target)
        os.closerange(3, 1 << 16)        # the control socket, the status pipe: only the job's three pipes
        from .child import serve

        try:
            serve()
        finally:
            os._exit(0)
    for fd in learner_fds:
        os.close(fd)
    while True:                          # the learner process, and the orphans that come back to init
        pid, status = os.wait()
        if pid == learner:
            break
    if not isolate:
        _kill_below(os.getpid())
    # PID 1 cannot end itself by a signal: the learner's signal goes up as 128 + its number
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def _keeper(control: socket.socket, fds: list[int], isolate: bool) -> None:
    """One job, in a fork of the zygote; never returns."""
    status_fd = fds[3]
    code = FAILED_TO_START
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        control.send(b"born")            # the kernel adds this process's id, as the worker sees it
        control.close()
        libc = _libc()
        if isolate and libc.unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        init = os.fork()
        if init == 0:
            os.close(status_fd)
            _init(tuple(fds[:3]), isolate)
        for fd in fds[:3]:               # the job's pipes end when the learner process does
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
    from .child import warm

    warm(sys.argv[3] if len(sys.argv) > 3 else None)
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)         # keepers are reaped by the kernel
    control.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 16, 4)
        except OSError:
            return
        if not message:                  # the worker has gone
            return
        if message == b"fork" and len(fds) == 4:
            sys.stderr.flush()
            if os.fork() == 0:
                _keeper(control, fds, isolate)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    main()
