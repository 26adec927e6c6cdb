"""docs/first-driver.md stays true to the driver template as it renders (STYLE.md point 7).

The walk-through marks its code blocks with an HTML comment on the line before the fence:

- ``<!-- excerpt: FILE -->``: the block is a verbatim part of FILE (a path inside the
  rendered project ``tieline-acme-matrix/``): its lines appear in the file, contiguous and
  in order (trailing spaces aside);
- ``<!-- change: FILE -->``: the block is a unified diff of FILE (``--- a/FILE``,
  ``+++ b/FILE``, hunks with ``@@`` headers); every hunk's old lines (context and ``-``)
  appear in the file exactly once, and ``git apply`` takes it as it is. Applied in the
  page's order, the changes give a plugin whose own tests pass;
- ``<!-- output-of: COMMAND -->``: the block is what COMMAND prints (checked where the
  output does not depend on the machine).

Besides, every ``tieline …`` command the page shows is a command of ``tieline.cli.main``
with options it has, and the page names every file of the rendered template.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tieline.cli import main as cli_main
from tieline.kit.template import new_plugin

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "first-driver.md"
NAME = "acme_matrix"

_FENCE = re.compile(r"^```")
_MARKER = re.compile(r"<!--\s*(excerpt|change|output-of):\s*(.+?)\s*-->")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the page."""

    line: int  #: 1-based line of the opening fence
    lang: str
    lines: tuple[str, ...]
    marker: tuple[str, str] | None  #: (kind, argument) of the comment just before it

    @property
    def where(self) -> str:
        return f"docs/first-driver.md:{self.line}"


def blocks(text: str) -> list[Block]:
    """Every fenced block, with the marker comment on the line before its fence (if any)."""
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if _FENCE.match(lines[i]):
            start, lang = i, lines[i][3:].strip()
            i += 1
            body = []
            while i < len(lines) and not _FENCE.match(lines[i]):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise AssertionError(f"docs/first-driver.md:{start + 1}: unclosed code block")
            marker = _MARKER.fullmatch(lines[start - 1].strip()) if start else None
            out.append(Block(start + 1, lang, tuple(body),
                             (marker.group(1), marker.group(2)) if marker else None))
        i += 1
    return out


def _stripped(lines: list[str] | tuple[str, ...]) -> list[str]:
    return [line.rstrip() for line in lines]


def find_lines(haystack: list[str], needle: list[str]) -> list[int]:
    """Where ``needle`` occurs in ``haystack`` as contiguous lines (trailing spaces aside)."""
    hay, need = _stripped(haystack), _stripped(needle)
    if not need:
        return []
    return [i for i in range(len(hay) - len(need) + 1) if hay[i:i + len(need)] == need]


def hunks(block: Block) -> list[tuple[list[str], list[str]]]:
    """A diff block as (old lines, new lines) per hunk; an empty line is a blank context line."""
    out: list[tuple[list[str], list[str]]] = []
    old: list[str] = []
    new: list[str] = []
    assert block.marker is not None
    header = [f"--- a/{block.marker[1]}", f"+++ b/{block.marker[1]}"]
    assert list(block.lines[:2]) == header, (
        f"{block.where}: a change block is a unified diff that starts with {header}")
    for number, line in enumerate(block.lines[2:], block.line + 3):
        if line.startswith("@@"):
            if old or new:
                out.append((old, new))
            old, new = [], []
            continue
        sign, rest = (line[:1], line[1:]) if line else (" ", "")
        if sign not in " -+":
            raise AssertionError(f"docs/first-driver.md:{number}: a diff line starts with "
                                 f"' ', '-' or '+', not {sign!r}")
        if sign in " -":
            old.append(rest)
        if sign in " +":
            new.append(rest)
    out.append((old, new))
    return out


def apply_change(project: Path, block: Block) -> None:
    """Apply one ``change`` block to the rendered project, hunk by hunk."""
    assert block.marker is not None
    path = project / block.marker[1]
    assert path.is_file(), f"{block.where}: the change is to {block.marker[1]}, which the " \
                           "rendered template does not have"
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, (old, new) in enumerate(hunks(block), 1):
        where = find_lines(lines, old)
        assert len(where) == 1, (
            f"{block.where}, hunk {number} of the change to {block.marker[1]}: its old lines "
            f"occur {len(where)} times in the rendered file (must be once):\n" + "\n".join(old)
        )
        lines[where[0]:where[0] + len(old)] = new
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_plugin(NAME, "driver", tmp_path_factory.mktemp("first_driver"))


def _marked(text: str, kind: str) -> list[Block]:
    return [b for b in blocks(text) if b.marker and b.marker[0] == kind]


# -------------------------------------------------------------------------------------------
# Excerpts, changes and outputs
# -------------------------------------------------------------------------------------------


def test_every_python_block_is_marked(doc: str) -> None:
    unmarked = [b.where for b in blocks(doc) if b.lang == "python" and b.marker is None]
    assert not unmarked, ("python blocks without <!-- excerpt: FILE --> on the line before: "
                          + ", ".join(unmarked))


def test_excerpts_are_verbatim_parts_of_the_rendered_files(doc: str, rendered: Path) -> None:
    excerpts = _marked(doc, "excerpt")
    assert len(excerpts) >= 10, "the page lost its excerpts (or the marker convention changed)"
    problems = []
    for block in excerpts:
        path = rendered / block.marker[1]  # type: ignore[index]
        if not path.is_file():
            problems.append(f"{block.where}: the rendered template has no "
                            f"{block.marker[1]}")  # type: ignore[index]
        elif not find_lines(path.read_text(encoding="utf-8").splitlines(), list(block.lines)):
            problems.append(f"{block.where}: not a verbatim, contiguous part of "
                            f"{block.marker[1]}")  # type: ignore[index]
    assert not problems, "docs/first-driver.md excerpts:\n" + "\n".join(problems)


