"""Readers for the scoring pipeline's input formats, split so workers share files.

Inputs (``--input_format``, or by extension): JSONL (``.jsonl``, ``.json``,
``.ndjson``), plain text (``.txt``: one document a line, id ``FILE:LINE``),
CSV (``.csv``, ``.tsv``) and Parquet (``.parquet``), each optionally
compressed with any codec Beam's filesystems recognise by extension (``.gz``,
``.bz2``, ``.zst``/``.zstd``, ``.deflate``, ``.xz``/``.lzma``).

Why it is shaped this way: one large file must be scored by every worker, not
by the one that happens to open it. `ReadCorpus` therefore cuts files into
ranges before reading:

* JSONL and text files larger than ``split_bytes`` are cut into byte ranges.
  A range owns the lines that *start* inside it (the reader seeks to the byte
  before its start and skips the partial line), so every line is read exactly
  once whatever the cut points. To keep ``FILE:LINE`` ids and error sources,
  a cheap first pass counts the newlines of each range in parallel
  (``CountNewlines``), and ``NumberRanges`` gives each range the number of
  its first line.
* Parquet files are cut into groups of whole row groups.
* Compressed files cannot be split (a codec stream has no random access), and
  neither can files in UTF-16/UTF-32 (found by their BOM): they are read
  whole. CSV is read whole as well: a quoted field may hold newlines, so the
  record that a byte offset falls into cannot be told without reading the
  file from its start.

Ranges are spread over workers with a ``Reshuffle`` and read by ``ReadRanges``
fused with the scoring steps, so no corpus-sized buffer ever sits between
reading and scoring. Ranges have similar sizes, which balances the work on
runners that hand out work statically (the DirectRunner deals elements round
robin); ``rebalance=True`` adds a ``Reshuffle`` of the documents themselves
for runners with an external shuffle (Dataflow, Flink, Spark).

Every input record ends as an ``(id, text)`` pair or as an error record
``{"id", "source", "stage": "read", "reason"}``; one bad record never fails
the job. When fields are kept (``keep_fields``/``keep_all_fields``, see
`RecordRules`), a good record is instead a dict ``{id_field: id,
text_field: text, **kept}`` holding the kept fields the record has, with
their values as the format gives them (JSON types, CSV strings, Python values
of Parquet columns); text files have only the two fields.

The id policy, the same for every format: an id is a non-empty
string or an integer within the 64-bit range; anything else (missing, null,
empty, float, bool, object, list, a string that is not valid Unicode) is an
error that names the type. Text must be a string of valid Unicode. UTF-8 BOMs,
CRLF line endings and a missing final newline are accepted everywhere; blank
lines are skipped.
"""

import codecs
import csv
import io
import json
import logging
import math
import posixpath
import re
import sys
import typing
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline import progress
from transforms.metrics import NAMESPACE

_LOGGER = logging.getLogger(__name__)

INPUT_FORMATS = ('jsonl', 'text', 'csv', 'parquet')
ERRORS_TAG = 'errors'
DEFAULT_SPLIT_BYTES = 64 << 20
_EXTENSIONS = {
    '.jsonl': 'jsonl', '.json': 'jsonl', '.ndjson': 'jsonl', '.txt': 'text',
    '.text': 'text',
    '.csv': 'csv', '.tsv': 'csv', '.parquet': 'parquet'
}
_READ_CHUNK = 8 << 20
_INT64 = (-(1 << 63), (1 << 63) - 1)
_SURROGATE = re.compile('[\ud800-\udfff]')
_UTF8_BOM = codecs.BOM_UTF8
# Longest first: the UTF-32 LE BOM starts with the UTF-16 LE one.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, 'utf-32'), (codecs.BOM_UTF32_BE, 'utf-32'),
              (codecs.BOM_UTF16_LE, 'utf-16'), (codecs.BOM_UTF16_BE, 'utf-16'))


def is_compressed(path: str) -> bool:
  """Whether Beam reads ``path`` through a decompressor (by its suffix)."""
  return (CompressionTypes.detect_compression_type(path) !=
          CompressionTypes.UNCOMPRESSED)


