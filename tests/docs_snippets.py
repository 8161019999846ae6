"""The fenced code blocks of README.md and docs/*.md, for the tests that run them as written.

- ```python blocks run, each in the environment its imports need (`airflow`/`runwatch_airflow`: the Airflow
  suite; `prefect`/`prefect_runwatch`: the Prefect suite; else the core suite), against a reference server.
- ```python norun marks an illustration that is not meant to run (an API listing); it is counted, not run.
- Shell blocks (```bash, ```sh, ```console, and bare ``` blocks) are not run (they install packages and start
  servers on fixed ports), but their `runwatch`, `./dev` and `pip` commands are checked: each `runwatch`
  command line parses with the real parser (a synopsis's flags all exist), each `./dev` subcommand exists,
  each local path a `pip` command names exists in this repository.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"", "sh", "bash", "shell", "console"}
UNPUBLISHED = {"runwatch", "airflow-provider-runwatch", "prefect-runwatch"}  # names not on PyPI (yet)
_FENCE = re.compile(r"^(\s*)```(.*)$")
_IMPORTS = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.MULTILINE)
_ENV_OF_PACKAGE = {
    "airflow": "airflow",
    "runwatch_airflow": "airflow",
    "prefect": "prefect",
    "prefect_runwatch": "prefect",
}


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # of the opening fence
    lang: str
    flags: frozenset[str]
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang == "python" and "norun" not in self.flags

    @property
    def env(self) -> str:
        """The test environment a Python snippet needs: core, airflow or prefect."""
        found = {_ENV_OF_PACKAGE.get(name, "core") for name in _IMPORTS.findall(self.code)}
        found.discard("core")
        if len(found) > 1:
            raise AssertionError(f"{self.where}: imports both Airflow and Prefect")
        return found.pop() if found else "core"


def snippets(paths: list[Path] | None = None) -> list[Snippet]:
    """Every fenced block of the docs, in document order."""
    found = []
    for path in paths or DOCS:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            opening = _FENCE.match(lines[i])
            if not opening:
                i += 1
                continue
            indent, info = opening.group(1), opening.group(2).split()
            body = []
            j = i + 1
            while j < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[j]):
                body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
                j += 1
            if j == len(lines):
                raise AssertionError(f"{path.name}:{i + 1}: a code fence is never closed")
            lang = info[0] if info else ""
            found.append(Snippet(path, i + 1, lang, frozenset(info[1:]), "\n".join(body) + "\n"))
            i = j + 1
    return found


def python_snippets(env: str) -> list[Snippet]:
    return [s for s in snippets() if s.runs and s.env == env]


# ------------------------------------------------------------------------------------------------ shell


def commands(snippet: Snippet) -> list[list[str]]:
    """The simple commands of a shell block, split at pipes, `;`, `&&`, `&`, `$(` and new lines."""
    text = snippet.code.replace("\\\n", " ")
    out: list[list[str]] = []
    for line in _logical_lines(text):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote: a synopsis or prose, not a command
            continue
        for token in tokens:
            if token and set(token) <= set("|&;()<>"):
                out.append(current)
                current = []
            else:
                current.append(token.removeprefix("$("))
        out.append(current)
    return [c for c in out if c]


def _logical_lines(text: str) -> list[str]:
    """Lines, with a quoted string that spans lines kept whole."""
    lines: list[str] = []
    pending = ""
    for line in text.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:
            continue  # an open quote: the next line belongs to it
        lines.append(pending)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def check_command(words: list[str]) -> str | None:
    """What is wrong with one command of the docs, or None (commands we do not know are not checked)."""
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):  # VAR=value prefixes
        words = words[1:]
    if not words:
        return None
    head, args = words[0], words[1:]
    if head == "runwatch":
        return _check_runwatch(args)
    if head == "./dev":
        return _check_dev(args)
    if head == "pip" or words[:3] == ["python", "-m", "pip"]:
        return _check_pip(args if head == "pip" else words[3:])
    return None


def _check_runwatch(args: list[str]) -> str | None:
    from runwatch.cli._args import UsageError, build_parser

    parser = build_parser()
    if any(a.startswith("[") or a.endswith("]") for a in args):  # a synopsis: every flag it names must exist
        command = args[0] if args and not args[0].startswith("-") else None
        sub = _subparser(parser, command) if command else parser
        if sub is None:
            return f"runwatch has no command {command!r}"
        known = set(sub._option_string_actions)
        unknown = sorted({f for a in args for f in re.findall(r"--?[A-Za-z][\w-]*", a)} - known)
        return f"runwatch {command}: no such flag {', '.join(unknown)}" if unknown else None
    try:
        parser.parse_args(args)
    except UsageError as exc:
        return f"runwatch {' '.join(args)}: {exc}"
    except SystemExit:  # --help
        return None
    return None


def _subparser(parser: object, command: str) -> object | None:
    actions = getattr(parser, "_subparsers", None)
    choices = actions._group_actions[0].choices if actions else {}  # type: ignore[attr-defined]
    return choices.get(command)


def _check_dev(args: list[str]) -> str | None:
    source = (ROOT / "dev").read_text()
    main = source[source.index("main() {") :]
    known = {
        name.strip() for names in re.findall(r"^\s+([\w| -]+)\)", main, re.M) for name in names.split("|")
    }
    if args and args[0] not in known:
        return f"./dev has no command {args[0]!r} (it has: {', '.join(sorted(known - {''}))})"
    return None


def _check_pip(args: list[str]) -> str | None:
    if not args or args[0] not in ("install", "wheel"):
        return None
    problems = []
    unpublished = [a for a in args if re.sub(r"\[.*\]$", "", a) in UNPUBLISHED]
    if unpublished:
        return f"pip {args[0]} {' '.join(unpublished)}: not on the package index yet; install ./core & co. by path"
    for i, arg in enumerate(args):
        follows = args[i - 1] if i else ""
        path = None
        if follows in ("-c", "-r", "--constraint", "--requirement"):
            path = arg
        elif arg.startswith(("./", "../")):
            path = re.sub(r"\[.*\]$", "", arg)
        if path is not None and not (ROOT / path).exists():
            problems.append(path)
    return f"pip {args[0]}: no {', '.join(problems)} in this repository" if problems else None


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Say, in pytest's own output (with or without -s), how many snippets ran."""
    with capsys.disabled():
        print(f"\n{text}")
