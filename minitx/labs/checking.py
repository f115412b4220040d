"""Checking a learner's function, in the order a learner can act on:

    1) the file compiles                    (the line and column of a syntax error)
    2) it loads and defines the function    (an error while loading: the learner's own lines)
    3) each case, simplest first:
         it runs                            (an exception: the learner's own lines, not ours)
         it returns the right type, shape and dtype   (expected vs got, named in the notation)
         it leaves its inputs alone         (or writes the ones it must, like a cache)
         it equals minitx's answer          (within the lab's float32 tolerance)
       and when it does not, why: a known mistake it matches exactly (no 1/sqrt(Dh), RoPE
       ignoring start, ...; a wrong shape too), a NaN where minitx has a number, a rule it
       breaks (a later token changing an earlier output), else what the difference looks like
       (minitx.labs.difference: a factor, a transpose, some heads only, only when T > 1, ...),
       with the learner's own line quoted where the mistake names what it computes.

minitx's answers are computed first, on copies of the inputs. The lab worker passes `load=` a
loader whose function runs in a process of its own in the sandbox (minitx.labs.learner_process), so that
the answers, the comparison and the verdict are made where the learner's code never ran. A file
that hands in minitx's own answer (read from its syntax tree: minitx.labs.imports) does not pass.
"""

from __future__ import annotations

import copy
import itertools
import linecache
import re
import traceback
from dataclasses import asdict, dataclass, field

import torch

from ..sandbox.job import Stopped
from ..sandbox.limits import LIMITS, Limits
from ..sandbox.verdict import Kind, Verdict
from . import difference
from .compare import Comparison, compare_tensors, describe, shape_problem
from .imports import minitx_use
from .lab import Case, Lab, Mistake
from .quote import quoted


@dataclass
class Report:
    """What a check found. `title` is one line; `detail` says more; plain values only (it
    crosses from the sandbox to the server as JSON)."""

    lab: str
    passed: bool
    stage: str                            # compile, load, stub, error, type, shape, inputs, diagnosis,
                                          # mismatch, limit (the sandbox stopped it), borrowed or passed
    title: str
    detail: str = ""
    case: str | None = None               # the case it failed on
    line: int | None = None               # the learner's line it points at
    cases: list[dict] = field(default_factory=list)   # per case: label, result, largest difference
    picture: dict | None = None           # target / yours for the case shown (minitx.labs.pictures)
    output: str = ""                      # what the learner's code printed, capped by the sandbox
    minitx_use: str = ""                  # what of minitx the file uses, in a sentence ("" if nothing)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @classmethod
    def stopped(cls, lab: str, message: str, found: object = None) -> "Report":
        """The sandbox stopped the check: its verdict, and the cases up to the one it stopped on (from
        the worker's `found`, {"cases": [...]}, when it says)."""
        cases = found.get("cases") if isinstance(found, dict) else None
        cases = cases if isinstance(cases, list) and all(isinstance(c, dict) for c in cases) else []
        return cls(lab, False, "limit", message, case=cases[-1].get("case") if cases else None, cases=cases)


def clone(value):
    """A deep copy of an argument; tensors are cloned (the learner may change what it gets)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if callable(value):
        return value
    return copy.deepcopy(value)


def same_value(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and \
            bool(((a == b) | (a.isnan() & b.isnan()) if a.is_floating_point() else (a == b)).all())
    return a == b


def call(lab: Lab, fn, case: Case) -> tuple[tuple, dict]:
    """fn on copies of the case's arguments: its outputs as a tuple (the arguments the lab
    must change appended), and the arguments as they were left."""
    args = clone(case.args)
    result = fn(*args.values())
    several = len(lab.outputs) - len(lab.mutates) > 1 and isinstance(result, (tuple, list))
    return (tuple(result) if several else (result,)) + tuple(args[name] for name in lab.mutates), args


def minitx_answer(lab: Lab, case: Case) -> tuple:
    return call(lab, lab.reference, case)[0]


class LearnerRaised(Exception):
    """An exception the learner's function raised in another process, as that process described it."""

    def __init__(self, data: dict):
        super().__init__(data.get("text", ""))
        self.text, self.lines, self.line = str(data.get("text", "")), str(data.get("lines", "")), data.get("line")
        self.memory = data.get("memory")


MAX_FRAMES = 40