def format_from_extension(path: str) -> Optional[str]:
  """The input format a file name says (compression suffix ignored), if any."""
  name = path.lower()
  if is_compressed(name):
    name = posixpath.splitext(name)[0]
  for ext, fmt in _EXTENSIONS.items():
    if name.endswith(ext):
      return fmt
  return None


def input_format_of(path: str) -> str:
  """Guesses an input format from a file name; unknown names are text."""
  return format_from_extension(path) or 'text'


class FileRange(typing.NamedTuple):
  """A part of one input file that one worker reads.

  Attributes:
    path: the file.
    fmt: its input format.
    start: first byte (line formats) or first row group (Parquet).
    stop: end byte or row group, exclusive; -1 for the end of the file.
    first_line: number of the first line (or row) the range owns, from 1.
    encoding: ``utf-8``, or ``utf-16``/``utf-32`` for files read whole.
  """
  path: str
  fmt: str
  start: int
  stop: int
  first_line: int = 1
  encoding: str = 'utf-8'

  @property
  def whole(self) -> bool:
    return self.start == 0 and self.stop < 0


class ReadError(typing.NamedTuple):
  """A record that could not be read: where, and why."""
  source: str
  reason: str
  doc_id: Any = None

  def as_record(self) -> dict[str, Any]:
    return {'id': self.doc_id if self.doc_id is not None else self.source,
            'source': self.source, 'stage': 'read', 'reason': self.reason}


def _describe(value: Any) -> str:
  """A short, always-encodable rendering of a bad value for an error."""
  text = ascii(value)
  return text if len(text) <= 60 else text[:57] + '...'


def _unicode_problem(text: str) -> Optional[str]:
  match = _SURROGATE.search(text)
  if match is None:
    return None
  return (f'an unpaired surrogate {ascii(match.group())[1:-1]} at character '
          f'{match.start()}, which is not valid Unicode')


RESERVED_FIELDS = ('scores', 'n_tokens', 'truncated')
"""Fields the scores go to: no input field can be kept under these names."""


MAX_KEPT_DEPTH = 64
"""How deeply a kept value may nest lists and objects."""


def _kept_value_problem(value: Any) -> Optional[str]:
  """Why a kept value (a JSON value) cannot be carried, or None.

  A string with an unpaired surrogate cannot be encoded as UTF-8, so Beam's
  coders and every writer would fail on it; lists and objects nested deeper
  than `MAX_KEPT_DEPTH` would overflow the writers' recursion. Walks with a
  stack, as JSON may nest deeper than Python recurses.
  """
  stack = [(value, 0)]
  while stack:
    item, depth = stack.pop()
    if isinstance(item, str):
      problem = _unicode_problem(item)
      if problem:
        return problem
    elif isinstance(item, (dict, list)):
      if depth >= MAX_KEPT_DEPTH:
        return (f'lists or objects nested more than {MAX_KEPT_DEPTH} '
                f'levels deep')
      if isinstance(item, dict):
        stack.extend((key, depth + 1) for key in item)
        item = item.values()
      stack.extend((child, depth + 1) for child in item)
  return None


