"""JSON files with positions, and atomic writes.

Reading
=======

:func:`load_json` parses a file with a small recursive-descent scanner of its own that gives
the same Python value as :func:`json.loads` for every valid document, and also remembers
where each value (and each object key) starts, so that a problem found later — by a JSON
Schema, or by a rule no schema can say — can be reported as ``tieline.json:12:9:
$.routers["studio-a"].sources: ...``. A file that is not JSON raises :class:`JsonFileError`
carrying one :class:`~tieline.errors.SettingsProblem` with the line and column of the fault.
Lines are counted by ``\\n`` (as :mod:`json` does), columns by characters (not bytes), a tab
counts as one column; both are 1-based.

On purpose, the scanner is stricter than :func:`json.loads` in six ways: an object that
repeats a key is an error (:func:`json.loads` silently keeps the last one, so a settings
file with two ``"routers"`` keys would lose the first); ``NaN``, ``Infinity`` and
``-Infinity`` are errors (they are not JSON, and :func:`json.loads` reads them as floats
that pass every ``minimum``/``maximum`` check or wait forever); a number too large for a
float (``1e400``, which :func:`json.loads` reads as infinity) is an error; nesting deeper
than :data:`MAX_DEPTH` is an error; a ``\\uD800``-``\\uDFFF`` escape without its other half
(a lone surrogate, no character at all: no file could be written back with it) is an error;
and the file must be UTF-8 (a UTF-8 byte-order mark is skipped). Each error names the line,
column and JSON path of the value.

Writing
=======

:func:`write_json_atomic` (and :func:`write_bytes_atomic`, which it builds on, for any
bytes: the cluster key, the systemd unit) replaces a file so that a crash (the process
killed, the machine losing power) at any instant leaves at the file's name either the
complete old content or the complete new content — never a mix, never a truncated file,
never nothing:

1. the new content is validated and serialised in memory first; a refusal or a
   serialisation error happens before anything on disk is touched (from here on,
   :func:`write_bytes_atomic`);
2. it is written to a new temporary file in the *same directory* (so the same
   filesystem), named ``.<name>.<random>.tmp``, then flushed and ``fsync``\\ ed: once
   ``fsync`` returns, the new bytes are on stable storage. Until step 4 the target's name
   still points at the old file, which nothing has modified;
3. the previous version is kept as ``<name>.prev``: a hard link to the old file is made
   under a temporary name (or, where hard links are not supported, a copy is written and
   ``fsync``\\ ed), then renamed onto ``<name>.prev``. The target's name is not touched, so
   the old file is still complete at its name throughout;
4. :func:`os.replace` renames the temporary file onto the target. ``rename(2)`` within one
   filesystem is atomic: any reader, and the filesystem after a crash, sees the name
   pointing either at the old inode or at the new one, whose data step 2 already made
   durable. This ordering (data ``fsync`` before rename) is what keeps a power loss from
   persisting the rename ahead of the data and leaving an empty file behind;
5. the directory is ``fsync``\\ ed, which makes the renames themselves durable; a crash
   before this point can only roll the name back to the old, complete file.

A crash between steps 2 and 4 leaves a ``.<name>.*.tmp`` file behind. Such a file may be
incomplete, and it is **never** read as settings: readers open only the real name
(``tieline.json``, never a glob), and the leading dot and ``.tmp`` suffix keep it out of any
``*.json`` pattern. It can be deleted at any time.

Writers must be serialised by the caller (:class:`tieline.settings.loader.SettingsStore` is the only
writer); two concurrent writers still never produce a torn file, but the last rename wins.
If the target is a symbolic link, the link itself is replaced by a regular file.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Callable, Iterable
from json.decoder import scanstring
from pathlib import Path
from typing import Any

from ..errors import SettingsProblem, TielineError

__all__ = [
    "MAX_DEPTH",
    "JsonDocument",
    "JsonFileError",
    "json_path",
    "load_json",
    "write_bytes_atomic",
    "write_json_atomic",
]

#: Deepest nesting of arrays and objects :func:`load_json` accepts.
MAX_DEPTH = 256

#: One element of a JSON path: an object key or an array index.
PathItem = str | int
JsonPath = tuple[PathItem, ...]

_WHITESPACE = re.compile(r"[ \t\n\r]*")
# json.scanner.NUMBER_RE, with ASCII digits only: json.loads (its C scanner) rejects "١".
_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_CONSTANTS: tuple[tuple[str, Any], ...] = (
    ("null", None),
    ("true", True),
    ("false", False),
)
#: a lone surrogate: what a \\uD800-\\uDFFF escape without its pair decodes to
_SURROGATE = re.compile("[\ud800-\udfff]")

#: what json.loads reads as floats but JSON does not have (RFC 8259 section 6)
_NOT_NUMBERS = ("NaN", "Infinity", "-Infinity")
_INFINITE = (float("inf"), float("-inf"))
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[A-Za-z0-9_$.+-]{1,24}")
_PYTHON_WORDS = {"True": "true", "False": "false", "None": "null"}


class JsonFileError(TielineError):
    """A JSON file could not be read or is not valid JSON; ``problem`` says where and why."""

    def __init__(self, problem: SettingsProblem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def json_path(path: Iterable[PathItem]) -> str:
    """The JSON path of ``path`` as people read it.

    ``()`` is ``$``; ``("routers", 0, "sources")`` is ``$.routers[0].sources``; a key that is
    not an identifier is bracket-quoted: ``$["studio-a"]``.
    """
    out = ["$"]
    for item in path:
        if isinstance(item, int):
            out.append(f"[{item}]")
        elif _IDENTIFIER.fullmatch(item):
            out.append(f".{item}")
        else:
            out.append(f"[{json.dumps(item, ensure_ascii=False)}]")
    return "".join(out)


class _Lines:
    """Converts character offsets in a text to 1-based (line, column)."""

    def __init__(self, text: str) -> None:
        self.starts = [0]
        self.starts.extend(m.end() for m in re.finditer("\n", text))

    def locate(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self.starts, offset) - 1
        return index + 1, offset - self.starts[index] + 1


class JsonDocument:
    """A parsed JSON file that remembers where each value starts.

    :ivar data: the parsed value, equal to what :func:`json.loads` gives.
    :ivar name: how the file is named in messages (``tieline.json``).
    """

    __slots__ = ("data", "name", "_values", "_keys", "_lines")

    def __init__(
        self, data: Any, name: str, *, lines: _Lines,
        values: dict[JsonPath, int], keys: dict[JsonPath, int],
    ) -> None:
        self.data = data
        self.name = name
        self._lines = lines
        self._values = values
        self._keys = keys

    @classmethod
    def from_text(cls, text: str, name: str) -> JsonDocument:
        """Parse ``text``; raises :class:`JsonFileError` naming ``name`` if it is not JSON."""
        scanner = _Scanner(text)
        try:
            data = scanner.document()
        except _SyntaxProblem as exc:
            line, column = scanner.lines.locate(exc.offset)
            raise JsonFileError(
                SettingsProblem(name, line, column, json_path(exc.path), exc.message)
            ) from None
        return cls(data, name, lines=scanner.lines, values=scanner.values, keys=scanner.keys)

    def _offset(self, path: JsonPath) -> int:
        for end in range(len(path), -1, -1):
            offset = self._values.get(path[:end])
            if offset is not None:
                return offset
        raise AssertionError("the root value always has a position")  # pragma: no cover

    def position(self, path: Iterable[PathItem]) -> tuple[int, int]:
        """1-based (line, column) where the value at ``path`` starts.

        For a path that is not in the document, the position of its nearest existing
        ancestor (the root at worst).
        """
        return self._lines.locate(self._offset(tuple(path)))

    def key_position(self, path: Iterable[PathItem]) -> tuple[int, int]:
        """1-based (line, column) of the *key* of the object member at ``path``.

        For "unknown key" messages. Falls back to :meth:`position` for array items, the root
        and paths that are not in the document.
        """
        path = tuple(path)
        offset = self._keys.get(path)
        if offset is None:
            offset = self._offset(path)
        return self._lines.locate(offset)

    def problem(
        self, path: Iterable[PathItem], message: str, *, key: bool = False
    ) -> SettingsProblem:
        """A :class:`SettingsProblem` about the value at ``path`` (its key if ``key``)."""
        path = tuple(path)
        line, column = self.key_position(path) if key else self.position(path)
        return SettingsProblem(self.name, line, column, json_path(path), message)

    def __repr__(self) -> str:
        return f"<JsonDocument {self.name!r}>"


def load_json(path: Path, name: str | None = None) -> JsonDocument:
    """Read and parse the JSON file at ``path``.

    :param path: the file.
    :param name: how the file is named in messages; ``path.name`` by default.
    :returns: the document, with its data and the position of every value.
    :raises JsonFileError: the file is missing, unreadable, not UTF-8, empty or not JSON
        (its ``problem`` has the line, column, JSON path and what was expected).
    """
    path = Path(path)
    if name is None:
        name = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise JsonFileError(SettingsProblem(name, 0, 0, "$", "file not found")) from None
    except OSError as exc:
        raise JsonFileError(SettingsProblem(
            name, 0, 0, "$", f"cannot read the file: {exc.strerror or exc}"
        )) from None
    return JsonDocument.from_text(_decode(raw, name), name)


def _decode(raw: bytes, name: str) -> str:
    """``raw`` as UTF-8 text (a byte-order mark skipped), or a problem at the bad byte."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise JsonFileError(SettingsProblem(
            name, 1, 1, "$", "file is UTF-16; save it as UTF-8"
        ))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        column = len(raw[line_start:exc.start].decode("utf-8")) + 1
        raise JsonFileError(SettingsProblem(
            name, line, column, "$",
            f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} cannot be decoded "
            "here); save the file as UTF-8",
        )) from None


