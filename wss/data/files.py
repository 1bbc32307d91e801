"""The one way in for a dataset's annotation files: text, JSON, YAML and XML, read with bounds.

Every reader opens the user's annotation files through here, so that whatever a file holds ends
as its content or as one :class:`~wss.errors.DataError` that names the file and says what is
wrong, never as a parser's own exception, a hang or an exhausted memory:

* text is UTF-8, with or without a byte-order mark, or UTF-16 with one; a NUL or another control
  character (but tab, line feed and carriage return) makes it binary, not text;
* a file is at most :data:`MAX_BYTES`;
* JSON and YAML nest at most :data:`MAX_DEPTH` levels; a JSON integer longer than
  :data:`MAX_DIGITS` digits reads as an infinite float, which every check of a number refuses
  (so one absurd number rejects its annotation, not the file);
* YAML aliases are refused: a few hundred bytes of nested aliases expand to gigabytes
  ("billion laughs"), and no dataset yaml needs them;
* XML goes through expat, which refuses entity declarations (and so their expansion).
"""

from __future__ import annotations

import codecs
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from wss.errors import DataError

MAX_BYTES = 1 << 30  # 1 GiB: COCO's largest official instances file is under 0.5 GiB
MAX_DEPTH = 64  # COCO, YOLO and VOC files nest 5 levels at most
MAX_DIGITS = 19  # an int64 has at most 19 digits
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def read_text(path: Path) -> str:
    """The text of ``path`` (UTF-8 with or without BOM, or UTF-16 with a BOM)."""
    path = Path(path)
    data = _read_bytes(path)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 or UTF-16 text (byte {data[exc.start : exc.start + 1]!r} at offset {exc.start})"
        ) from None
    bad = _CONTROL.search(text)
    if bad:
        raise DataError(f"{path}: not text (control character {bad.group()!r} at offset {bad.start()})")
    return text


def read_json(path: Path) -> Any:
    """The JSON value of ``path``, read by :func:`read_text` and bounded in depth and digits."""
    text = read_text(path)
    try:
        value = json.loads(text, parse_int=_integer, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not readable JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deep to read") from None
    _check_depth(value, path, "JSON")
    return value


def read_yaml(path: Path) -> Any:
    """The YAML value of ``path``, read by :func:`read_text`, with no aliases and bounded in depth."""
    text = read_text(path)
    try:
        value = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader without aliases
    except yaml.YAMLError as exc:
        why = " ".join(str(exc).split())  # YAML's messages span lines, with a caret
        raise DataError(f"{path}: not a readable yaml file ({type(exc).__name__}: {why[:300]})") from None
    except RecursionError:
        raise DataError(f"{path}: yaml nested too deep to read") from None
    _check_depth(value, path, "yaml")
    return value


def read_xml(path: Path) -> ET.Element:
    """The root element of the XML file ``path`` (expat, which reads the declared encoding and
    refuses entity declarations)."""
    data = _read_bytes(Path(path))
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise DataError(f"{path}: not readable XML ({exc})") from None
    except RecursionError:
        raise DataError(f"{path}: XML nested too deep to read") from None


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise DataError(f"{path}: {size} bytes, more than an annotation file may hold ({MAX_BYTES})")
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({type(exc).__name__}: {exc.strerror or exc})") from exc


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, with every symbolic link and ``..`` resolved, lies under ``root``: a dataset
    reads nothing outside itself."""
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError, ValueError):  # a link loop, or a path with a NUL
        return False


def reason(exc: DataError, path: Path) -> str:
    """The message of an error this module raised for ``path``, without the path: a reject row
    names the file in its own column."""
    return str(exc).removeprefix(f"{path}: ")


def excerpt(text: str, limit: int = 60) -> str:
    """A short, printable quote of ``text`` for a message: at most ``limit`` characters, control
    characters escaped."""
    short = text[:limit] + ("..." if len(text) > limit else "")
    return repr(short)


def _integer(literal: str) -> int | float:
    digits = literal.lstrip("-")
    if len(digits) > MAX_DIGITS:
        return float("-inf") if literal.startswith("-") else float("inf")
    return int(literal)


def _constant(name: str) -> float:
    """``NaN``, ``Infinity`` and ``-Infinity`` (not JSON, but Python writes them): their floats,
    which every check of a number refuses."""
    return float(name.replace("Infinity", "inf"))


def _check_depth(value: Any, path: Path, kind: str) -> None:
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise DataError(f"{path}: {kind} nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases, and with a bounded depth while composing."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"an alias (*{event.anchor}): aliases are not allowed in a dataset yaml", event.start_mark
            )
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
