"""Hostile: learner code that reads the user's files, writes into the project (a line the Streamlit
server would run) and opens a connection to a server on this machine. In the isolated sandbox none
of it gets anywhere: those paths do not exist in there, and there is no network."""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

import pytest

from tests.hostile_support import RIGHT, check, passed, shared_worker

ROOT = Path(__file__).resolve().parents[1]

SNOOP = '''
import os, socket

for path in {paths!r}:
    try:
        with open(path) as f:
            print("READ", path, f.read()[:80])
    except OSError as error:
        print("cannot read", path, type(error).__name__)
try:
    with open({plant!r}, "w") as f:
        f.write("import os  # planted by a check\\n")
    print("WROTE")
except OSError as error:
    print("cannot write", type(error).__name__)
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"hello")
    print("CONNECTED")
except OSError as error:
    print("no connection", type(error).__name__)
'''


@pytest.fixture
def worker():
    return shared_worker("isolated")


def test_no_file_of_the_user_no_write_into_the_project_no_connection(worker):
    secret = ROOT / "artifacts" / f"secret-{random.randrange(10**9)}.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("the user's secret")
    plant = ROOT / "app_pages" / f"_planted_{random.randrange(10**9)}.py"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(6)
    connections = []
    threading.Thread(target=lambda: _accept(listener, connections), daemon=True).start()
    paths = [str(secret), str(ROOT / "app_pages" / "home.py"), str(Path.home() / ".bashrc"), "/etc/passwd"]
    try:
        answer = check(worker, "attention", SNOOP.format(paths=paths, plant=str(plant),
                                                         port=listener.getsockname()[1]) + RIGHT["attention"])
        assert passed(answer), answer
        printed = answer.output
        assert "READ" not in printed and "the user's secret" not in printed, printed
        assert printed.count("cannot read") == len(paths)
        assert "WROTE" not in printed and not plant.exists()
        assert "CONNECTED" not in printed and "no connection" in printed
        assert connections == []
    finally:
        secret.unlink()
        plant.unlink(missing_ok=True)
        listener.close()


def _accept(listener, connections):
    try:
        connections.append(listener.accept())
    except OSError:
        pass


REACH_THE_ZYGOTE = '''
import os


def _is_me(pid):                          # /proc counts in the sandbox's PID namespace; the job has its own
    with open(f"/proc/{pid}/status") as f:
        ids = next(line for line in f if line.startswith("NSpid:")).split()[1:]
    return len(ids) > 1 and int(ids[-1]) == os.getpid()


for pid in os.listdir("/proc"):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"minitx.sandbox.fork_server" not in f.read() or _is_me(pid):
                continue
    except (OSError, ValueError):
        continue
    print("FOUND", pid)
    paths = [(f"/proc/{pid}/mem", "r+b"), (f"/proc/{pid}/environ", "rb"), (f"/proc/{pid}/maps", "rb")]
    try:
        paths += [(f"/proc/{pid}/fd/{fd}", "wb") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        pass
    for path, mode in paths:
        try:
            with open(path, mode) as f:
                f.read(1) if "r" in mode else f.write(b"{}\\n")
            print("OPENED", path)
        except OSError as error:
            print("cannot open", path, type(error).__name__)
'''


def test_a_job_cannot_reach_into_the_fork_server_every_later_job_is_forked_from(worker):
    answer = check(worker, "attention", REACH_THE_ZYGOTE + RIGHT["attention"])
    assert passed(answer), answer
    printed = answer.output
    # the fork server, its keeper for this job, this job's init: there to be seen, as processes of the sandbox
    assert printed.count("FOUND") >= 3, printed
    assert "OPENED" not in printed and printed.count("cannot open") >= 9, printed