def learner_lines(error: BaseException, filename: str) -> tuple[str, int | None]:
    """The traceback's frames in the learner's file (ours and torch's left out), and the last line. A
    line repeated (a recursion) is shown once with a count, as Python's own traceback does."""
    if isinstance(error, LearnerRaised):
        return error.lines, error.line
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == filename]
    lines = []
    for line, same in itertools.groupby(f"line {f.lineno}, in {f.name}:  {(f.line or '').strip()}"[:300]
                                        for f in frames):
        more = len(list(same)) - 1
        lines += [line, f"  [the line above repeated {more} more time{'s' * (more > 1)}]"] if more else [line]
    if len(lines) > MAX_FRAMES:
        lines = [*lines[:MAX_FRAMES // 2], f"  [{len(lines) - MAX_FRAMES} lines left out]", *lines[-MAX_FRAMES // 2:]]
    return "\n".join(lines), frames[-1].lineno if frames else None


def error_text(error: BaseException) -> str:
    if isinstance(error, LearnerRaised):
        return error.text
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}".rstrip(": ")


def compare_one(lab: Lab, spec, want, got) -> Comparison:
    """One output against minitx's: the lab's own comparison where it has one, else by kind."""
    if lab.compare is not None:
        result = lab.compare(spec, want, got)
        if result is not None:
            return result
    if spec.kind == "tensor":
        return compare_tensors(want, got, lab.rtol, lab.atol, f"`{spec.name}`")
    if spec.kind == "number":
        got = float(got)
        largest = abs(got - want)
        same = largest <= lab.atol + lab.rtol * abs(want)
        return Comparison(same, got == want, largest, f"`{spec.name}` is {got!r}; minitx's is {want!r}"
                          + ("." if same else f" (off by {largest:.3g})."))
    same = want == got
    return Comparison(same, same, 0.0 if same else float("inf"),
                      f"`{spec.name}` is {describe(got)}; minitx's is {describe(want)}.")


def compare_outputs(lab: Lab, want: tuple, got: tuple) -> tuple[Comparison, str]:
    """The first output that differs (or the last one compared) and its name."""
    result = None
    for spec, w, g in zip(lab.outputs, want, got):
        result = compare_one(lab, spec, w, g)
        if not result.same:
            return result, spec.name
    return result, lab.outputs[-1].name


def structure_problem(lab: Lab, want: tuple, got, case: Case) -> str | None:
    """A sentence when what came back has the wrong type, count, shape or dtype."""
    returned = [o.name for o in lab.outputs if o.name not in lab.mutates]
    n_got = len(got) - len(lab.mutates)
    if n_got != len(returned):
        what = describe(got[0]) if n_got == 1 else f"{n_got} things"
        return f"It should return {len(returned)} things, ({', '.join(returned)}); yours returned {what}."
    for spec, w, g in zip(lab.outputs, want, got):
        what = "after the call" if spec.name in lab.mutates else ""
        if spec.kind == "tensor":
            if not isinstance(g, torch.Tensor):
                return f"`{spec.name}` should be a tensor {spec.notation}; yours is {describe(g)}."
            problem = shape_problem(f"`{spec.name}`{' ' + what if what else ''}", spec.notation, w.shape, g.shape,
                                    case.dims)
            if problem:
                return problem
            if g.dtype != w.dtype:
                return (f"`{spec.name}` should have dtype {str(w.dtype).replace('torch.', '')}; yours is "
                        f"{str(g.dtype).replace('torch.', '')}.")
        elif spec.kind == "number":
            if isinstance(g, bool) or not isinstance(g, (int, float)) and not (
                    isinstance(g, torch.Tensor) and g.numel() == 1):
                return f"`{spec.name}` should be a number ({spec.notation}); yours is {describe(g)}."
        elif not isinstance(g, type(w)):
            return f"`{spec.name}` should be a {spec.notation}; yours is {describe(g)}."
    return None


def changed_inputs(lab: Lab, case: Case, left: dict) -> list[str]:
    """The arguments the learner's function changed in place, of those it must leave alone."""
    return [name for name, value in case.args.items()
            if name not in lab.mutates and not callable(value) and not same_value(value, left[name])]


class LaterCases:
    """The learner's outputs on the cases after the one that failed, each computed once when first
    asked for: a known mistake is named only if the next ones agree with it too, and they join the
    cases list."""

    def __init__(self, lab: Lab, fn, cases: list[Case], answers: list[tuple]):
        self.lab, self.fn, self.cases, self.answers, self.got = lab, fn, cases, answers, {}
        self.stopped = False                   # the sandbox ended the function: the verdict so far stands

    def output(self, index: int):
        """The learner's outputs on case `index`, or None where the function raised or was stopped."""
        if index not in self.got:
            try:
                self.got[index] = None if self.stopped else call(self.lab, self.fn, self.cases[index])[0]
            except Stopped:
                self.stopped, self.got[index] = True, None
            except BaseException:
                self.got[index] = None
        return self.got[index]

    def agree(self, mistake: Mistake, cases: int = 2) -> bool:
        """Whether the learner's outputs equal the mistake's on the next `cases` later cases where the
        mistake shows (its answer is not minitx's there; elsewhere a second mistake of theirs may show)."""
        showing = (i for i, (case, answer) in enumerate(zip(self.cases, self.answers))
                   if not _matches(self.lab, mistake.wrong, case, answer))
        return all(self.output(i) is None or _matches(self.lab, mistake.wrong, self.cases[i], self.output(i))
                   for i in itertools.islice(showing, cases))

    def results(self, every: bool = False) -> list[dict]:
        """The cases list's rows for the later cases that ran (`every`: all of them, run now)."""
        rows = []
        for i, (case, want) in enumerate(zip(self.cases, self.answers)):
            if not every and i not in self.got:
                continue
            got = self.output(i)
            failed = ("stopped by the sandbox" if self.stopped else "raised") if got is None else \
                "wrong shape or type" if structure_problem(self.lab, want, got, case) else None
            rows.append(case_row(case, failed or compare_outputs(self.lab, want, got)[0]))
        return rows


def case_row(case: Case, result: Comparison | str) -> dict:
    """One line of the cases list: how the case compared, or how it failed before it could."""
    if isinstance(result, str):
        return {"case": case.label, "result": result, "largest difference": None}
    return {"case": case.label, "result": "exact" if result.exact else "within tolerance" if result.same
            else "differs", "largest difference": result.largest}


def known_mistake(lab: Lab, case: Case, got: tuple, later: LaterCases | None = None) -> Mistake | None:
    """The first of the lab's known wrong answers whose outputs the learner's equal, here and on the
    later cases (two mistakes may give the same answer on one case and not on the next)."""
    return next((m for m in lab.mistakes if _matches(lab, m.wrong, case, got) and (later is None or later.agree(m))),
                None)


def diagnose(lab: Lab, fn, case: Case, want: tuple, got: tuple,
             later: LaterCases | None = None) -> Mistake | str | None:
    """Why the learner's answer differs, when a known cause fits: a known mistake, or a sentence."""
    mistake = known_mistake(lab, case, got, later)
    if mistake:
        return mistake
    for spec, w, g in zip(lab.outputs, want, got):
        if spec.kind == "tensor" and w.is_floating_point():
            bad = g.isnan() & ~w.isnan()               # NaN, or inf where minitx's has none at all (top_p's -inf is
            if w.isfinite().all():                     # a value like any other)
                bad |= ~g.isfinite()
            if bad.any():
                where = tuple(bad.nonzero()[0].tolist())
                return (f"`{spec.name}` has {int(bad.sum())} NaN or infinite values where minitx's has numbers, "
                        f"the first at [{', '.join(map(str, where))}].")
    for rule in lab.properties:
        try:
            message = rule(fn, case, lambda f, c: call(lab, f, c)[0])
        except Stopped:
            raise
        except Exception:          # the learner's function failed on the rule's call: no diagnosis from it
            continue
        if message:
            return message
    return None


def _as_tensor(value):
    return torch.tensor(float(value), dtype=torch.float64) if isinstance(value, (int, float)) and \
        not isinstance(value, bool) else value


def describe_difference(lab: Lab, case: Case, want: tuple, got: tuple, name: str,
                        last_word: bool = False) -> str | None:
    """What the difference in output `name` looks like (minitx.labs.difference); with `last_word`, how it
    is spread when no pattern fits. None for outputs that are not float tensors."""
    index = [o.name for o in lab.outputs].index(name)

    def answer(args: dict):
        try:
            return _as_tensor(minitx_answer(lab, Case(case.label, args, case.dims))[index])
        except Exception:          # minitx's function refuses that input: no neighbour there
            return None

    return difference.explain(_as_tensor(want[index]), _as_tensor(got[index]), lab.outputs[index].notation, case,
                              max(lab.rtol, 1e-9), max(lab.atol, 1e-9), answer, last_word)


def _matches(lab: Lab, wrong, case: Case, got: tuple) -> bool:
    """Whether the learner's outputs are those of a known wrong answer."""
    try:
        expected = call(lab, wrong, case)[0]
    except Exception:
        return False
    if len(expected) != len(got):
        return False
    for spec, w, g in zip(lab.outputs, expected, got):
        if isinstance(w, torch.Tensor) != isinstance(g, torch.Tensor) or type(w) is not type(g):
            return False                   # a wrong answer of another type or shape is another mistake
        if isinstance(w, torch.Tensor) and (w.shape != g.shape or w.dtype != g.dtype):
            return False
        if not (compare_one(lab, spec, w, g).same if isinstance(w, torch.Tensor) or spec.kind != "tensor" else w == g):
            return False
    return True


class LearnerCodeError(ValueError):
    """The learner's file cannot give its function: what to tell them, and where."""

    def __init__(self, stage: str, title: str, detail: str = "", line: int | None = None):
        super().__init__(f"{title} {detail}".strip())
        self.stage, self.title, self.detail, self.line = stage, title, detail, line


def _memory_asked(error: BaseException) -> str | None:
    """For an allocation that failed under the memory limit, what the refused request was, in words
    ("" when it does not say); None for any other error."""
    text = str(error)
    if not (isinstance(error, MemoryError) or "can't allocate memory" in text or "not enough memory" in text):
        return None
    asked = re.search(r"allocate (\d+) bytes", text)
    return f" (the request that was refused, for {int(asked.group(1)) / 2**30:,.2f} GiB, came on top of what " \
           f"it already held)" if asked else ""


def out_of_memory(error: BaseException, limits: Limits = LIMITS) -> str | None:
    """A sentence when the error is an allocation that failed under the sandbox's memory limit."""
    if isinstance(error, LearnerRaised):
        return error.memory
    asked = _memory_asked(error)
    return None if asked is None else Verdict(Kind.MEMORY, {"limit_gib": (limits.memory_bytes or 0) / 2**30,
                                                            "asked": asked}).message


def compile_file(source: str, filename: str):
    """The learner's file compiled; LearnerCodeError with the line and column of a syntax error."""
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as error:
        line_text = (error.text or "").rstrip("\n")
        caret = " " * max(0, (error.offset or 1) - 1) + "^"
        raise LearnerCodeError("compile", f"Syntax error on line {error.lineno}, column {error.offset}: "
                                          f"{error.msg}.", f"{line_text}\n{caret}" if line_text else "",
                               error.lineno) from None
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)   # for tracebacks
    return code


