"""Hostile: learner code that reads the user's files, writes into the project (a line the Streamlit
server would run) and opens a connection to a server on this machine. In the isolated sandbox none
of it gets anywhere: those paths do not exist in there, and there is no network."""

from __future__ import annotations

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
        printed = answer["output"]
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
