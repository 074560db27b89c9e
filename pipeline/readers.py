"""Readers for the scoring pipeline's input formats.

Inputs (``--input_format``, or by extension): JSONL (``.jsonl``, ``.json``),
plain text (``.txt``: one document a line, id ``FILE:LINE``), CSV (``.csv``)
and Parquet (``.parquet``). Files are matched and read with Beam's
``fileio`` so every record knows its file and line (or row); a record that
cannot be read becomes an error record ``{"id", "source", "stage": "read",
"reason"}`` instead of failing the job.
"""

import csv
import io
import json
import logging
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

_LOGGER = logging.getLogger(__name__)

INPUT_FORMATS = ('jsonl', 'text', 'csv', 'parquet')
ERRORS_TAG = 'errors'
_EXTENSIONS = {
    '.jsonl': 'jsonl', '.json': 'jsonl', '.ndjson': 'jsonl', '.txt': 'text',
    '.csv': 'csv', '.tsv': 'csv', '.parquet': 'parquet'
}
_COMPRESSED = ('.gz', '.bz2', '.deflate', '.zst', '.lzma', '.zz')


def input_format_of(path: str) -> str:
  """Guesses an input format from a file name (compression suffix ignored)."""
  name = path.lower()
  for suffix in _COMPRESSED:
    if name.endswith(suffix):
      name = name[:-len(suffix)]
  for ext, fmt in _EXTENSIONS.items():
    if name.endswith(ext):
      return fmt
  return 'text'


def _error(source: str, reason: str, doc_id: Any = None) -> beam.pvalue.TaggedOutput:
  return beam.pvalue.TaggedOutput(ERRORS_TAG, {
      'id': doc_id if doc_id is not None else source,
      'source': source,
      'stage': 'read',
      'reason': reason,
  })


def _decode(raw: bytes, source: str):
  try:
    return raw.decode('utf-8'), None
  except UnicodeDecodeError as e:
    return None, _error(
        source, f'invalid UTF-8 at byte {e.start} of the line ({e.reason}); '
        f'fix the encoding of this line.')


def _strip_newline(line: bytes) -> bytes:
  if line.endswith(b'\r\n'):
    return line[:-2]
  if line.endswith(b'\n'):
    return line[:-1]
  return line


class ReadDocuments(beam.DoFn):
  """Reads ``(id, text)`` pairs from a matched file, one record at a time.

  Records that cannot be read go to the ``errors`` output with their file
  and line (or row) and the reason.

  Args:
    input_format: ``jsonl``, ``text``, ``csv``, ``parquet`` or ``auto``.
    id_field: the id field (JSONL, CSV, Parquet).
    text_field: the text field (JSONL, CSV, Parquet).
  """
  def __init__(self, input_format: str = 'auto', *, id_field: str = 'id',
               text_field: str = 'text'):
    if input_format not in INPUT_FORMATS + ('auto',):
      raise ValueError(f'input format must be one of {INPUT_FORMATS} or '
                       f'"auto"; received {input_format!r}.')
    self._format = input_format
    self._id_field = id_field
    self._text_field = text_field

  def process(self, readable: fileio.ReadableFile) -> Iterator[Any]:
    path = readable.metadata.path
    fmt = (input_format_of(path) if self._format == 'auto' else self._format)
    with readable.open() as f:
      if fmt == 'parquet':
        yield from self._parquet(f, path)
      elif fmt == 'csv':
        yield from self._csv(f, path)
      else:
        for n, line in enumerate(f, 1):
          source = f'{path}:{n}'
          text, error = _decode(_strip_newline(line), source)
          if error is not None:
            yield error
          elif fmt == 'text':
            yield source, text
          elif text.strip():
            yield from self._json(text, source)

  def _record(self, record: Any, source: str) -> Iterator[Any]:
    if not isinstance(record, dict):
      yield _error(source, f'expected a JSON object; received '
                   f'{type(record).__name__}.')
      return
    doc_id = record.get(self._id_field)
    if doc_id is None:
      yield _error(source, f'the id field {self._id_field!r} is missing or '
                   f'null.')
    elif self._text_field not in record:
      yield _error(source, f'the text field {self._text_field!r} is '
                   f'missing.', doc_id)
    else:
      text = record[self._text_field]
      if not isinstance(text, str):
        yield _error(source, f'the text field {self._text_field!r} must be a '
                     f'string; received {type(text).__name__}.', doc_id)
      else:
        yield doc_id, text

  def _json(self, line: str, source: str) -> Iterator[Any]:
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      yield _error(source, f'invalid JSON ({e}).')
      return
    yield from self._record(record, source)

  def _csv(self, f, path: str) -> Iterator[Any]:
    text = io.TextIOWrapper(f, encoding='utf-8', errors='surrogateescape',
                            newline='')
    dialect = 'excel-tab' if path.lower().endswith('.tsv') else 'excel'
    reader = csv.DictReader(text, dialect=dialect)
    for n, row in enumerate(reader, 2):  # line 1 is the header
      source = f'{path}:{n}'
      try:
        for value in row.values():
          if isinstance(value, str):
            value.encode('utf-8')
      except UnicodeEncodeError as e:
        yield _error(source, f'invalid UTF-8 in this row ({e.reason}).')
        continue
      yield from self._record(row, source)

  def _parquet(self, f, path: str) -> Iterator[Any]:
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
    try:
      table = pq.ParquetFile(f)
      batches = table.iter_batches(columns=[self._id_field, self._text_field])
      row = 0
      for batch in batches:
        for record in batch.to_pylist():
          row += 1
          yield from self._record(record, f'{path}:row {row}')
    except Exception as e:  # pyarrow raises several types for bad files.
      yield _error(path, f'cannot read Parquet ({e}).')


class ReadCorpus(beam.PTransform):
  """Reads every file matching ``pattern`` as ``(id, text)`` pairs.

  Returns a tagged output: the main output and ``errors``.
  """
  def __init__(self, pattern: str, input_format: str = 'auto', *,
               id_field: str = 'id', text_field: str = 'text'):
    super().__init__()
    self._pattern = pattern
    self._reader = ReadDocuments(input_format, id_field=id_field,
                                 text_field=text_field)

  def expand(self, pbegin):
    # Files are spread over workers, then each is streamed record by record
    # into the scoring steps, fused with them: no corpus-sized buffer
    # between reading and scoring. Parallelism comes from having several
    # input files (shard large corpora).
    docs, errors = (
        pbegin
        | 'MatchFiles' >> fileio.MatchFiles(self._pattern)
        | 'SpreadFiles' >> beam.Reshuffle()
        | 'ReadMatches' >> fileio.ReadMatches()
        | 'ReadDocuments' >> beam.ParDo(self._reader).with_outputs(
            ERRORS_TAG, main='docs'))
    return docs, errors
