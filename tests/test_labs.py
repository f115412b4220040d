"""The labs: every check against right and wrong learner code, the sandbox's limits, the
command line, the lab book, and the learner's functions inside the real model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minitx.labs import LABS, get_lab
from minitx.labs.checking import Report, check, load_function
from minitx.labs.cli import main as labs_cli
from ui.lab_files import LearnerFiles
from minitx.labs.swap_in import swaps_for
from minitx.labs.worker import LabWorker
from minitx.sandbox.limits import Limits
from minitx.sandbox.verdict import Kind
from minitx.sandbox.wire import decode, encode
from tests.conftest import tiny_config
from tests.lab_sources import ALLOCATES_TOO_MUCH, LOOPS_FOREVER, RAISES, RIGHT, SYNTAX_ERROR, WRONG

NAMES = [lab.name for lab in LABS]
UNIX = sys.platform.startswith("linux")


def reference_file(lab) -> str:
    """A learner's file that hands in minitx's own answer."""
    return f"from minitx.labs import get_lab\n{lab.function} = get_lab({lab.name!r}).reference\n"


def test_the_labs_are_the_ones_the_interface_names():
    assert NAMES == ["bpe_merge", "sinusoidal", "rope", "attention", "repeat_kv", "rms_norm", "block",
                     "causal_mask", "kv_step", "top_p", "moe_route", "quantize_block", "bits_per_char"]
    assert get_lab("top_p").function == "top_p_filter" and get_lab("rope").function == "apply_rope"
    with pytest.raises(ValueError, match="no lab named 'nope'"):
        get_lab("nope")


@pytest.mark.parametrize("name", NAMES)
def test_each_lab_passes_minitx_and_a_learner_and_names_each_typical_mistake(name):
    lab = get_lab(name)
    borrowed = check(lab, reference_file(lab))          # every case matches, but it is not the learner's
    assert borrowed.stage == "borrowed" and not borrowed.passed and "minitx's own answer" in borrowed.minitx_use
    stub = check(lab, lab.stub)
    assert stub.stage == "stub" and "not written yet" in stub.title
    right = check(lab, RIGHT[name], "right.py")
    assert right.passed, (right.title, right.detail)
    assert len(right.cases) == len(lab.cases()) and right.picture is not None
    assert len(WRONG[name]) >= 3
    for what, source, words in WRONG[name]:
        report = check(lab, source, "wrong.py")
        assert not report.passed, what
        assert words in report.title + report.detail, (what, report.title, report.detail)


@pytest.mark.parametrize("name", NAMES)
def test_every_known_mistake_is_recognised_by_its_own_message(name):
    """Each wrong answer the lab knows (ten at least), handed in as the learner's: its own message comes
    back (not a more general one, nor another mistake's), for a wrong value or a wrong shape alike."""
    lab = get_lab(name)
    assert len(lab.mistakes) >= 10 and len({m.message for m in lab.mistakes}) == len(lab.mistakes)
    for index, mistake in enumerate(lab.mistakes):
        source = f"from minitx.labs import get_lab\n{lab.function} = get_lab({name!r}).mistakes[{index}].wrong\n"
        report = check(lab, source)
        assert report.stage in ("diagnosis", "shape", "type") and report.title == mistake.message, (index, report.title)
        assert any(c["case"] == report.case and c["result"] not in ("exact", "within tolerance") for c in report.cases)


@pytest.mark.parametrize("name", NAMES)
def test_no_wrong_answer_ends_with_only_how_many_values_differ(name):
    """Every wrong file of the suite gets a sentence that names its mistake or the shape of its difference."""
    lab = get_lab(name)
    for what, source, _ in WRONG[name]:
        report = check(lab, source, "wrong.py")
        assert report.stage != "mismatch" and "differs from minitx's in" not in report.title, (what, report.title)


ATTENTION_BY = {
    "a comment": "# my own attention, not minitx's\n",
    "minitx's repeat_kv": "from minitx.attention import repeat_kv\n",
    "minitx's attention, by module": "import minitx.attention as A\n_unused = A.explicit_attention\n",
    "a whole module by importlib": "import importlib\n_m = importlib.import_module('minitx.attention')\n",
    "a computed name": "_m = __import__('mini' + 'tx')\n",
}


@pytest.mark.parametrize("how, uses, borrows", [
    ("a comment", None, False), ("minitx's repeat_kv", "minitx.attention.repeat_kv", False),
    ("minitx's attention, by module", "minitx.attention.explicit_attention", True),
    ("a whole module by importlib", "minitx.attention", True), ("a computed name", "computed", False)])
def test_what_of_minitx_a_file_uses_is_read_from_its_code_not_its_text(how, uses, borrows):
    report = check(get_lab("attention"), ATTENTION_BY[how] + RIGHT["attention"])
    assert report.passed is not borrows and report.stage == ("borrowed" if borrows else "passed"), report.title
    assert (uses or "") in report.minitx_use and bool(report.minitx_use) is (uses is not None), report.minitx_use
    if not borrows:
        assert "does not count as yours" not in report.minitx_use


def test_a_syntax_error_gives_its_line_and_column_and_an_exception_only_the_learners_lines():
    lab = get_lab("attention")
    report = check(lab, SYNTAX_ERROR.format(function="attention"), "mine.py")
    assert report.stage == "compile" and report.line == 3
    assert report.title.startswith("Syntax error on line 3, column 14")
    assert report.detail.splitlines() == ["def attention(x:", " " * 13 + "^"]

    report = check(lab, RAISES.format(function="attention"), "mine.py")
    assert report.stage == "error" and report.title == "KeyError: 'no such key'"
    frames = [line for line in report.detail.splitlines() if line.startswith("line ")]
    assert frames == ['line 7, in attention:  return helper({})', 'line 3, in helper:  return value["no such key"]']
    assert "minitx" not in report.detail and "torch" not in report.detail and report.line == 3

    report = check(lab, "def attention(q, k, v, mask=None):\n    return (q @ k.mT).softmax(-1)\n", "mine.py")
    assert report.stage == "shape" and "should return 2 things, (out, weights)" in report.title

    assert check(lab, "import nonexistent_module_xyz\n", "mine.py").stage == "load"
    missing = check(lab, "def atention(q, k, v, mask=None):\n    pass\n", "mine.py")
    assert missing.title == "Your file defines no function named `attention`." and "atention" in missing.detail


def test_a_shape_is_named_in_the_notation():
    report = check(get_lab("attention"), "import math\n\ndef attention(q, k, v, mask=None):\n"
                                         "    w = (q @ k.mT / math.sqrt(q.size(-1))).softmax(-1)\n"
                                         "    return (w @ v).transpose(-2, -1), w\n")
    assert report.title == "`out` should be (B, H, T, Dh) = (2, 3, 5, 4); yours is (2, 3, 4, 5), which reads as " \
                           "(B, H, Dh, T)."


def test_learner_code_cannot_change_minitx_s_answers():
    """A file that sabotages torch while it loads still gets minitx's real answers to compare with."""
    source = RIGHT["attention"] + "\ntorch.softmax = lambda x, dim: x\ntorch.Tensor.softmax = lambda x, dim: x\n"
    saved = torch.softmax, torch.Tensor.softmax
    try:
        report = check(get_lab("attention"), source)
    finally:
        torch.softmax, torch.Tensor.softmax = saved
    assert not report.passed          # had minitx's answers been computed after the file loaded, it would pass


# -- the sandbox ---------------------------------------------------------------------------

def test_values_cross_the_sandbox_as_json_and_back():
    value = {"t": torch.tensor([[1.0, float("nan")], [float("inf"), -2.0]]), "i": torch.arange(3),
             "b": torch.tensor([True, False]), "pair": ("a", "b"), "n": 3}
    back = decode(encode(value))
    assert torch.equal(back["i"], value["i"]) and torch.equal(back["b"], value["b"])
    assert back["t"].isnan()[0, 1] and torch.equal(back["t"].nan_to_num(), value["t"].nan_to_num())
    assert back["pair"] == ("a", "b") and back["n"] == 3
    with pytest.raises(ValueError, match="not well formed"):
        decode({"__tensor__": "float32", "shape": [2, 2], "data": [1.0]})


@pytest.fixture(scope="module")
def strict_worker():
    """A worker with small limits: 1 s of processor time, 3 s of wall time, 1,000 bytes of prints."""
    if not UNIX:
        pytest.skip("the limits need fork and /proc (Linux)")
    worker = LabWorker(Limits(cpu_seconds=1, wall_seconds=3, output_bytes=1_000))
    worker.start()
    yield worker
    worker.close()


def _check(worker, source: str):
    return worker.request({"op": "check", "lab": "attention", "source": source})


def test_a_huge_allocation_fails_at_once_with_the_limit_and_the_request_in_its_message(strict_worker):
    # an endless loop and a sleep: tests/test_hostile_verdicts.py, in both confinements
    answer = _check(strict_worker, ALLOCATES_TOO_MUCH.format(function="attention"))
    assert answer.verdict.ok and answer.result["stage"] == "limit", answer
    assert "more memory than the 2 GiB it may have" in answer.result["title"]
    assert "the request that was refused, for 46.57 GiB" in answer.result["title"]


def test_what_learner_code_prints_comes_back_capped(strict_worker):
    chatty = "print('hello from the learner')\nfor _ in range(10_000):\n    print('x' * 100)\n" + RIGHT["attention"]
    answer = _check(strict_worker, chatty)
    assert answer.verdict.ok and answer.result["passed"] and answer.output.startswith("hello from the learner")
    assert len(answer.output) < 1_100 and answer.output.endswith("is not shown)")


def _children_of(pid: int) -> list[int]:
    """pid's children that are alive (a killed one the kernel has not yet handed back to be reaped,
    a zombie, has ended: the next job's clean-up reaps it)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                children.append(int(entry.name))
    return children


def _alive_below(pid: int) -> list[int]:
    from minitx.sandbox.processes import descendants, gone

    return sorted(p for p in descendants(pid) if not gone(p))


@pytest.mark.skipif(not UNIX, reason="the limits need fork and /proc (Linux)")
def test_the_worker_stays_warm_through_runaway_code_and_leaves_nothing_behind():
    worker = LabWorker(Limits(cpu_seconds=1, wall_seconds=1.5))
    try:
        first = worker.request({"op": "check", "lab": "attention", "source": RIGHT["attention"]})
        assert first.verdict.ok and first.result["passed"]
        pid = worker.pid
        server = _children_of(pid)
        sandbox = _alive_below(server[0])          # the fork server's processes (no job's)
        forks = "import os\n\ndef attention(*args):\n    os.fork()\n    while True:\n        pass\n"
        for source in (LOOPS_FOREVER.format(function="attention"), forks,
                       "import time\n\ndef attention(*a):\n    time.sleep(100)\n"):
            answer = worker.request({"op": "check", "lab": "attention", "source": source})
            assert answer.verdict.stopped, answer
            report = Report.stopped("attention", answer.verdict.message, answer.result)   # as the page shows it
            assert report.cases == [{"case": get_lab("attention").cases()[0].label, "result": "stopped by the sandbox",
                                     "largest difference": None}] and report.case == report.cases[0]["case"]
            # the job's processes, its own child included, are gone: what is left is the fork server the
            # next job's process is forked from, the same one all along
            assert len(server) == 1 and _children_of(pid) == server
            assert "minitx.sandbox.fork_server" in Path(f"/proc/{server[0]}/cmdline").read_text()
            assert _alive_below(server[0]) == sandbox
        assert worker.pid == pid and worker.restarts == 0  # the same warm worker all along
        again = worker.request({"op": "check", "lab": "attention", "source": RIGHT["attention"]})
        assert again.result["passed"]
    finally:
        worker.close()
    assert worker.pid is None and not Path(f"/proc/{pid}").exists()


@pytest.mark.skipif(not UNIX, reason="the limits need fork and /proc (Linux)")
def test_a_worker_that_stops_answering_is_killed_and_replaced():
    worker = LabWorker(Limits(cpu_seconds=1, wall_seconds=1), reply_margin=1.0)
    try:
        worker.start()
        stuck = worker.pid
        os.kill(stuck, 19)                                 # SIGSTOP: it can no longer answer
        answer = worker.request({"op": "check", "lab": "attention", "source": RIGHT["attention"]})
        assert answer.verdict.kind is Kind.UNRESPONSIVE and "stopped answering" in answer.verdict.message
        assert worker.restarts == 1 and not Path(f"/proc/{stuck}").exists()
        assert worker.request({"op": "check", "lab": "attention", "source": RIGHT["attention"]}).result["passed"]
        assert worker.pid != stuck
    finally:
        worker.close()


# -- the command line ----------------------------------------------------------------------

def test_the_command_line_checks_a_file_and_exits_0_1_or_2(tmp_path, capsys):
    assert labs_cli(["list"]) == 0
    assert "attention" in capsys.readouterr().out
    assert labs_cli(["start", str(tmp_path / "mine")]) == 0
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == sorted(f"{n}.py" for n in NAMES)
    assert labs_cli(["check", "attention", str(tmp_path / "mine" / "attention.py")]) == 1
    assert "not written yet" in capsys.readouterr().out

    files = {"right.py": RIGHT["attention"], "unscaled.py": WRONG["attention"][0][1], "rope.py": WRONG["rope"][0][1]}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    mine = subprocess.Popen(["sleep", "60"])          # a child of the program that calls the check
    try:
        assert labs_cli(["check", "attention", str(tmp_path / "right.py")]) == 0
        with pytest.raises(subprocess.TimeoutExpired):  # still running: the check ended only its job's
            mine.wait(timeout=0.5)
    finally:
        mine.kill()
        mine.wait()
    assert "PASSED" in capsys.readouterr().out
    assert labs_cli(["check", "attention", str(tmp_path / "unscaled.py")]) == 1
    assert "No 1/√Dh" in capsys.readouterr().out
    assert labs_cli(["check", "rope", str(tmp_path / "rope.py")]) == 1
    assert "RoPE ignored `start`" in capsys.readouterr().out

    (tmp_path / "binary.py").write_bytes(b"\xff\xfe\x00")
    for args, says in ((["check", "nope", str(tmp_path / "right.py")], "no lab named 'nope'"),
                       (["check", "attention", str(tmp_path / "missing.py")], "does not exist"),
                       (["check", "attention", str(tmp_path)], "is not a file"),
                       (["check", "attention", str(tmp_path / "binary.py")], "not UTF-8")):
        assert labs_cli(args) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:
        labs_cli(["check", "attention"])
    assert exit_.value.code == 2


def test_the_command_line_runs_as_a_module(tmp_path):
    """`python -m minitx.labs check NAME FILE` from a shell: 0 for a right attention, 1 without the
    1/sqrt(Dh) scale."""
    import subprocess

    (tmp_path / "right.py").write_text(RIGHT["attention"])
    (tmp_path / "unscaled.py").write_text(WRONG["attention"][0][1])
    root = Path(__file__).resolve().parents[1]
    run = lambda name: subprocess.run([sys.executable, "-m", "minitx.labs", "check", "attention",  # noqa: E731
                                       str(tmp_path / name)], cwd=root, capture_output=True, text=True, timeout=120)
    right, unscaled = run("right.py"), run("unscaled.py")
    assert right.returncode == 0 and "PASSED" in right.stdout, right.stderr
    assert unscaled.returncode == 1 and "No 1/√Dh" in unscaled.stdout


# -- the lab book --------------------------------------------------------------------------

def test_the_lab_book_keeps_what_was_written_and_what_passed(tmp_path):
    book = LearnerFiles(tmp_path / "labs")
    assert book.source("attention") == get_lab("attention").stub and book.status("attention") == "new"
    book.record("attention", WRONG["attention"][0][1], check(get_lab("attention"), WRONG["attention"][0][1]))
    assert book.status("attention") == "failing" and book.passed_source("attention") is None
    book.record("attention", RIGHT["attention"], check(get_lab("attention"), RIGHT["attention"]))
    again = LearnerFiles(tmp_path / "labs")                     # a restart reads the same folder
    assert again.status("attention") == "passed" and again.passed_source("attention") == RIGHT["attention"]
    (tmp_path / "labs" / "attention.py").write_text(RIGHT["attention"] + "\n# edited in an editor\n")
    assert again.status("attention") == "changed" and again.passed_source("attention") is None
    again.reset("attention")
    assert again.source("attention") == get_lab("attention").stub
    assert set(again.statuses()) == set(NAMES)


# -- inside the real model -----------------------------------------------------------------

def _functions(name):
    return {name: load_function(get_lab(name), RIGHT[name])}


@pytest.mark.parametrize("name, changes", [
    ("attention", {}), ("repeat_kv", {}), ("causal_mask", {}),
    ("rope", {"pos_encoding": "rope"}), ("rms_norm", {"norm": "rmsnorm"}), ("block", {}),
    ("moe_route", {"ffn": "moe", "n_experts": 4, "experts_per_token": 2}),
])
def test_a_learner_s_right_function_in_the_model_gives_minitx_s_numbers_and_is_then_taken_out(name, changes):
    from minitx.decoder import CausalLM

    torch.manual_seed(0)
    model = CausalLM(tiny_config(task="lm", **changes)).eval()
    ids = torch.randint(3, 50, (2, 9))
    with torch.no_grad():
        ours = model(ids, need_weights=True)
        fused = model(ids).logits
        with model.using(**swaps_for(_functions(name))):
            theirs = model(ids, need_weights=True)
            theirs_fused = model(ids).logits
        after = model(ids).logits
    torch.testing.assert_close(theirs.logits, ours.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(theirs_fused, fused, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(theirs.attentions[-1], ours.attentions[-1], rtol=1e-4, atol=1e-5)
    assert torch.equal(after, fused)                       # minitx's own functions are back


def test_a_wrong_function_in_the_model_shows_and_a_right_generation_step_writes_the_same_text():
    from minitx.decoder import CausalLM
    from minitx.generate import generate

    torch.manual_seed(0)
    model = CausalLM(tiny_config(task="lm", pos_encoding="rope")).eval()
    ids = torch.randint(3, 50, (1, 9))
    wrong = load_function(get_lab("rope"), WRONG["rope"][0][1])          # ignores start
    prompt = ids[0].tolist()
    ours = generate(model, prompt, 12, temperature=0.9, top_p=0.8, seed=3)
    with model.using(**swaps_for({**_functions("kv_step"), **_functions("top_p")})):
        theirs = generate(model, prompt, 12, temperature=0.9, top_p=0.8, seed=3)
    with model.using(**swaps_for({"rope": wrong})):
        drifted = generate(model, prompt, 12, temperature=0, seed=3)
    assert theirs.new_ids == ours.new_ids
    greedy = generate(model, prompt, 12, temperature=0, seed=3)
    assert max(abs(a - b) for a, b in zip(drifted.probabilities, greedy.probabilities)) > 1e-4


def test_the_demos_run_a_review_through_the_model_with_and_without_the_learner_s_function():
    from minitx.labs.demos import run

    lab = get_lab("attention")
    cfg = tiny_config(vocab_size=50).to_dict()
    request = {"kind": "model", "model": {"config": cfg, "seed": 0}, "ids": [1, 5, 9, 12, 7]}
    right = decode(run(lab, load_function(lab, RIGHT["attention"]), request))
    assert right["largest_difference"] < 1e-5
    torch.testing.assert_close(right["probabilities_yours"], right["probabilities_ours"])
    wrong = decode(run(lab, load_function(lab, WRONG["attention"][0][1]), request))
    assert wrong["largest_difference"] > 1e-3
    assert wrong["attention_yours"].shape == wrong["attention_ours"].shape == (4, 5, 5)


def test_the_quantizer_lab_on_the_command_line_passes_a_right_file_and_names_a_wrong_one(tmp_path, capsys):
    # every other named mistake: the same check, in process, above
    (tmp_path / "right.py").write_text(RIGHT["quantize_block"])
    assert labs_cli(["check", "quantize_block", str(tmp_path / "right.py")]) == 0
    assert "PASSED" in capsys.readouterr().out
    what, source, words = WRONG["quantize_block"][1]
    (tmp_path / "wrong.py").write_text(source)
    assert labs_cli(["check", "quantize_block", str(tmp_path / "wrong.py")]) == 1, what
    assert words in capsys.readouterr().out, what