def load_compiled(lab: Lab, code, filename: str):
    """Run the compiled file and return its function named `lab.function`; LearnerCodeError if
    the file raises (its own lines shown) or defines no such function."""
    namespace = {"__name__": f"learner_{lab.name}", "__file__": filename}
    try:
        exec(code, namespace)
    except BaseException as error:
        lines, line = learner_lines(error, filename)
        memory = out_of_memory(error)
        if memory:
            raise LearnerCodeError("limit", memory, lines, line) from None
        raise LearnerCodeError("load", f"Your file raised {error_text(error)} while it was loading.", lines,
                               line) from None
    fn = namespace.get(lab.function)
    if not callable(fn):
        defined = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("_")
                         and getattr(v, "__module__", None) == namespace["__name__"])
        raise LearnerCodeError("load", f"Your file defines no function named `{lab.function}`.",
                               f"It defines: {', '.join(defined)}." if defined else "")
    return fn


def load_function(lab: Lab, source: str, filename: str = "your_code.py"):
    """The learner's function from their file, or LearnerCodeError saying why not."""
    return load_compiled(lab, compile_file(source, filename), filename)


STUB_TITLE = "`{}` is not written yet: replace `raise NotImplementedError` with your code."


def check_without_running(lab: Lab, source: str, filename: str = "your_code.py") -> Report | None:
    """What a check can say without running any of the learner's code: a syntax error (compiling
    runs nothing), or the lab's stub as it was handed out. None when the code must run."""
    try:
        compile_file(source, filename)
    except LearnerCodeError as error:
        return Report(lab.name, False, error.stage, error.title, error.detail, line=error.line)
    if source.strip() == lab.stub.strip():
        return Report(lab.name, False, "stub", STUB_TITLE.format(lab.function))
    return None


