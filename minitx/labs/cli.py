"""`python -m minitx.labs`: the labs from a terminal, for learners who prefer their own editor.

    python -m minitx.labs list                     the labs, their functions and pages
    python -m minitx.labs start my_labs            a stub file per lab (existing files are kept)
    python -m minitx.labs check attention my_labs/attention.py
    python -m minitx.labs try attention my_labs/attention.py --prompt "The capital of France is"

`check` runs the same checks as the Build it page, your code in the same sandbox with the same
limits, and exits 0 when the function passes, 1 when it does not, 2 when NAME or FILE is unusable.
`try` runs SmolLM2 (--model) greedily with minitx's function and with yours, each in a job of its
own (with the processor time a 135 M-parameter model needs), prints both continuations and the
largest logit difference, and exits 0 when the two texts are the same, 1 when they differ. What your
code printed is shown with its control characters escaped: it cannot move the cursor or clear the
terminal.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from ..arguments import OneLineArgumentParser
from ..sandbox.confine import confinement
from ..sandbox.job import ForkServers
from ..sandbox.limits import LIMITS
from ..sandbox.processes import ending_what_it_leaves
from . import LABS, get_lab
from .checking import Report
from .trial import MAX_NEW_TOKENS as INSIDE_MAX_TOKENS
from .trial import TRY_LABS, try_ids, try_in_model
from .worker import SERVE, WARM, run_job

MAX_FILE_BYTES = 1_000_000


def parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(prog="python -m minitx.labs",
                              description="Write each piece of a transformer yourself; minitx checks it.")
    commands = p.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    commands.add_parser("list", help="the labs, the function each asks for, and its page")
    start = commands.add_parser("start", help="write a stub file for every lab into DIR")
    start.add_argument("dir", metavar="DIR")
    start.add_argument("--force", action="store_true", help="overwrite files that are already there")
    check = commands.add_parser("check", help="check the function NAME asks for, from FILE")
    check.add_argument("name", metavar="NAME", help="a lab, as `list` names it")
    check.add_argument("file", metavar="FILE")
    trial = commands.add_parser("try", help="run a pretrained model with your function NAME from FILE")
    trial.add_argument("name", metavar="NAME", help=f"one of the functions the decoder calls: {', '.join(TRY_LABS)}")
    trial.add_argument("file", metavar="FILE")
    trial.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), a .gguf file or a model folder")
    trial.add_argument("--prompt", required=True, help="the text the model continues")
    trial.add_argument("--chat", action="store_true", help="put the prompt in the model's chat template")
    trial.add_argument("--max-new-tokens", type=int, default=16, metavar="N",
                       help=f"at most this many, 1 to {INSIDE_MAX_TOKENS} (default 16)")
    return p


def list_labs() -> int:
    width = max(len(lab.name) for lab in LABS) + 2
    function_width = max(len(lab.function) for lab in LABS) + 2
    print(f"{'NAME':{width}}{'FUNCTION':{function_width}}{'PAGE':14}WHAT")
    for lab in LABS:
        print(f"{lab.name:{width}}{lab.function:{function_width}}{lab.page:14}{lab.title}")
    return 0


def start(folder: str, force: bool) -> int:
    target = Path(folder)
    if target.exists() and not target.is_dir():
        return fail(f"{folder} is a file, not a folder.")
    target.mkdir(parents=True, exist_ok=True)
    written, kept = [], []
    for lab in LABS:
        path = target / f"{lab.name}.py"
        if path.exists() and not force:
            kept.append(path.name)
            continue
        path.write_text(lab.stub, encoding="utf-8")
        written.append(path.name)
    if written:
        print(f"wrote {len(written)} stub file(s) into {target}: {', '.join(written)}")
    if kept:
        print(f"kept {len(kept)} file(s) already there (--force overwrites them): {', '.join(kept)}")
    print(f"then: python -m minitx.labs check attention {target / 'attention.py'}")
    return 0


def read_source(file: str) -> str:
    """The learner's file as text; ValueError with a one-line reason when it cannot be used."""
    path = Path(file)
    if not path.exists():
        raise ValueError(f"{file} does not exist.")
    if not path.is_file():
        raise ValueError(f"{file} is not a file.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{file} is larger than {MAX_FILE_BYTES:,} bytes: not one function.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{file} is not UTF-8 text.") from None
    except OSError as error:
        raise ValueError(f"{file} cannot be read: {error.strerror}.") from None