class RecordRules:
  """The id and text policy, applied to records of every format.

  Args:
    id_field: the field holding the id.
    text_field: the field holding the text.
    keep_fields: fields to carry along with the id and the text; a record
      without one of them simply lacks it (the writers write null or empty).
    keep_all_fields: carry every field of the record.

  With neither, good records are ``(id, text)`` pairs (the fast path); with
  either, they are dicts ``{id_field: id, text_field: text, **kept}``. A kept
  value holding an unpaired surrogate (JSON can spell one, ``"\\ud800"``)
  makes the record an error naming the field, as it does for the id and the
  text: no encoder or writer could write it. So does one nesting lists or
  objects deeper than `MAX_KEPT_DEPTH`. With ``keep_all_fields`` a
  record with a field named as one of `RESERVED_FIELDS` (or named ``id``
  while the id is another field) is an error too, since the output would
  overwrite it.
  """
  def __init__(self, id_field: str = 'id', text_field: str = 'text', *,
               keep_fields: Optional[Sequence[str]] = None,
               keep_all_fields: bool = False):
    self.id_field = id_field
    self.text_field = text_field
    self.keep_fields = tuple(keep_fields or ())
    self.keep_all_fields = bool(keep_all_fields)
    self._taken = RESERVED_FIELDS + (('id',) if id_field != 'id' else ())

  @property
  def keeps(self) -> bool:
    """Whether good records are dicts (some field is kept) or pairs."""
    return self.keep_all_fields or bool(self.keep_fields)

  def columns(self, names: Sequence[str]) -> Optional[list[str]]:
    """The columns to read of a file with the fields ``names``."""
    if self.keep_all_fields:
      return list(names)
    wanted = (self.id_field, self.text_field) + self.keep_fields
    return [c for c in dict.fromkeys(wanted) if c in names]

  def text_record(self, source: str, text: str) -> Union[tuple[str, str],
                                                          dict[str, str]]:
    """A line of a text file: ``(FILE:LINE, text)``, or the dict form."""
    if not self.keeps:
      return source, text
    return {self.id_field: source, self.text_field: text}

  def _kept(self, record: dict, doc_id: Any, text: str, source: str
            ) -> Union[dict[str, Any], ReadError]:
    if self.keep_all_fields:
      taken = [k for k in record if k in self._taken]
      if taken:
        return ReadError(
            source, f'the record has the field {taken[0]!r}, which the '
            f'output uses for the scores or the id; with --keep_all_fields '
            f'it would be overwritten. Rename it, or name the fields to keep '
            f'with --keep_fields.', doc_id)
      kept = dict(record)
    else:
      kept = {k: record[k] for k in self.keep_fields if k in record}
    for name, value in kept.items():
      problem = _unicode_problem(name)
      if problem:
        return ReadError(source, f'the name of the field {_describe(name)} '
                         f'holds {problem}; no output format can write it.',
                         doc_id)
      problem = (None if name in (self.id_field, self.text_field)
                 else _kept_value_problem(value))
      if problem:
        return ReadError(source, f'the kept field {_describe(name)} holds '
                         f'{problem}; no output format can write it.', doc_id)
    if self.keep_all_fields:
      return kept  # The record as it is, in its order.
    return {self.id_field: doc_id, self.text_field: text, **kept}

  def check_id(self, doc_id: Any) -> Optional[str]:
    """Why ``doc_id`` is not an acceptable id, or None if it is."""
    name = f'the id field {self.id_field!r}'
    if doc_id is None:
      return f'{name} is missing or null'
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
      return (f'{name} must be a string or an integer; received '
              f'{type(doc_id).__name__} {_describe(doc_id)}')
    if isinstance(doc_id, int) and not _INT64[0] <= doc_id <= _INT64[1]:
      return (f'{name} must be an integer within 64 bits; received '
              f'{_describe(doc_id)}')
    if isinstance(doc_id, str):
      if not doc_id:
        return f'{name} is empty'
      problem = _unicode_problem(doc_id)
      if problem:
        return f'{name} holds {problem}'
    return None

  def apply(self, record: Any, source: str,
            fields: Optional[list[str]] = None
            ) -> Union[tuple[Any, str], dict[str, Any], ReadError]:
    """``(id, text)`` for a good record, else the `ReadError` saying why.

    When fields are kept, a good record is the dict described in the class
    docstring instead of the pair.

    Args:
      record: the record, a dict.
      source: where it was read (``FILE:LINE``).
      fields: the fields its file has, for messages (default: its keys).
    """
    if not isinstance(record, dict):
      return ReadError(source, f'expected a JSON object; received '
                       f'{type(record).__name__}.')
    fields = ', '.join(repr(k) for k in (fields or list(record))[:20])
    doc_id = record.get(self.id_field)
    problem = self.check_id(doc_id)
    if problem:
      if doc_id is None:
        problem += f' (the record has the fields {fields or "none"}; choose ' \
                   f'the id field with --id_field)'
      return ReadError(source, problem + '.')
    if self.text_field not in record:
      return ReadError(
          source, f'the text field {self.text_field!r} is missing (the '
          f'record has the fields {fields}; choose the text field with '
          f'--text_field).', doc_id)
    text = record[self.text_field]
    if not isinstance(text, str):
      return ReadError(source, f'the text field {self.text_field!r} must be '
                       f'a string; received {type(text).__name__}.', doc_id)
    problem = _unicode_problem(text)
    if problem:
      return ReadError(source, f'the text field {self.text_field!r} holds '
                       f'{problem}.', doc_id)
    if self.keeps:
      return self._kept(record, doc_id, text, source)
    return doc_id, text


