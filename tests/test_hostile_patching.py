"""Hostile: a file that patches torch's comparisons and minitx's checker so that everything looks equal,
then hands in a wrong function. The comparison and the verdict are made in the worker, where the
learner's code never ran: the wrong function fails, with the message that names its mistake."""

from __future__ import annotations

import pytest

from tests.hostile_support import WRONG, check, shared_worker

PATCHES = '''
import torch
import minitx.labs.checking as checking
import minitx.labs.compare as compare

torch.allclose = lambda *a, **k: True
torch.isclose = lambda a, b, *r, **k: torch.ones_like(a, dtype=torch.bool)
torch.equal = lambda *a, **k: True
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)
compare.compare_tensors = lambda *a, **k: compare.Comparison(True, True, 0.0, "equal")
checking.compare_outputs = lambda lab, want, got: (compare.Comparison(True, True, 0.0, "equal"), "out")
checking.check = lambda lab, *a, **k: checking.Report(lab.name, True, "passed", "Passed: patched.")
'''


@pytest.fixture
def worker():
    return shared_worker("isolated")         # the verdict is made in the worker in either mode: the isolated one is enough


@pytest.mark.parametrize("lab", ["attention", "top_p"])
def test_patching_torch_or_the_checker_does_not_pass_a_wrong_function(worker, lab):
    what, source, words = WRONG[lab][0]
    answer = check(worker, lab, PATCHES + source)
    assert answer.verdict.ok, answer
    report = answer.result
    assert not report["passed"] and report["title"] != "Passed: patched.", report
    assert words in report["title"] + report["detail"], (what, report["title"])