def printable(text: str) -> str:
    """Text from the learner's code as a terminal may show it: control characters (an escape code
    that clears the screen, a carriage return that overwrites a line) as their escapes; lines and tabs kept."""
    return "".join(c if c in "\n\t" or c.isprintable() else repr(c)[1:-1] for c in text)


def check(name: str, file: str) -> int:
    try:
        lab = get_lab(name)
        source = read_source(file)
    except ValueError as error:
        return fail(str(error))
    with ending_what_it_leaves():
        servers = ForkServers(WARM, SERVE, LIMITS)
        try:
            answer = run_job({"op": "check", "lab": lab.name, "source": source, "filename": file}, servers, LIMITS)
        finally:
            servers.close()
    report = Report.from_dict(answer.result) if answer.verdict.ok else \
        Report.stopped(lab.name, answer.verdict.message, answer.result)
    report.output = answer.output
    print(format_report(lab, report))
    print(f"\n(sandbox: {confinement().name})")
    return 0 if report.passed else 1


def format_report(lab, report) -> str:
    """The report as a terminal shows it: the verdict, the message, the cases, what was printed."""
    lines = [f"{lab.name} ({lab.function}): {'PASSED' if report.passed else 'FAILED'}", "",
             *textwrap.wrap(printable(report.title), 100)]
    if report.detail:
        lines.append("")
        for line in printable(report.detail).splitlines():   # prose is wrapped; code (a caret, a traceback) is not
            code = report.stage == "compile" or line.startswith(("line ", "  ["))
            lines += ["    " + line] if code else textwrap.wrap(line, 96, initial_indent="    ",
                                                                subsequent_indent="    ")
    if report.minitx_use:
        lines += ["", *textwrap.wrap(report.minitx_use, 100)]
    if report.cases:
        lines += ["", "cases:"]
        for case in report.cases:
            mark = "ok  " if case["result"] in ("exact", "within tolerance") else "FAIL"
            largest = case["largest difference"]
            largest = "" if largest is None else f", largest difference {largest:.1e}"
            lines.append(f"  {mark} {case['case']} ({case['result']}{largest})")
    if report.output:
        lines += ["", "what your code printed:", *("    " + line for line in printable(report.output).splitlines()[:40])]
    if not report.passed and lab.hints:
        lines += ["", f"a hint: {lab.hints[0]}"]
    return "\n".join(lines)


def try_in_model_cli(args) -> int:
    """SmolLM2 with minitx's function and with the learner's: exit 0 the same text, 1 not, 2 unusable input."""
    from ..pretrained import PretrainedUnavailable, load_pretrained

    try:
        get_lab(args.name)
        if args.name not in TRY_LABS:
            raise ValueError(f"{args.name} is not a function the decoder calls; try one of {', '.join(TRY_LABS)}.")
        if not 1 <= args.max_new_tokens <= INSIDE_MAX_TOKENS:
            raise ValueError(f"--max-new-tokens must be from 1 to {INSIDE_MAX_TOKENS}, not {args.max_new_tokens}.")
        source = read_source(args.file)
        pretrained = load_pretrained(args.model)
    except (ValueError, PretrainedUnavailable) as error:
        return fail(str(error))
    if not (args.chat and pretrained.chat) and not pretrained.tokenizer.encode(args.prompt).ids:
        return fail("the prompt is empty: give the model some text to continue.")
    ids, text = try_ids(pretrained, args.prompt, args.max_new_tokens, args.chat), pretrained.tokenizer.decode
    with ending_what_it_leaves():
        result = try_in_model(args.name, source, str(pretrained.source), ids, args.max_new_tokens, args.file)
    print(f"{pretrained.name}, {len(ids)} prompt tokens, up to {args.max_new_tokens} new ones")
    print(f"with minitx's {get_lab(args.name).function}: {text(result['ours'])!r}")
    if "problem" in result:
        print(f"with yours: it did not run to the end: {printable(result['problem'])}")
        if result.get("output"):
            print("what your code printed:", *("    " + line for line in printable(result["output"]).splitlines()[:20]),
                  sep="\n")
        return 1
    print(f"with yours:   {text(result['yours'])!r}")
    print(f"largest difference of the logits after the prompt: {result['largest_difference']:.2e}")
    print("the same text" if result["same"] else "a different text")
    return 0 if result["same"] else 1


def fail(message: str) -> int:
    print(f"python -m minitx.labs: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "list":
        return list_labs()
    if args.command == "start":
        return start(args.dir, args.force)
    if args.command == "try":
        return try_in_model_cli(args)
    return check(args.name, args.file)
