"""Readers for the scoring pipeline's input formats: each record a document
or an error.

Inputs (``--input_format``, or by extension, `pipeline.io.formats`): JSONL
(``.jsonl``, ``.json``, ``.ndjson``), plain text (``.txt``: one document a
line, id ``FILE:LINE``), CSV (``.csv``, ``.tsv``) and Parquet
(``.parquet``), each optionally compressed with any codec Beam's filesystems
recognise by extension (`pipeline.io.compression`).

`ReadCorpus` matches the files, cuts them into ranges (`pipeline.io.ranges`)
and spreads the ranges over the workers with a ``Reshuffle``; `ReadRanges`
reads them fused with the scoring steps, so no corpus-sized buffer ever sits
between reading and scoring. Ranges have similar sizes, which balances the
work on runners that hand out work statically (the DirectRunner deals
elements round robin); ``rebalance=True`` adds a ``Reshuffle`` of the
documents themselves for runners with an external shuffle (Dataflow, Flink,
Spark).

Every input record ends as an ``(id, text)`` pair or as an error record
``{"id", "source", "stage": "read", "reason"}`` (`pipeline.io.record_rules`
holds the policy); one bad record never fails the job. When fields are kept
(``keep_fields``/``keep_all_fields``), a good record is instead a dict
``{id_field: id, text_field: text, **kept}`` holding the kept fields the
record has, with their values as the format gives them (JSON types, CSV
strings, Python values of Parquet columns); text files have only the two
fields. UTF-8 BOMs, CRLF line endings and a missing final newline are
accepted everywhere; blank lines are skipped.
"""


import csv
import io
import json
import logging
import sys
from typing import Any, Iterator, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from pipeline import progress
from pipeline.io import compression, inputs
from pipeline.io.formats import UTF8_BOM, is_compressed, wide_encoding
from pipeline.io.ranges import (DEFAULT_SPLIT_BYTES, FileRange, PlanRanges,
                                count_newlines, number_ranges)
from pipeline.io.record_rules import ReadError, RecordRules, has_surrogate
from transforms.metrics import NAMESPACE

_LOGGER = logging.getLogger(__name__)

ERRORS_TAG = 'errors'


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
    if pos == 0 and line.startswith(UTF8_BOM):
      line = line[len(UTF8_BOM):]
      pos += len(UTF8_BOM)
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


def _not_json(constant: str):
  """``NaN``, ``Infinity`` and ``-Infinity``, which Python's JSON reader
  accepts and JSON does not: such a line is invalid JSON like any other."""
  raise ValueError(f'{constant} is not a JSON value')


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
      self._on_bytes(inputs.input_bytes(rng.path))

  def _read(self, rng: FileRange) -> Iterator[Union[tuple[Any, str],
                                                   ReadError]]:
    try:
      with compression.open_input(rng.path) as f:
        if rng.fmt == 'parquet':
          yield from self._parquet(f, rng)
        elif rng.fmt == 'csv':
          yield from self._csv(f, rng)
        else:
          yield from self._line_records(f, rng)
    except EOFError:
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
      encoding = wide_encoding(head)
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
      record = json.loads(line, parse_constant=_not_json)
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
      if first and raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM):]
      first = False
      yield raw.decode('utf-8', errors='surrogateescape')

  def csv_reader(self, f, rng: FileRange):
    """A ``csv.reader`` over a whole CSV or TSV file (any encoding)."""
    head = f.read(4)
    encoding = wide_encoding(head)
    if encoding:
      rng = rng._replace(encoding=encoding)
    lines = self._csv_lines(_Prefixed(head, f), rng)
    dialect = 'excel-tab' if '.tsv' in rng.path.lower() else 'excel'
    return csv.reader(lines, dialect=dialect)

  def _csv(self, f, rng: FileRange):
    reader = self.csv_reader(f, rng)
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
      bad = next((c for c in row if has_surrogate(c)), None)
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