def test_running_a_pretrained_model_with_my_code_is_isolated_too(worker, tmp_path):
    """"Try": the model writes with the learner's attention in a job of its own, in the sandbox."""
    from tests.hostile_support import alive_with, marker
    from tests.pretrained_support import tiny_llama, tiny_tokenizer, write_gguf

    tokenizer = tiny_tokenizer()
    model = write_gguf(tmp_path / "tiny.gguf", tiny_llama(tokenizer.vocab_size), tokenizer)
    secret = ROOT / "artifacts" / f"secret-{random.randrange(10**9)}.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("the user's secret")
    mark = marker()
    attack = SNOOP_AND_LINGER.format(secret=str(secret), mark=mark)
    try:
        answer = worker.request({"op": "try", "lab": "attention", "source": attack + RIGHT["attention"],
                                 "ids": tokenizer.encode("The capital of France").ids, "max_new_tokens": 4,
                                 "model": str(model)}, wall_seconds=120)
        assert answer.verdict.ok and answer.result["same"] is True, answer
        assert "cannot read" in answer.output and "the user's secret" not in answer.output, answer
        assert alive_with(mark) == []
    finally:
        secret.unlink()


SNOOP_AND_LINGER = '''
import os

try:
    print(open({secret!r}).read())
except OSError as error:
    print("cannot read", type(error).__name__)
if os.fork() == 0:
    os.setsid()
    os.execv("/bin/sleep", ["sleep", "{mark}"])
'''


FILLS_TMP = '''
import os

written = 0
try:
    with open("/tmp/fill", "wb") as f:
        for _ in range(2048):                  # 2 GiB, in memory: /tmp is a tmpfs
            f.write(b"x" * 2**20)
            written += 1
except OSError as error:
    print("refused after", written, "MiB:", type(error).__name__)
finally:
    if os.path.exists("/tmp/fill"):
        os.remove("/tmp/fill")
with open("/tmp/planted.py", "w") as f:
    f.write("print('PLANTED RAN')\\n")
os.makedirs("/tmp/left/behind")
'''


def test_the_sandbox_s_tmp_is_small_and_every_job_gets_a_fresh_one(worker):
    """/tmp in the sandbox is memory: a job that writes 2 GiB there is refused at 256 MiB. A later job,
    forked from the same fork server, finds /tmp empty: nothing an earlier job left, the module it
    planted not importable."""
    answer = check(worker, "attention", FILLS_TMP + RIGHT["attention"])
    assert passed(answer), answer
    assert "refused after 2" in answer.output and "MiB: OSError" in answer.output, answer.output
    later = check(worker, "attention", "import os\nprint('LEFT', [f for f in ('planted.py', 'left', 'fill') if "
                  "os.path.exists('/tmp/' + f)])\ntry:\n    import planted\nexcept ImportError:\n    print('NOT FOUND')\n"
                  + RIGHT["attention"])
    assert passed(later) and "LEFT []" in later.output, later.output
    assert "NOT FOUND" in later.output and "PLANTED RAN" not in later.output, later


SHOWS_ITS_SURROUNDINGS = '''
import os, sys

for path in ("/proc/1/cmdline", "/proc/self/cmdline", "secret.txt", {secret!r}):
    try:
        with open(path, "rb") as f:
            print(path, repr(f.read()[:2000]))
    except OSError as error:
        print(path, "cannot read", type(error).__name__)
'''


def test_the_folder_the_worker_started_in_and_bwrap_s_own_arguments_are_not_there(tmp_path):
    """Started from a folder holding a secret (the folder is on `python -m`'s module path), the worker's
    jobs cannot read it; no command line in the sandbox shows bwrap's options (the host's folders)."""
    import subprocess
    import sys

    folder = tmp_path / "started-here"
    folder.mkdir()
    (folder / "secret.txt").write_text("the user's secret")
    (folder / "attention.py").write_text(SHOWS_ITS_SURROUNDINGS.format(secret=str(folder / "secret.txt"))
                                         + RIGHT["attention"])
    shared_worker("isolated")                 # skips (or fails under CI) where bwrap cannot run
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "minitx.labs", "check", "attention", "attention.py"], cwd=folder,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the user's secret" not in done.stdout and done.stdout.count("cannot read") == 2, done.stdout
    assert "--ro-bind" not in done.stdout and "--setenv" not in done.stdout and "bwrap" not in done.stdout, done.stdout