# --- planning ---------------------------------------------------------------

def _wide_encoding(head: bytes) -> Optional[str]:
  for bom, encoding in _WIDE_BOMS:
    if head.startswith(bom):
      return encoding
  return None


def _parquet_ranges(path: str, split_bytes: int) -> list[FileRange]:
  import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED
                        ) as f:
    meta = pq.ParquetFile(f).metadata
  ranges, first, row, size, first_row = [], 0, 0, 0, 1
  for i in range(meta.num_row_groups):
    group = meta.row_group(i)
    size += group.total_byte_size
    row += group.num_rows
    if size >= split_bytes or i == meta.num_row_groups - 1:
      ranges.append(FileRange(path, 'parquet', first, i + 1, first_row))
      first, size, first_row = i + 1, 0, row + 1
  return ranges or [FileRange(path, 'parquet', 0, -1)]


class PlanRanges(beam.DoFn):
  """Cuts each matched file into ranges (see the module docstring).

  Main output: `FileRange` s ready to read. Output ``blocks``: byte ranges of
  large line files whose first line numbers `CountNewlines` and
  `number_ranges` still have to work out.

  Args:
    input_format: a format of `INPUT_FORMATS`, or ``auto`` (by extension).
    split_bytes: the size of one range.
  """
  BLOCKS = 'blocks'

  def __init__(self, input_format: str = 'auto', *,
               split_bytes: int = DEFAULT_SPLIT_BYTES):
    if input_format not in INPUT_FORMATS + ('auto',):
      raise ValueError(f'input format must be one of {INPUT_FORMATS} or '
                       f'"auto"; received {input_format!r}.')
    if split_bytes < 1:
      raise ValueError(f'split_bytes must be positive; received {split_bytes}.')
    self._format = input_format
    self._split_bytes = split_bytes
    self._files = Metrics.counter(NAMESPACE, 'input_files')
    self._ranges = Metrics.counter(NAMESPACE, 'input_ranges')

  def process(self, metadata) -> Iterator[Any]:
    path, size = metadata.path, metadata.size_in_bytes
    fmt = input_format_of(path) if self._format == 'auto' else self._format
    self._files.inc()
    compressed = is_compressed(path)
    whole = FileRange(path, fmt, 0, -1)
    if compressed or fmt == 'csv' or size <= self._split_bytes:
      self._ranges.inc()
      yield whole
      return
    if fmt == 'parquet':
      try:
        ranges = _parquet_ranges(path, self._split_bytes)
      except Exception:  # pylint: disable=broad-except
        ranges = [whole]  # ReadRanges reports what is wrong with the file.
      self._ranges.inc(len(ranges))
      yield from ranges
      return
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED
                          ) as f:
      encoding = _wide_encoding(f.read(4))
    if encoding:
      self._ranges.inc()
      yield whole._replace(encoding=encoding)
      return
    bounds = byte_ranges(size, self._split_bytes)
    self._ranges.inc(len(bounds))
    for start, stop in bounds:
      yield beam.pvalue.TaggedOutput(self.BLOCKS, FileRange(
          path, fmt, start, stop, 0))