def input_fields(path: str, fmt: str) -> Optional[list[str]]:
  """The fields every record of a file has: a CSV's header row or a Parquet
  file's columns; None for other formats, or a file that cannot be read
  (its records say why when the job reads it)."""
  try:
    if fmt == 'parquet':
      return list(parquet_schema(path).names)
    if fmt != 'csv':
      return None
    csv.field_size_limit(min(sys.maxsize, (1 << 31) - 1))
    with compression.open_input(path) as f:
      for row in _RangeReader(RecordRules()).csv_reader(
          f, FileRange(path, 'csv', 0, -1)):
        if row and any(cell.strip() for cell in row):
          return row
  except Exception:  # pylint: disable=broad-except
    return None
  return None


def parquet_schema(path: str):
  """The Arrow schema of a Parquet file (compressed or not)."""
  import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
  with compression.open_input(path) as f:
    if is_compressed(path):
      f = io.BytesIO(f.read())
    return pq.ParquetFile(f).schema_arrow


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
    outdir: the run's output folder: nothing under it is read. Names the
      pattern's wildcards match that start with ``_`` or ``.`` are never
      read either (`pipeline.io.inputs`).
  """
  def __init__(self, pattern: str, input_format: str = 'auto', *,
               id_field: str = 'id', text_field: str = 'text',
               split_bytes: int = DEFAULT_SPLIT_BYTES,
               rebalance: bool = False,
               keep_fields: Optional[Sequence[str]] = None,
               keep_all_fields: bool = False,
               outdir: Optional[str] = None):
    super().__init__()
    self._pattern = pattern
    self._outdir = outdir
    self._planner = PlanRanges(input_format, split_bytes=split_bytes)
    self._reader = ReadRanges(id_field=id_field, text_field=text_field,
                              keep_fields=keep_fields,
                              keep_all_fields=keep_all_fields)
    self._rebalance = rebalance

  def expand(self, pbegin):
    matched = (
        pbegin
        | 'MatchFiles' >> fileio.MatchFiles(self._pattern)
        | 'SkipOutputs' >> beam.Filter(
            lambda m, pattern, outdir: inputs.is_input(m.path, pattern, outdir),
            self._pattern, self._outdir))
    return read_matched(matched, self._planner, self._reader,
                        rebalance=self._rebalance)


def read_matched(matched: beam.PCollection, planner: PlanRanges,
                 reader: ReadRanges, *, rebalance: bool = False
                 ) -> tuple[beam.PCollection, beam.PCollection]:
  """The documents and read errors of matched files (``FileMetadata``):
  `ReadCorpus` after its match, and `ReadMatchedFiles`.

  The steps are added where ``matched`` is, so that a pipeline that reads
  its own matches (the watching command) reads them as `ReadCorpus` does.
  """
  planned = matched | 'PlanRanges' >> beam.ParDo(planner).with_outputs(
      PlanRanges.BLOCKS, main='ranges')
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
      | 'ReadRanges' >> beam.ParDo(reader).with_outputs(
          ERRORS_TAG, main='docs'))
  if rebalance:
    docs = docs | 'Rebalance' >> beam.Reshuffle()
  return docs, errors


class ReadMatchedFiles(beam.PTransform):
  """Reads files already matched (``FileMetadata``, as ``fileio.MatchFiles``
  or ``fileio.MatchContinuously`` give them) exactly as `ReadCorpus` reads
  its matches: the same ranges, records and read errors.

  Returns the documents and the read errors (``docs, errors = ...``).

  Args:
    input_format: a format of `INPUT_FORMATS`, or ``auto`` (by extension).
    id_field: the id field (JSONL, CSV, Parquet).
    text_field: the text field (JSONL, CSV, Parquet).
    split_bytes: the size of the ranges large files are cut into.
    keep_fields: fields to carry along with the id and the text.
    keep_all_fields: carry every field of each record.
  """
  def __init__(self, input_format: str = 'auto', *, id_field: str = 'id',
               text_field: str = 'text',
               split_bytes: int = DEFAULT_SPLIT_BYTES,
               keep_fields: Optional[Sequence[str]] = None,
               keep_all_fields: bool = False):
    super().__init__()
    self._planner = PlanRanges(input_format, split_bytes=split_bytes)
    self._reader = ReadRanges(id_field=id_field, text_field=text_field,
                              keep_fields=keep_fields,
                              keep_all_fields=keep_all_fields)

  def expand(self, matched):
    return read_matched(matched, self._planner, self._reader)
