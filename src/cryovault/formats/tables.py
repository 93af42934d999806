"""Previews of tables (RELION STAR, CSV, TSV), text and JSON files for the viewer.

Each reader returns a frozen dataclass with at most `max_rows` rows per table (or `max_bytes` of
text) and says whether it cut anything. A file that cannot be parsed raises `UnreadableTable`
with a message naming the file and what is wrong; the functions keep no state and may run in
parallel threads.

STAR files are parsed by `starfile`, which loads the whole file (pandas): the web layer should
cap the size it hands to `read_table_preview` (`MAX_STAR_BYTES` by default here).
"""

from __future__ import annotations

import csv
import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

TableFormat = Literal["star", "csv", "tsv"]
BlockKind = Literal["loop", "simple"]

DEFAULT_MAX_ROWS = 200
DEFAULT_MAX_TEXT_BYTES = 1_000_000
DEFAULT_MAX_JSON_BYTES = 5_000_000
#: STAR files above this size are refused (starfile reads everything into memory).
MAX_STAR_BYTES = 512 * 2**20
_SNIFF_BYTES = 64 * 1024


class UnreadableTable(Exception):
    """The table, text or JSON file cannot be shown; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class TableBlock:
    """One table. STAR: a data block; `kind` "loop" (rows × columns) or "simple" (one row of
    name/value pairs: `columns` are the names, `rows` holds the single row of values).
    CSV/TSV: a single block named "" of kind "loop"."""

    name: str
    kind: BlockKind
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    total_rows: int

    @property
    def truncated(self) -> bool:
        return self.total_rows > len(self.rows)


@dataclass(frozen=True)
class TablePreview:
    format: TableFormat
    blocks: tuple[TableBlock, ...]

    @property
    def truncated(self) -> bool:
        return any(block.truncated for block in self.blocks)


@dataclass(frozen=True)
class TextPreview:
    """The first `max_bytes` of a text file, decoded (UTF-8, else Latin-1) with replacement."""

    text: str
    encoding: str
    size_bytes: int
    truncated: bool


@dataclass(frozen=True)
class JsonPreview:
    """A JSON document pretty-printed (`pretty` True) or, when it is larger than the limit, its
    first bytes as they are (`pretty` False, `truncated` True)."""

    text: str
    pretty: bool
    size_bytes: int
    truncated: bool


def _cannot(path: Path, what: str) -> UnreadableTable:
    return UnreadableTable(f"cannot read {path.name}: {what}")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise _cannot(path, f"the file could not be opened ({exc.strerror or exc})") from exc


def _cell(value: Any) -> str:
    """A cell as text; floats as Python prints them (shortest round-trip form)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if hasattr(value, "item"):  # numpy scalar
        return _cell(value.item())
    return str(value)


# --------------------------------------------------------------------------------------------
# STAR
# --------------------------------------------------------------------------------------------


@dataclass
class _ScannedBlock:
    name: str
    line: int
    kind: BlockKind | None = None
    columns: int = 0
    rows: int = 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _count_fields(path: Path, line: str, number: int) -> int:
    if '"' not in line and "'" not in line:
        return len(line.split())
    try:
        return len(shlex.split(line))
    except ValueError as exc:
        raise _cannot(path, f"line {number} has an unclosed quotation mark") from exc


def _scan_star(path: Path) -> list[_ScannedBlock]:
    """Check the structure starfile relies on, with line numbers for the messages: every loop
    row has as many values as the loop has columns, every simple item has one value."""
    blocks: list[_ScannedBlock] = []
    current: _ScannedBlock | None = None
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("data_"):
                current = _ScannedBlock(name=line[5:], line=number)
                blocks.append(current)
                continue
            if current is None:
                continue  # text before the first block is ignored, as starfile does
            if line.startswith("loop_"):
                current.kind = "loop"
                continue
            if line.startswith("_"):
                if current.kind == "loop":
                    if current.rows:
                        raise _cannot(path, f"line {number}: column {line.split()[0]} is "
                                            f"declared after the rows of block "
                                            f"'{current.name}'")
                    current.columns += 1
                else:
                    current.kind = "simple"
                    if _count_fields(path, line, number) != 2:
                        raise _cannot(path, f"line {number}: item {line.split()[0]} of block "
                                            f"'{current.name}' should have exactly one value")
                    current.columns += 1
                continue
            if current.kind != "loop":
                raise _cannot(path, f"line {number}: values outside a loop_ in block "
                                    f"'{current.name}'")
            fields = _count_fields(path, line, number)
            if fields != current.columns:
                raise _cannot(path, f"line {number}: a row of block '{current.name}' has "
                                    f"{_plural(fields, 'value')} but the block has "
                                    f"{_plural(current.columns, 'column')}; the file may be "
                                    "truncated or damaged")
            current.rows += 1
    return blocks