def byte_ranges(size: int, split_bytes: int) -> list[tuple[int, int]]:
  """Cuts ``size`` bytes into ``(start, stop)`` ranges of about equal size.

  As few ranges as keep each within ``split_bytes``, all of one size but the
  last (shorter by less than the number of ranges): a remainder range would
  make ranges unequal, and runners that deal ranges by count (the
  DirectRunner) would give one worker more bytes than another.
  """
  n = math.ceil(size / split_bytes)
  step = math.ceil(size / n)
  return [(i * step, min(size, (i + 1) * step)) for i in range(n)]


def count_newlines(block: FileRange) -> tuple[str, tuple[int, int, bool]]:
  """``(path, (start, newlines in the block, whether it ends with one))``."""
  newlines, last = 0, b''
  with FileSystems.open(block.path,
                        compression_type=CompressionTypes.UNCOMPRESSED) as f:
    f.seek(block.start)
    left = block.stop - block.start
    while left > 0:
      chunk = f.read(min(_READ_CHUNK, left))
      if not chunk:
        break
      newlines += chunk.count(b'\n')
      left -= len(chunk)
      last = chunk[-1:]
  return block.path, (block.start, newlines, last == b'\n')


def number_ranges(blocks: tuple[str, Iterable[tuple[int, int, bool]]],
                  fmt: str) -> Iterator[FileRange]:
  """Turns one file's counted blocks into ranges that know their first line.

  A range that starts right after a newline owns the line starting at its
  first byte; any other range's first line starts after its first newline.
  """
  path, counted = blocks
  counted = sorted(counted)
  seen, after_newline = 0, True
  for i, (start, newlines, ends_with_newline) in enumerate(counted):
    stop = counted[i + 1][0] if i + 1 < len(counted) else -1
    first = seen + 1 if after_newline else seen + 2
    yield FileRange(path, fmt, start, stop, first)
    seen += newlines
    after_newline = ends_with_newline


# --- reading ----------------------------------------------------------------

def _strip_newline(line: bytes) -> bytes:
  if line.endswith(b'\r\n'):
    return line[:-2]
  if line.endswith(b'\n') or line.endswith(b'\r'):
    return line[:-1]
  return line


def _decode(raw: bytes, source: str) -> Union[str, ReadError]:
  try:
    return raw.decode('utf-8')
  except UnicodeDecodeError as e:
    return ReadError(
        source, f'invalid UTF-8 at byte {e.start} of the line ({e.reason}); '
        f'fix the encoding of this line.')


def _open(path: str):
  return FileSystems.open(path, compression_type=CompressionTypes.AUTO)


def _lines(f, rng: FileRange) -> Iterator[tuple[int, bytes]]:
  """``(line number, raw line)`` for the lines that start inside ``rng``."""
  pos, number = rng.start, rng.first_line
  if rng.start > 0:
    f.seek(rng.start - 1)
    pos = rng.start - 1 + len(f.readline())
  while rng.stop < 0 or pos < rng.stop:
    line = f.readline()
    if not line:
      return
    if pos == 0 and line.startswith(_UTF8_BOM):
      line = line[len(_UTF8_BOM):]
      pos += len(_UTF8_BOM)
    yield number, line
    pos += len(line)
    number += 1


def _wide_lines(f, rng: FileRange) -> Iterator[tuple[int, Union[str, ReadError]]]:
  """Decoded lines of a whole UTF-16/UTF-32 file."""
  raw = f.read()
  try:
    text = raw.decode(rng.encoding)
  except UnicodeDecodeError as e:
    yield 1, ReadError(rng.path, f'invalid {rng.encoding.upper()} at byte '
                       f'{e.start} ({e.reason}); the file could not be read.')
    return
  for number, line in enumerate(text.split('\n'), 1):
    yield number, line[:-1] if line.endswith('\r') else line


def _stream_complete(f) -> bool:
  """False when a compressed file stopped before its codec's end marker.

  Beam's ``CompressedFile`` treats a truncated stream as a normal end of
  file; its decompressor (zlib, bz2, lzma, zstandard) still knows whether it
  saw the end-of-stream marker. Where there is none to ask, assume complete.
  """
  decompressor = getattr(f, '_decompressor', None)
  return decompressor is None or getattr(decompressor, 'eof', True)