def test_the_worked_example_applies_and_its_tests_pass(
        doc: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    project = new_plugin(NAME, "driver", tmp_path_factory.mktemp("worked_example"))
    changes = _marked(doc, "change")
    assert {b.marker[1] for b in changes} >= {  # type: ignore[index]
        f"{NAME}/codec.py", f"{NAME}/driver.py", f"{NAME}/emulator.py", "tests/test_codec.py",
        "tests/test_driver.py"}
    for block in changes:
        assert block.lang == "diff", f"{block.where}: a change block is a ```diff block"
        apply_change(project, block)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(project), *filter(None, [os.environ.get("PYTHONPATH")])])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (
        "the plugin changed as docs/first-driver.md says fails its tests:\n"
        + run.stdout[-4000:] + run.stderr[-2000:]
    )


def test_git_apply_takes_the_changes_as_shown(
        doc: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """An integrator saves each change block to a file and runs ``git apply`` on it: the
    result is the same as the changes made by their context."""
    by_tool = new_plugin(NAME, "driver", tmp_path_factory.mktemp("git_apply"))
    by_context = new_plugin(NAME, "driver", tmp_path_factory.mktemp("by_context"))
    for number, block in enumerate(_marked(doc, "change")):
        patch = by_tool.parent / f"change-{number}.diff"
        patch.write_text("\n".join(block.lines) + "\n", encoding="utf-8")
        applied = subprocess.run(["git", "apply", "--verbose", str(patch)], cwd=by_tool,
                                 capture_output=True, text=True, timeout=60)
        assert applied.returncode == 0, f"{block.where}: git apply refuses it:\n" \
                                        f"{applied.stderr}"
        apply_change(by_context, block)
    for path in sorted(by_context.rglob("*")):
        if path.is_file():
            mine = by_tool / path.relative_to(by_context)
            assert mine.read_bytes() == path.read_bytes(), path.relative_to(by_context)


def test_shown_output_of_plugin_new_is_what_it_prints(
        doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {b.marker[1]: b for b in _marked(doc, "output-of")}  # type: ignore[index]
    block = outputs[f"tieline plugin new {NAME}"]
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli_main, ["plugin", "new", NAME])
    assert result.exit_code == 0, result.output
    assert _stripped(result.output.splitlines()) == _stripped(block.lines), (
        f"{block.where}: `tieline plugin new {NAME}` now prints:\n{result.output}"
    )


# -------------------------------------------------------------------------------------------
# Commands and files
# -------------------------------------------------------------------------------------------


def shown_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of every ``tieline …`` command: lines of sh blocks, and inline code
    spans of the prose that start with ``tieline ``."""
    found = []
    for block in blocks(text):
        if block.lang not in ("sh", "bash", "console"):
            continue
        for number, line in enumerate(block.lines, block.line + 1):
            words = shlex.split(line.removeprefix("$ "), comments=True)
            if words and words[0] == "tieline":
                found.append((f"docs/first-driver.md:{number}", words[1:]))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    for span in re.findall(r"`(tieline [^`]+)`", prose):
        found.append((f"docs/first-driver.md: `{span}`", shlex.split(span)[1:]))
    return found


def command_problem(argv: list[str], group: click.Group = cli_main) -> str | None:
    """Why ``tieline ARGV`` is not a command of the CLI with those options, or None."""
    command: click.Command = group
    words = list(argv)
    path = "tieline"
    while isinstance(command, click.Group):
        if not words or words[0].startswith("-"):
            return f"`{path}` needs a subcommand ({', '.join(sorted(command.commands))})"
        name = words.pop(0)
        if name not in command.commands:
            return f"`{path}` has no subcommand '{name}' ({', '.join(sorted(command.commands))})"
        command, path = command.commands[name], f"{path} {name}"
    options = {opt for param in command.params if isinstance(param, click.Option)
               for opt in (*param.opts, *param.secondary_opts)} | {"--help"}
    for word in words:
        if word.startswith("--") and word.split("=", 1)[0] not in options:
            return f"`{path}` has no option {word.split('=', 1)[0]}"
    return None


def test_command_check_catches_what_does_not_exist() -> None:
    assert command_problem(["route", "3", "5"]) is None
    assert command_problem(["plugin", "new", NAME, "--output", "x"]) is None
    assert command_problem(["emulat", "x"]) is not None
    assert command_problem(["plugin"]) is not None
    assert command_problem(["plugin", "old"]) is not None
    assert command_problem(["tally", "--routr", "x"]) is not None


def test_every_command_shown_exists(doc: str) -> None:
    commands = shown_commands(doc)
    shown = {argv[0] for _, argv in commands if argv}
    assert {"plugin", "plugins", "emulate", "validate", "run", "route", "tally"} <= shown, (
        "the walk-through no longer shows the commands it is about"
    )
    problems = [f"{where}: {problem}" for where, argv in commands
                if (problem := command_problem(argv)) is not None]
    assert not problems, "docs/first-driver.md:\n" + "\n".join(problems)


def test_the_page_names_every_rendered_file(doc: str, rendered: Path) -> None:
    files = sorted(p.relative_to(rendered).as_posix() for p in rendered.rglob("*")
                   if p.is_file())
    assert f"{NAME}/codec.py" in files
    missing = [f for f in files if f"`{f}`" not in doc]
    assert not missing, ("docs/first-driver.md does not name (in `backquotes`) these files of "
                         "the rendered template: " + ", ".join(missing))