class _SyntaxProblem(Exception):
    """Raised inside the scanner; :meth:`JsonDocument.from_text` makes it a JsonFileError."""

    def __init__(self, offset: int, path: JsonPath, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.path = path
        self.message = message


class _Scanner:
    """Recursive-descent JSON parser recording the offset of every value and key.

    It accepts exactly what :func:`json.loads` accepts (and builds the same values), except
    for the stricter rules listed in the module docstring.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.end = len(text)
        self.lines = _Lines(text)
        self.values: dict[JsonPath, int] = {}
        self.keys: dict[JsonPath, int] = {}

    # -- helpers ---------------------------------------------------------------------------

    def skip(self, pos: int) -> int:
        return _WHITESPACE.match(self.text, pos).end()  # type: ignore[union-attr]

    def where(self, offset: int) -> str:
        line, column = self.lines.locate(offset)
        return f"line {line} column {column}"

    def found(self, pos: int) -> str:
        """What is at ``pos``, for "expecting …, found …" messages."""
        text = self.text
        if text.startswith(("//", "/*"), pos):
            return "a comment (JSON has no comments)"
        if text[pos] == "'":
            return "a single quote (JSON strings and keys use double quotes)"
        word = _WORD.match(text, pos)
        if word:
            if word.group() in _PYTHON_WORDS:
                return f"'{word.group()}' (JSON writes {_PYTHON_WORDS[word.group()]})"
            return f"'{word.group()}'"
        return repr(text[pos])

    def invalid(self, pos: int, path: JsonPath, expecting: str) -> _SyntaxProblem:
        return _SyntaxProblem(
            pos, path, f"invalid JSON: expecting {expecting}, found {self.found(pos)}"
        )

    def truncated(self, path: JsonPath, start: int, what: str) -> _SyntaxProblem:
        return _SyntaxProblem(
            self.end, path,
            "file ends in the middle of the JSON (truncated?): "
            f"the {what} that starts at {self.where(start)} is not closed",
        )

    # -- grammar ---------------------------------------------------------------------------

    def document(self) -> Any:
        pos = self.skip(0)
        if pos == self.end:
            raise _SyntaxProblem(pos, (), "file is empty; expected a JSON object")
        value, pos = self.value(pos, (), 0)
        pos = self.skip(pos)
        if pos != self.end:
            raise _SyntaxProblem(
                pos, (),
                "invalid JSON: unexpected text after the end of the JSON value, found "
                f"{self.found(pos)}",
            )
        return value

    def value(self, pos: int, path: JsonPath, depth: int) -> tuple[Any, int]:
        """Parse the value starting at ``pos`` (not whitespace, not the end of the text)."""
        text = self.text
        self.values[path] = pos
        char = text[pos]
        if char == "{":
            return self.object(pos, path, depth + 1)
        if char == "[":
            return self.array(pos, path, depth + 1)
        if char == '"':
            return self.string(pos, path)
        number = _NUMBER.match(text, pos)
        if number:
            integer, fraction, exponent = number.groups()
            try:
                if fraction or exponent:
                    value = float(number.group())
                    if value in _INFINITE:
                        shown = number.group()
                        shown = shown if len(shown) <= 24 else shown[:24] + "…"
                        raise _SyntaxProblem(
                            pos, path, f"number {shown} is too large (it would be infinite); "
                            "write a smaller number",
                        )
                    return value, number.end()
                return int(integer), number.end()
            except ValueError:  # more digits than sys.get_int_max_str_digits() allows
                raise _SyntaxProblem(
                    pos, path, f"number with {len(integer)} digits is too long; Python reads "
                    f"at most {sys.get_int_max_str_digits()}",
                ) from None
        for word, constant in _CONSTANTS:
            if text.startswith(word, pos):
                return constant, pos + len(word)
        for word in _NOT_NUMBERS:
            if text.startswith(word, pos):
                raise _SyntaxProblem(
                    pos, path, f"invalid JSON: {word} is not a JSON number (JSON has no NaN "
                    "or infinity); write a number",
                )
        raise self.invalid(pos, path, "a value")

    def string(self, pos: int, path: JsonPath) -> tuple[str, int]:
        try:
            value, end = scanstring(self.text, pos + 1, True)
        except json.JSONDecodeError as exc:
            if exc.msg.startswith("Unterminated string"):
                raise _SyntaxProblem(
                    self.end, path,
                    "file ends in the middle of the JSON (truncated?): the string that "
                    f"starts at {self.where(pos)} is not closed",
                ) from None
            if exc.msg.startswith("Invalid control character"):
                char = self.text[exc.pos]
                raise _SyntaxProblem(
                    exc.pos, path,
                    f"invalid JSON: control character U+{ord(char):04X} inside a string "
                    "(is a closing '\"' missing? write a line break as \\n, a tab as \\t)",
                ) from None
            raise _SyntaxProblem(
                exc.pos, path,
                "invalid JSON: invalid escape in a string; after a backslash JSON expects "
                "one of \" \\ / b f n r t or uXXXX (write a backslash as \\\\)",
            ) from None
        if _SURROGATE.search(value):  # only a \uD800-\uDFFF escape can make one
            raise _SyntaxProblem(
                pos, path,
                "invalid text: a \\u escape in this string is half of a UTF-16 pair "
                "(\\uD800-\\uDFFF) without its other half, which is no character; write "
                "the character itself, or both halves of the pair",
            )
        return value, end

    def nested(self, pos: int, path: JsonPath, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _SyntaxProblem(
                pos, path, f"JSON nested more than {MAX_DEPTH} levels deep; tieline reads "
                f"at most {MAX_DEPTH}",
            )

    def object(self, start: int, path: JsonPath, depth: int) -> tuple[dict[str, Any], int]:
        self.nested(start, path, depth)
        text, end = self.text, self.end
        result: dict[str, Any] = {}
        pos = self.skip(start + 1)
        if pos < end and text[pos] == "}":
            return result, pos + 1
        comma = -1
        while True:
            if pos == end:
                raise self.truncated(path, start, "object")
            if text[pos] != '"':
                if text[pos] == "}" and comma >= 0:
                    raise _SyntaxProblem(
                        comma, path, "invalid JSON: a ',' before '}' (remove the last ',')"
                    )
                raise self.invalid(pos, path, "a key in double quotes")
            key_start = pos
            key, pos = self.string(pos, path)
            member = (*path, key)
            if key in result:
                raise _SyntaxProblem(
                    key_start, member,
                    f"duplicate key '{key}' (first at {self.where(self.keys[member])}); "
                    "an object may have each key once; keep only one",
                )
            self.keys[member] = key_start
            pos = self.skip(pos)
            if pos == end:
                raise self.truncated(path, start, "object")
            if text[pos] != ":":
                raise self.invalid(pos, path, f"':' after the key '{key}'")
            pos = self.skip(pos + 1)
            if pos == end:
                raise self.truncated(path, start, "object")
            result[key], pos = self.value(pos, member, depth)
            pos = self.skip(pos)
            if pos == end:
                raise self.truncated(path, start, "object")
            if text[pos] == "}":
                return result, pos + 1
            if text[pos] != ",":
                raise self.invalid(pos, path, "',' or '}' after an object member")
            comma = pos
            pos = self.skip(pos + 1)

    def array(self, start: int, path: JsonPath, depth: int) -> tuple[list[Any], int]:
        self.nested(start, path, depth)
        text, end = self.text, self.end
        result: list[Any] = []
        pos = self.skip(start + 1)
        if pos < end and text[pos] == "]":
            return result, pos + 1
        comma = -1
        while True:
            if pos == end:
                raise self.truncated(path, start, "array")
            if text[pos] == "]" and comma >= 0:
                raise _SyntaxProblem(
                    comma, path, "invalid JSON: a ',' before ']' (remove the last ',')"
                )
            item, pos = self.value(pos, (*path, len(result)), depth)
            result.append(item)
            pos = self.skip(pos)
            if pos == end:
                raise self.truncated(path, start, "array")
            if text[pos] == "]":
                return result, pos + 1
            if text[pos] != ",":
                raise self.invalid(pos, path, "',' or ']' after an array item")
            comma = pos
            pos = self.skip(pos + 1)


# -------------------------------------------------------------------------------------------
# Writing
# -------------------------------------------------------------------------------------------


def write_json_atomic(
    path: Path,
    data: object,
    *,
    validate: Callable[[object], None] | None = None,
    keep_previous: bool = True,
    new_mode: int | None = None,
) -> None:
    """Replace the JSON file at ``path`` with ``data``, atomically and durably.

    At every instant, and after a crash at any instant, ``path`` holds either its complete
    old content or the complete new one (see the module docstring for why).

    :param path: the file to write; its directory must exist.
    :param data: the value to write, as ``json.dumps(data, indent=2, ensure_ascii=False)``
        plus a final newline, in UTF-8. NaN and infinite floats are refused
        (:class:`ValueError`): :func:`load_json` would not read them back.
    :param validate: called with ``data`` before anything else; it raises to refuse, and then
        nothing on disk changes.
    :param keep_previous: keep the file being replaced as ``<name>.prev``.
    :param new_mode: permission bits for a file that does not exist yet (e.g. ``0o600`` for
        a users file); an existing file keeps its mode.
    :raises: whatever ``validate`` raises; :class:`TypeError` or :class:`ValueError` if
        ``data`` cannot be serialised; :class:`OSError` if the file cannot be written. In
        every case the temporary file is removed and ``path`` is unchanged.
    """
    if validate is not None:
        validate(data)
    payload = (json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
               + "\n").encode("utf-8")
    write_bytes_atomic(path, payload, new_mode=new_mode, keep_previous=keep_previous)


def write_bytes_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int | None = None,
    new_mode: int | None = None,
    keep_previous: bool = False,
) -> None:
    """Replace the file at ``path`` with ``data``, atomically and durably.

    Steps 2 to 5 of the module docstring: the bytes go to a new temporary file next to
    ``path``, are ``fsync``\\ ed, the temporary file is renamed onto ``path`` and the folder
    is ``fsync``\\ ed. The settings and state files (through :func:`write_json_atomic`),
    the cluster key and the systemd unit are written this way.

    :param path: the file to write; its directory must exist.
    :param data: the file's new content.
    :param mode: the file's permission bits, exactly, whatever the umask and whatever the
        replaced file had (``0o600`` for a private key); set before any byte is written.
    :param new_mode: when ``mode`` is None: permission bits for a file that does not exist
        yet. An existing file keeps its mode; a new one without ``new_mode`` gets
        ``0o666`` minus the umask.
    :param keep_previous: keep the file being replaced, if there is one, as ``<name>.prev``.
    :raises OSError: the file cannot be written. The temporary file is removed and
        ``path`` is unchanged.
    """
    path = Path(path)
    folder = path.parent
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = new_mode  # a new file: new_mode, or the usual 0o666 minus the umask
    # a file with a mode of its own is created private and then given it: never, not even
    # empty, readable by more than the mode allows
    fd, tmp = _create_temp(folder, path.name, permissions=0o666 if mode is None else 0o600)
    renamed = False
    try:
        with open(fd, "wb") as out:
            if mode is not None:
                os.fchmod(out.fileno(), mode)  # before any byte is written: users.json is 0600
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if keep_previous:
            _keep_previous(path)
        os.replace(tmp, path)
        renamed = True
        _fsync_directory(folder)
    finally:
        if not renamed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _temp_path(folder: Path, name: str, suffix: str = ".tmp") -> Path:
    """A fresh hidden name next to ``name``: ``.<name>.<random><suffix>``."""
    return folder / f".{name}.{secrets.token_hex(6)}{suffix}"


def _create_temp(folder: Path, name: str, suffix: str = ".tmp", *,
                 permissions: int = 0o666) -> tuple[int, Path]:
    """Create a new, empty temporary file next to ``name``; its fd and path.

    ``permissions`` are given to ``open(2)``, so the umask applies.
    """
    while True:
        tmp = _temp_path(folder, name, suffix)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, permissions), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


def _keep_previous(path: Path) -> None:
    """Make ``<name>.prev`` the current content of ``path``, without touching ``path``."""
    tmp = _temp_path(path.parent, path.name, ".prev.tmp")
    try:
        try:
            os.link(path, tmp)
        except FileNotFoundError:
            return  # the target went away meanwhile: nothing to keep
        except OSError:
            # No hard links on this filesystem (FAT, some network filesystems): copy.
            tmp = _copy_to_temp(path, ".prev.tmp")
        os.replace(tmp, path.with_name(path.name + ".prev"))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _copy_to_temp(path: Path, suffix: str) -> Path:
    """A durable copy of ``path`` (same mode) under a new temporary name next to it."""
    fd, tmp = _create_temp(path.parent, path.name, suffix)
    try:
        with open(fd, "wb") as out, open(path, "rb") as old:
            os.fchmod(out.fileno(), stat.S_IMODE(os.fstat(old.fileno()).st_mode))
            shutil.copyfileobj(old, out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_directory(folder: Path) -> None:
    """Make the renames in ``folder`` durable (POSIX; Windows cannot open directories)."""
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