class _RangeReader:
  """Reads one `FileRange` into ``(id, text)`` pairs and `ReadError` s."""
  def __init__(self, rules: RecordRules, on_bytes=None, on_blank=None):
    self._rules = rules
    self._on_bytes = on_bytes or (lambda n: None)
    self._on_blank = on_blank or (lambda: None)

  def read(self, rng: FileRange) -> Iterator[Union[tuple[Any, str],
                                                   ReadError]]:
    counted = [0]
    on_bytes = self._on_bytes

    def count(n: int) -> None:
      counted[0] += n
      on_bytes(n)

    self._on_bytes = count
    try:
      yield from self._read(rng)
    finally:
      self._on_bytes = on_bytes
    if not counted[0] and rng.whole:
      # Codecs, UTF-16/32 and Parquet: the file's own size once it is read,
      # so that progress compares like with like (the matched file sizes).
      try:
        self._on_bytes(FileSystems.match([rng.path])[0].metadata_list[0]
                       .size_in_bytes)
      except Exception:  # pylint: disable=broad-except
        pass

  def _read(self, rng: FileRange) -> Iterator[Union[tuple[Any, str],
                                                   ReadError]]:
    try:
      with _open(rng.path) as f:
        if rng.fmt == 'parquet':
          yield from self._parquet(f, rng)
        elif rng.fmt == 'csv':
          yield from self._csv(f, rng)
        else:
          yield from self._line_records(f, rng)
        if not _stream_complete(f):
          yield ReadError(rng.path, 'the compressed file ends before its '
                          'end-of-stream marker: it is truncated, and what '
                          'followed the last record read is missing.')
    except Exception as e:  # pylint: disable=broad-except
      # A file that breaks off (truncated archive, I/O error) costs the rest
      # of the range, never the job: say so, with the file.
      yield ReadError(rng.path, f'cannot read the rest of the file from '
                      f'{"row group" if rng.fmt == "parquet" else "byte"} '
                      f'{rng.start} ({type(e).__name__}: {e}).')

  def _line_texts(self, f, rng: FileRange
                  ) -> Iterator[tuple[str, Union[str, ReadError]]]:
    if rng.whole and rng.encoding == 'utf-8':
      head = f.read(4)
      encoding = _wide_encoding(head)
      if encoding:  # A compressed UTF-16/32 file: found only once opened.
        rng = rng._replace(encoding=encoding)
      f = _Prefixed(head, f)
    if rng.encoding != 'utf-8':
      for number, text in _wide_lines(f, rng):
        yield (text.source if isinstance(text, ReadError) else
               f'{rng.path}:{number}'), text
      return
    compressed = is_compressed(rng.path)
    for number, raw in _lines(f, rng):
      if not compressed:
        self._on_bytes(len(raw))
      source = f'{rng.path}:{number}'
      yield source, _decode(_strip_newline(raw), source)

  def _line_records(self, f, rng: FileRange):
    for source, text in self._line_texts(f, rng):
      if isinstance(text, ReadError):
        yield text
      elif not text.strip():
        self._on_blank()
      elif rng.fmt == 'text':
        yield self._rules.text_record(source, text)
      else:
        yield self._json(text, source)

  def _json(self, line: str, source: str):
    try:
      record = json.loads(line)
    except ValueError as e:
      return ReadError(source, f'invalid JSON ({e}).')
    except RecursionError:
      return ReadError(source, 'invalid JSON (nested too deeply to read).')
    return self._rules.apply(record, source)

  def _csv_lines(self, f, rng: FileRange) -> Iterator[str]:
    if rng.encoding != 'utf-8':
      yield from io.StringIO(f.read().decode(rng.encoding), newline='')
      return
    first = True
    compressed = is_compressed(rng.path)
    for raw in iter(f.readline, b''):
      if not compressed:
        self._on_bytes(len(raw))
      if first and raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]
      first = False
      yield raw.decode('utf-8', errors='surrogateescape')

  def _csv(self, f, rng: FileRange):
    head = f.read(4)
    encoding = _wide_encoding(head)
    if encoding:
      rng = rng._replace(encoding=encoding)
    lines = self._csv_lines(_Prefixed(head, f), rng)
    dialect = 'excel-tab' if '.tsv' in rng.path.lower() else 'excel'
    reader = csv.reader(lines, dialect=dialect)
    header, line = None, 0
    while True:
      start = reader.line_num + 1
      try:
        row = next(reader)
      except StopIteration:
        return
      except csv.Error as e:
        if reader.line_num < start:  # Nothing consumed: cannot go on.
          yield ReadError(f'{rng.path}:{start}', f'invalid CSV ({e}); the '
                          f'rest of the file could not be read.')
          return
        yield ReadError(f'{rng.path}:{start}', f'invalid CSV ({e}).')
        continue
      source = f'{rng.path}:{start}'
      if not row or all(not cell.strip() for cell in row):
        if row:
          self._on_blank()
        continue
      bad = next((c for c in row if _SURROGATE.search(c)), None)
      if bad is not None:
        yield ReadError(source, 'invalid UTF-8 in this row; fix the encoding '
                        'of this line.' if header is not None else
                        'invalid UTF-8 in the header row.')
        if header is None:
          return
        continue
      if header is None:
        header = row
        line = start
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
          yield ReadError(source, f'the header row names {duplicates} more '
                          f'than once; the file could not be read.')
          return
        continue
      if len(row) != len(header):
        yield ReadError(source, f'the row has {len(row)} fields but the '
                        f'header (line {line}) has {len(header)}.')
        continue
      yield self._rules.apply(dict(zip(header, row)), source)

  def _parquet(self, f, rng: FileRange):
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
    if is_compressed(rng.path):
      f = io.BytesIO(f.read())  # Parquet needs random access.
    try:
      table = pq.ParquetFile(f)
      columns = self._rules.columns(table.schema_arrow.names)
      groups = (range(rng.start, rng.stop) if rng.stop >= 0 else
                range(table.metadata.num_row_groups))
      batches = table.iter_batches(row_groups=list(groups), columns=columns)
    except Exception as e:  # pyarrow raises several types for bad files.
      yield ReadError(rng.path, f'cannot read Parquet ({e}).')
      return
    row = rng.first_line - 1
    fields = table.schema_arrow.names
    for batch in batches:
      for record in batch.to_pylist():
        row += 1
        yield self._rules.apply(record, f'{rng.path}:row {row}', fields)