def _star_blocks(path: Path, max_rows: int) -> tuple[TableBlock, ...]:
    import pandas as pd
    import starfile

    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if b"\x00" in head:
        raise _cannot(path, "it is binary, not a STAR text file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            raise _cannot(path, "it is not UTF-8 text, so not a STAR file") from exc
    scanned = _scan_star(path)
    if not scanned:
        raise _cannot(path, "no data block (a line starting with data_) was found; it is not "
                            "a STAR file or it is empty")
    # starfile fails on blocks with no content at the end of a file: read the others.
    n_read = len(scanned)
    while n_read and scanned[n_read - 1].kind is None:
        n_read -= 1
    data: dict[str, Any] = {}
    if n_read:
        try:
            data = starfile.read(path, read_n_blocks=n_read, always_dict=True)
        except Exception as exc:  # noqa: BLE001 - starfile raises pandas, shlex and ValueErrors
            raise _cannot(path, f"it is not a valid STAR file ({_reason(exc)})") from exc
    blocks: list[TableBlock] = []
    for name, block in data.items():
        if isinstance(block, pd.DataFrame):
            columns = tuple(str(c) for c in block.columns)
            head_rows = block.head(max_rows)
            rows = tuple(tuple(_cell(v) for v in row)
                         for row in head_rows.itertuples(index=False, name=None))
            blocks.append(TableBlock(name=str(name), kind="loop", columns=columns, rows=rows,
                                     total_rows=int(len(block))))
        elif isinstance(block, dict):
            columns = tuple(str(k) for k in block)
            values = tuple(_cell(v) for v in block.values())
            blocks.append(TableBlock(name=str(name), kind="simple", columns=columns,
                                     rows=(values,) if columns else (),
                                     total_rows=1 if columns else 0))
    for empty in scanned[n_read:]:
        blocks.append(TableBlock(name=empty.name, kind="simple", columns=(), rows=(),
                                 total_rows=0))
    return tuple(blocks)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------------------------
# CSV / TSV
# --------------------------------------------------------------------------------------------


def _decode_head(path: Path, head: bytes) -> tuple[str, str]:
    if b"\x00" in head:
        raise _cannot(path, "it is binary, not a text table")
    try:
        return head.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:
            return head[: exc.start].decode("utf-8-sig"), "utf-8"
        return head.decode("latin-1"), "latin-1"


def _csv_block(path: Path, kind: TableFormat, max_rows: int) -> TableBlock:
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    sample, encoding = _decode_head(path, head)
    if not sample.strip():
        return TableBlock(name="", kind="loop", columns=(), rows=(), total_rows=0)
    delimiters = "\t" if kind == "tsv" else ",;\t|"
    sniff_text = sample if len(head) < _SNIFF_BYTES else sample[: sample.rfind("\n") + 1]
    try:
        dialect: Any = csv.Sniffer().sniff(sniff_text or sample, delimiters=delimiters)
    except csv.Error:
        dialect = csv.excel_tab if kind == "tsv" else csv.excel
    try:
        has_header = csv.Sniffer().has_header(sniff_text or sample)
    except csv.Error:
        has_header = True
    columns: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = []
    total = 0
    width = 0
    line = 0
    try:
        with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
            if encoding == "utf-8":
                # skip a byte-order mark
                first = fh.read(1)
                if first != "\ufeff":
                    fh.seek(0)
            reader = csv.reader(fh, dialect)
            for record in reader:
                line = reader.line_num
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                if has_header and not columns:
                    columns = tuple(record)
                    continue
                total += 1
                width = max(width, len(record))
                if len(rows) < max_rows:
                    rows.append(tuple(record))
    except csv.Error as exc:
        raise _cannot(path, f"the {kind.upper()} data are malformed after line {line} "
                            f"({exc})") from exc
    if not columns:
        columns = tuple(f"column {i + 1}" for i in range(width))
    elif width > len(columns):
        columns = columns + tuple(f"column {i + 1}" for i in range(len(columns), width))
    return TableBlock(name="", kind="loop", columns=columns, rows=tuple(rows), total_rows=total)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def read_table_preview(path: Path, kind: str | None = None,
                       max_rows: int = DEFAULT_MAX_ROWS) -> TablePreview:
    """The first `max_rows` rows of every table in a STAR, CSV or TSV file.

    `kind` is "star", "csv" or "tsv" (default: from the extension). STAR: one block per data
    block, loops and simple (name/value) blocks, with the total row count. CSV/TSV: the
    delimiter and header row are sniffed from the first 64 KB; the whole file is streamed to
    count rows. Raises UnreadableTable for a missing, binary or malformed file.
    """
    path = Path(path)
    if kind is None:
        kind = path.suffix.lower().lstrip(".")
    if kind not in ("star", "csv", "tsv"):
        raise ValueError(f"unknown table kind {kind!r}; expected star, csv or tsv")
    if max_rows < 0:
        raise ValueError("max_rows must be ≥ 0")
    size = _size(path)
    try:
        if kind == "star":
            if size == 0:
                raise _cannot(path, "the file is empty (0 bytes)")
            if size > MAX_STAR_BYTES:
                raise _cannot(path, f"the STAR file is too large to preview ({size:,} bytes; "
                                    f"the limit is {MAX_STAR_BYTES:,}); download it instead")
            return TablePreview(format="star", blocks=_star_blocks(path, max_rows))
        return TablePreview(format=kind, blocks=(_csv_block(path, kind, max_rows),))  # type: ignore[arg-type]
    except UnreadableTable:
        raise
    except OSError as exc:
        raise _cannot(path, f"the file could not be read ({exc.strerror or exc})") from exc
    except MemoryError as exc:
        raise _cannot(path, "the table is too large to preview in the memory available") \
            from exc


def _decode_text(data: bytes, truncated: bool) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(data) - 4 and exc.reason == "unexpected end of data":
            return data[: exc.start].decode("utf-8"), "utf-8"
        # Mostly UTF-8 with a few bad bytes stays UTF-8 (replacement characters); else Latin-1.
        text = data.decode("utf-8", errors="replace")
        if text.count("\ufffd") * 100 <= max(1, len(text)):
            return text, "utf-8"
        return data.decode("latin-1"), "latin-1"


def read_text_preview(path: Path, max_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> TextPreview:
    """The first `max_bytes` of a text file, decoded with replacement of undecodable bytes.

    Raises UnreadableTable when the file cannot be opened or holds NUL bytes (binary)."""
    path = Path(path)
    if max_bytes < 0:
        raise ValueError("max_bytes must be ≥ 0")
    size = _size(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes)
    except OSError as exc:
        raise _cannot(path, f"the file could not be read ({exc.strerror or exc})") from exc
    if b"\x00" in data:
        raise _cannot(path, "it is a binary file, not text; download it instead")
    truncated = size > len(data)
    text, encoding = _decode_text(data, truncated)
    return TextPreview(text=text, encoding=encoding, size_bytes=size, truncated=truncated)


def read_json_preview(path: Path, max_bytes: int = DEFAULT_MAX_JSON_BYTES,
                      indent: int = 2) -> JsonPreview:
    """A JSON file pretty-printed with `indent`, if it is at most `max_bytes` long; a larger
    file is not parsed: its first `max_bytes` are returned as text (`pretty` False).

    Raises UnreadableTable for a file that is not valid JSON (with line and column)."""
    path = Path(path)
    size = _size(path)
    if size > max_bytes:
        preview = read_text_preview(path, max_bytes)
        return JsonPreview(text=preview.text, pretty=False, size_bytes=size, truncated=True)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _cannot(path, f"the file could not be read ({exc.strerror or exc})") from exc
    try:
        document = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise _cannot(path, "it is not UTF-8 text, so not JSON") from exc
    except json.JSONDecodeError as exc:
        raise _cannot(path, f"it is not valid JSON: {exc.msg} at line {exc.lineno}, column "
                            f"{exc.colno}") from exc
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        raise _cannot(path, f"it is not valid JSON ({_reason(exc)})") from exc
    except RecursionError as exc:
        raise _cannot(path, "the JSON is nested too deeply to display") from exc
    text = json.dumps(document, indent=indent, ensure_ascii=False)
    return JsonPreview(text=text, pretty=True, size_bytes=size, truncated=False)