def check(lab: Lab, source: str, filename: str = "your_code.py", load=None) -> Report:
    """Run every check of `lab` on the learner's `source`. See the module docstring. load(lab, source,
    filename, cases) -> the learner's function, run elsewhere (LearnerCodeError if the file cannot give it)."""
    def report(stage, title, detail="", case=None, line=None, picture=None):
        return Report(lab.name, stage == "passed", stage, title, detail, case, line, results, picture,
                      minitx_use=use.sentence)

    results: list[dict] = []
    use = minitx_use(lab, source)
    try:
        code = compile_file(source, filename)                        # 1) it compiles
        # 2) minitx's answers first, then the learner's file
        cases = lab.cases()
        answers = [minitx_answer(lab, case) for case in cases]
        fn = load(lab, source, filename, cases) if load else load_compiled(lab, code, filename)
    except LearnerCodeError as error:
        return report(error.stage, error.title, error.detail, line=error.line)

    # 3) case by case
    first_got = None                                  # the first case's answer, for the picture of a pass
    for number, (case, want) in enumerate(zip(cases, answers)):
        def failed(stage, title, detail="", line=None, picture=None, result="failed"):
            results.append(case_row(case, result))
            return report(stage, title, detail, case.label, line, picture)

        try:
            got, left = call(lab, fn, case)
        except Stopped as stop:                   # the worker reports the sandbox's verdict, and this case
            stop.found = {"cases": [*results, case_row(case, "stopped by the sandbox")]}
            raise
        except NotImplementedError:
            if number == 0:
                return report("stub", STUB_TITLE.format(lab.function))
            return failed("error", f"`{lab.function}` raised NotImplementedError on: {case.label}.", result="raised")
        except BaseException as error:            # SystemExit too: exit() in a function is a mistake
            lines, line = learner_lines(error, filename)
            memory = out_of_memory(error)
            if memory:
                return failed("limit", memory, f"On: {case.label}.\n{lines}".rstrip(), line, result="stopped")
            return failed("error", f"{error_text(error)}", f"On: {case.label}.\n{lines}".rstrip(), line,
                          result="raised")
        problem = structure_problem(lab, want, got, case)
        if problem:
            stage = "shape" if "should be (" in problem or "dtype" in problem else "type"
            later = LaterCases(lab, fn, cases[number + 1:], answers[number + 1:])
            mistake = known_mistake(lab, case, got, later)
            title, line = quoted(mistake.message, source, mistake.lines, lab.function) if mistake else (problem, None)
            return failed(stage, title, (problem + "\n" if mistake else "") + f"On: {case.label}.", line,
                          result=f"wrong {'shape or dtype' if stage == 'shape' else 'type'}")
        changed = changed_inputs(lab, case, left)
        if changed:
            names = ", ".join(f"`{n}`" for n in changed)
            return failed("inputs", f"Your function changed its input {names} in place.",
                          "The caller still needs it as it was: work on a new tensor (`x = x / s`, not "
                          "`x /= s` or `x.div_(s)`).", picture=_picture(lab, case, want, got),
                          result="changed its input")
        first_got = got if first_got is None else first_got
        comparison, name = compare_outputs(lab, want, got)
        results.append(case_row(case, comparison))
        if not comparison.same:
            later = LaterCases(lab, fn, cases[number + 1:], answers[number + 1:])
            why, line = diagnose(lab, fn, case, want, got, later), None
            if isinstance(why, Mistake):
                why, line = quoted(why.message, source, why.lines, lab.function)
            if why is None:
                why = describe_difference(lab, case, want, got, name)
            results.extend(later.results(every=why is None))      # what tells the cases apart needs them all
            if why is None:
                why = difference.across_cases(cases, [r["result"] in ("exact", "within tolerance") for r in results]) \
                    or describe_difference(lab, case, want, got, name, last_word=True)
            return report("diagnosis" if why else "mismatch", why or comparison.text,
                          (comparison.text + "\n" if why else "") + f"On: {case.label}.", case=case.label, line=line,
                          picture=_picture(lab, case, want, got))
    exact = sum(r["result"] == "exact" for r in results)
    largest = max(r["largest difference"] for r in results)
    picture = _picture(lab, cases[0], answers[0], first_got)
    if use.borrows_answer:
        return report("borrowed", f"All {len(cases)} cases match, but with minitx's own answer: write "
                                  f"`{lab.function}` yourself for the lab to count it.", picture=picture)
    return report("passed", f"Passed: {len(cases)} cases, {exact} exactly equal to minitx's, the largest "
                            f"difference {largest:.1e}.", picture=picture)


def _picture(lab: Lab, case: Case, want: tuple, got: tuple) -> dict | None:
    if lab.picture is None:
        return None
    try:
        return lab.picture(case, want, got)
    except Exception:           # a picture is a help, never a reason for a check to fail
        return None