class _Prefixed:
  """A read-only file that first returns ``head``, then the rest of ``f``."""
  def __init__(self, head: bytes, f):
    self._head = head
    self._f = f

  def read(self, n: int = -1) -> bytes:
    head, self._head = self._head, b''
    if n is None or n < 0:
      return head + self._f.read()
    if len(head) >= n:
      self._head = head[n:]
      return head[:n]
    return head + self._f.read(n - len(head))

  def readline(self) -> bytes:
    if not self._head:
      return self._f.readline()
    head, self._head = self._head, b''
    if b'\n' in head:
      i = head.index(b'\n') + 1
      self._head = head[i:]
      return head[:i]
    return head + self._f.readline()


def read_range(rng: FileRange, rules: Optional[RecordRules] = None
               ) -> Iterator[Union[tuple[Any, str], dict, ReadError]]:
  """Reads one range without Beam: ``(id, text)`` pairs (or the dicts of
  `RecordRules` that keep fields) and `ReadError` s."""
  return _RangeReader(rules or RecordRules()).read(rng)


class ReadRanges(beam.DoFn):
  """Reads `FileRange` s into ``(id, text)``; bad records go to ``errors``.

  Args:
    id_field: the id field (JSONL, CSV, Parquet).
    text_field: the text field (JSONL, CSV, Parquet).
    keep_fields: fields to carry along; records become dicts (`RecordRules`).
    keep_all_fields: carry every field; records become dicts.
  """
  def __init__(self, *, id_field: str = 'id', text_field: str = 'text',
               keep_fields: Optional[Sequence[str]] = None,
               keep_all_fields: bool = False):
    self._rules = RecordRules(id_field, text_field, keep_fields=keep_fields,
                              keep_all_fields=keep_all_fields)
    self._bytes = Metrics.counter(NAMESPACE, 'bytes_read')
    self._blank = Metrics.counter(NAMESPACE, 'blank_lines')
    self._records = Metrics.counter(NAMESPACE, 'records_read')
    self._reader = None

  def setup(self):
    csv.field_size_limit(min(sys.maxsize, (1 << 31) - 1))
    self._reader = _RangeReader(self._rules, on_bytes=self._count_bytes,
                                on_blank=self._blank.inc)

  def _count_bytes(self, n: int) -> None:
    self._bytes.inc(n)
    progress.tally(bytes_read=n)

  def finish_bundle(self):
    progress.flush()

  def process(self, rng: FileRange) -> Iterator[Any]:
    for item in self._reader.read(rng):
      self._records.inc()
      progress.tally(records_read=1)
      if isinstance(item, ReadError):
        yield beam.pvalue.TaggedOutput(ERRORS_TAG, item.as_record())
      else:
        yield item


class ReadCorpus(beam.PTransform):
  """Reads every file matching ``pattern`` as ``(id, text)`` pairs.

  With ``keep_fields`` or ``keep_all_fields`` the documents are dicts
  ``{id_field: id, text_field: text, **kept}`` instead (`RecordRules`).

  Returns the documents and the read errors (``docs, errors = ...``).

  Args:
    pattern: a file pattern on any Beam filesystem.
    input_format: a format of `INPUT_FORMATS`, or ``auto`` (by extension).
    id_field: the id field (JSONL, CSV, Parquet).
    text_field: the text field (JSONL, CSV, Parquet).
    split_bytes: the size of the ranges large files are cut into.
    rebalance: also redistribute the documents after reading (useful where
      the runner's shuffle is external; on the DirectRunner it would hold
      the corpus in the runner's memory).
    keep_fields: fields to carry along with the id and the text.
    keep_all_fields: carry every field of each record.
  """
  def __init__(self, pattern: str, input_format: str = 'auto', *,
               id_field: str = 'id', text_field: str = 'text',
               split_bytes: int = DEFAULT_SPLIT_BYTES,
               rebalance: bool = False,
               keep_fields: Optional[Sequence[str]] = None,
               keep_all_fields: bool = False):
    super().__init__()
    self._pattern = pattern
    self._planner = PlanRanges(input_format, split_bytes=split_bytes)
    self._reader = ReadRanges(id_field=id_field, text_field=text_field,
                              keep_fields=keep_fields,
                              keep_all_fields=keep_all_fields)
    self._rebalance = rebalance

  def expand(self, pbegin):
    planned = (
        pbegin
        | 'MatchFiles' >> fileio.MatchFiles(self._pattern)
        | 'PlanRanges' >> beam.ParDo(self._planner).with_outputs(
            PlanRanges.BLOCKS, main='ranges'))
    numbered = (
        planned[PlanRanges.BLOCKS]
        | 'SpreadBlocks' >> beam.Reshuffle()
        | 'KeyBlocksByFile' >> beam.Map(lambda b: ((b.path, b.fmt), b))
        | 'CountNewlines' >> beam.MapTuple(
            lambda key, block: (key, count_newlines(block)[1]))
        | 'GroupBlocksByFile' >> beam.GroupByKey()
        | 'NumberRanges' >> beam.FlatMapTuple(
            lambda key, counted: number_ranges((key[0], counted), key[1])))
    docs, errors = (
        (planned.ranges, numbered)
        | 'AllRanges' >> beam.Flatten()
        | 'SpreadRanges' >> beam.Reshuffle()
        | 'ReadRanges' >> beam.ParDo(self._reader).with_outputs(
            ERRORS_TAG, main='docs'))
    if self._rebalance:
      docs = docs | 'Rebalance' >> beam.Reshuffle()
    return docs, errors
