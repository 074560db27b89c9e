"""Input fields carried through the scoring command (``--keep_fields``).

Why this module exists: ETL jobs want the scores next to the fields they
already hold (a title, a URL, a date) without joining by id afterwards. The
readers hand such records over as dicts (`pipeline.io.record_rules.RecordRules`),
``ScoreDocuments`` scores them whole, and this module decides what the
output record holds and how each output format writes a kept value:

* The output record is ``id`` (the value of ``--id_field``, whatever that
  field is called), ``scores``, ``n_tokens``, ``truncated``, then the kept
  fields (`output_record`). Today's fields come first, so readers of the
  earlier columns keep working.
* JSONL writes JSON types as they are; values JSON lacks become JSON text:
  dates and times as ISO 8601 strings, decimals as strings, bytes as base64,
  non-finite floats as null (`jsonable`).
* CSV writes text: strings as they are, null (or a missing field) as an
  empty cell, anything else as its JSON text (``true``, ``3``, ``[1, 2]``)
  (`text_value`).
* Parquet keeps column types: those of Parquet input; for other inputs a
  type found from the first `SAMPLE_RECORDS` good records (bool, int64,
  float64 or string), and a string column of `text_value` s where the sample
  finds nothing, mixed types, lists or objects (`infer_columns`). A value
  that does not fit its column (a float in an int64 column, say) sends its
  record to the errors at stage ``write`` (`FitColumns`); nothing is
  truncated.
* TFRecord: strings as ``bytes_list``, integers within 64 bits as
  ``int64_list``, booleans as ``int64_list`` 0/1 (like ``truncated``), floats
  as ``float_list`` (32-bit), bytes as they are, null as a missing feature,
  anything else as its JSON text in a ``bytes_list`` (`tf_features`).

CSV and Parquet have one set of columns for the whole output: with
``--keep_all_fields`` they are the fields of the input's schema (Parquet),
header (CSV) or sampled records (JSONL); a record with a field outside them
goes to the errors at stage ``write`` naming the field (name the fields with
``--keep_fields`` to write it). JSONL and TFRecord write each record's own
fields.
"""

import base64
import csv
import datetime
import decimal
import io
import json
import logging
import math
import typing
from typing import Any, Iterator, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.io import inputs
from pipeline.io.formats import INT64_RANGE, format_from_extension
from pipeline.io.ranges import FileRange
from pipeline.io.readers import parquet_schema, read_range
from pipeline.io.record_rules import ReadError, RecordRules
from runtime.tensorflow_import import import_tensorflow
from transforms.metrics import NAMESPACE
from transforms.records import SCORE_FIELDS

_LOGGER = logging.getLogger(__name__)

BASE_FIELDS = ('id',) + SCORE_FIELDS
"""The fields every output record has, in order, before the kept ones."""
SAMPLE_RECORDS = 1000
"""Good records read to find the columns of non-Parquet input."""
SAMPLE_FILES = 16
"""Files whose schema or first records are read to find the columns."""
_ERRORS = 'errors'


def parse_keep_fields(value: Optional[str]) -> list[str]:
  """The field names of ``--keep_fields a,b`` in order, without repeats.

  Raises:
    ValueError: a name is empty (``a,,b`` or a trailing comma).
  """
  if value is None:
    return []
  names = [name.strip() for name in value.split(',')]
  if not all(names):
    raise ValueError(f'--keep_fields holds an empty field name '
                     f'({value!r}); give names separated by commas.')
  return list(dict.fromkeys(names))


def check_keep_options(keep_fields: Sequence[str], keep_all_fields: bool,
                       id_field: str) -> None:
  """Refuses kept names the output could not hold, before anything runs.

  Raises:
    ValueError: one line naming the option and the field.
  """
  if keep_fields and keep_all_fields:
    raise ValueError('--keep_fields and --keep_all_fields exclude each other; '
                     'give one of them.')
  for name in keep_fields:
    if name in SCORE_FIELDS:
      raise ValueError(f'--keep_fields names {name!r}, which the output uses '
                       f'for the scores; rename the field before scoring.')
    if name == 'id' and id_field != 'id':
      raise ValueError(f"--keep_fields names 'id', which the output uses for "
                       f'the id field {id_field!r}; rename the field before '
                       f'scoring.')


def output_record(record: dict[str, Any], *, id_field: str,
                  keep_fields: Sequence[str], keep_all_fields: bool
                  ) -> dict[str, Any]:
  """The record the command writes for one scored dict record.

  Args:
    record: a record out of ``ScoreDocuments``: the read fields plus
      ``scores``, ``n_tokens`` and ``truncated``.
    id_field: the field holding the id; written as ``id``, and also under
      its own name when kept.
    keep_fields: the fields to write after the score fields; one the record
      lacks is written as None.
    keep_all_fields: write every field instead (the text too).
  """
  out = {'id': record[id_field]}
  for name in SCORE_FIELDS:
    out[name] = record[name]
  if keep_all_fields:
    for name, value in record.items():
      if name not in BASE_FIELDS:
        out[name] = value
  else:
    for name in keep_fields:
      if name != 'id':
        out[name] = record.get(name)
  return out


def strip_record(error: dict[str, Any]) -> dict[str, Any]:
  """An error record without the input record ``ScoreDocuments`` adds.

  The command's error records keep one shape, fields kept or not
  (``id``, ``stage``, ``reason``); the record is in the input.
  """
  if 'record' not in error:
    return error
  return {k: v for k, v in error.items() if k != 'record'}


# --- values -----------------------------------------------------------------

def jsonable(value: Any) -> Any:
  """``value`` as a JSON value (see the module docstring)."""
  if value is None or isinstance(value, (bool, int, str)):
    return value
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, (datetime.date, datetime.time)):
    return value.isoformat()  # datetime is a date.
  if isinstance(value, datetime.timedelta):
    return value.total_seconds()
  if isinstance(value, decimal.Decimal):
    return str(value)
  if isinstance(value, (bytes, bytearray)):
    return base64.b64encode(bytes(value)).decode('ascii')
  if hasattr(value, 'tolist'):  # numpy scalars and arrays.
    return jsonable(value.tolist())
  return str(value)


def json_record(record: dict[str, Any]) -> dict[str, Any]:
  """A record whose kept values are JSON values (`jsonable`)."""
  return {k: v if k in BASE_FIELDS else jsonable(v)
          for k, v in record.items()}


def text_value(value: Any) -> Optional[str]:
  """``value`` as text: strings as they are, None as None, else JSON text."""
  if value is None or isinstance(value, str):
    return value
  converted = jsonable(value)
  if isinstance(converted, str):  # dates, decimals, bytes
    return converted
  return json.dumps(converted, ensure_ascii=False)


def csv_cells(record: dict[str, Any], names: Sequence[str]) -> list[str]:
  """The CSV cells of the kept fields ``names`` (empty for null/missing)."""
  cells = []
  for name in names:
    text = text_value(record.get(name))
    cells.append('' if text is None else text)
  return cells


def csv_suffix(cells: Sequence[str]) -> str:
  """``cells`` as CSV text to append to a line of today's columns.

  CSV quotes each cell on its own, so a line of the first columns plus
  ``,`` plus a line of these is one valid CSV record.
  """
  if not cells:
    return ''
  out = io.StringIO()
  csv.writer(out, lineterminator='').writerow(cells)
  return ',' + out.getvalue()


def tf_kinds(columns: Optional[Sequence['Column']]) -> dict[str, str]:
  """``{name: 'float' or 'text'}`` for kept columns whose type says so.

  In a float64 column integers go as floats too, and in a string column
  everything goes as text, so a feature has one type in every Example.
  """
  import pyarrow.types as pt  # pylint: disable=import-outside-toplevel
  kinds = {}
  for column in columns or ():
    if pt.is_floating(column.type):
      kinds[column.name] = 'float'
    elif pt.is_string(column.type) or pt.is_large_string(column.type):
      kinds[column.name] = 'text'
  return kinds


def tf_features(record: dict[str, Any],
                kinds: Optional[dict[str, str]] = None) -> dict[str, Any]:
  """``tf.train.Feature`` s of a record's kept fields (None: left out).

  Args:
    record: an output record.
    kinds: `tf_kinds` of the kept columns, where known; other fields go by
      the type of each value.
  """
  tf = import_tensorflow()
  kinds = kinds or {}
  features = {}
  for name, value in record.items():
    if name in BASE_FIELDS or value is None:
      continue
    kind = kinds.get(name)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == 'text' and not isinstance(value, (bytes, bytearray)):
      feature = tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[text_value(value).encode('utf-8')]))
    elif isinstance(value, float) or (kind == 'float' and number):
      feature = tf.train.Feature(float_list=tf.train.FloatList(
          value=[float(value)]))
    elif isinstance(value, bool):
      feature = tf.train.Feature(int64_list=tf.train.Int64List(
          value=[int(value)]))
    elif isinstance(value, int) and INT64_RANGE[0] <= value <= INT64_RANGE[1]:
      feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    elif isinstance(value, (bytes, bytearray)):
      feature = tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[bytes(value)]))
    else:
      feature = tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[text_value(value).encode('utf-8')]))
    features[name] = feature
  return features


# --- columns of CSV and Parquet ---------------------------------------------

class Column(typing.NamedTuple):
  """A kept field written as a column, with its Arrow type (for Parquet)."""
  name: str
  type: Any


def _type_of(values: Sequence[Any]):
  """The Arrow type of sampled Python values; None when all are null."""
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  present = [v for v in values if v is not None]
  if not present:
    return None
  if all(isinstance(v, bool) for v in present):
    return pa.bool_()
  numbers = [v for v in present if isinstance(v, (int, float))
             and not isinstance(v, bool)]
  if len(numbers) == len(present):
    ints = [v for v in numbers if isinstance(v, int)]
    if any(not INT64_RANGE[0] <= v <= INT64_RANGE[1] for v in ints):
      return pa.string()  # Beyond 64 bits: exact only as text.
    return pa.int64() if len(ints) == len(numbers) else pa.float64()
  return pa.string()  # Strings, and the fallback for anything mixed.


def _merge(a, b):
  """One Arrow type for a field typed ``a`` in one file and ``b`` in another."""
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  if a is None or b is None or a.equals(b):
    return b if a is None else a
  if {str(a), str(b)} == {'int64', 'double'}:
    return pa.float64()
  return pa.string()


def _file_fields(path: str, fmt: str, rules: RecordRules,
                 budget: int) -> tuple[dict[str, Any], int]:
  """``{field: Arrow type or None}`` of one file, and the records read."""
  if fmt == 'parquet':
    try:
      schema = parquet_schema(path)
    except Exception as e:  # pylint: disable=broad-except
      _LOGGER.warning('Cannot read the schema of %s (%s)', path, e)
      return {}, 0
    return {name: schema.field(name).type for name in schema.names}, 0
  values: dict[str, list] = {}
  read = 0
  records = read_range(FileRange(path, fmt, 0, -1), rules)
  try:
    for record in records:
      if isinstance(record, ReadError):
        continue
      for name, value in record.items():
        values.setdefault(name, []).append(value)
      read += 1
      if read >= budget:
        break
  finally:
    records.close()
  return {name: _type_of(v) for name, v in values.items()}, read


def infer_columns(pattern: str, input_format: str, *, id_field: str,
                  text_field: str, keep_fields: Sequence[str],
                  keep_all_fields: bool,
                  sample_records: Optional[int] = None,
                  sample_files: Optional[int] = None,
                  outdir: Optional[str] = None) -> list[Column]:
  """The kept fields as CSV/Parquet columns, from a look at the input.

  Reads the schema of Parquet files and the first good records of other
  files (up to ``sample_records`` in all, from up to ``sample_files``
  files, in name order). A field typed differently in two files is float64
  when the types are int64 and float64, else a string column.

  Args:
    pattern: the input file pattern.
    input_format: a reader format, or ``auto``.
    id_field: the id field.
    text_field: the text field.
    keep_fields: the fields named with ``--keep_fields``, in order; their
      columns keep this order, and one the look did not find is a string
      column.
    keep_all_fields: the columns are every field found, in the order found
      (the id field itself is ``id`` when it is named ``id``).
    sample_records: records to read at most (default `SAMPLE_RECORDS`).
    sample_files: files to look at, at most (default `SAMPLE_FILES`).
    outdir: the run's output folder, whose files are no input
      (`pipeline.io.inputs`).

  Returns:
    The kept columns in order, without ``id`` and the score fields.
  """
  rules = RecordRules(id_field, text_field, keep_fields=keep_fields,
                      keep_all_fields=keep_all_fields)
  matched = sorted(m.path for m in inputs.match_inputs(pattern, outdir))
  found: dict[str, Any] = {}
  budget = SAMPLE_RECORDS if sample_records is None else sample_records
  files = SAMPLE_FILES if sample_files is None else sample_files
  for path in matched[:files]:
    fmt = (format_from_extension(path) or 'text'
           if input_format == 'auto' else input_format)
    if fmt != 'parquet' and budget <= 0:
      continue
    fields, read = _file_fields(path, fmt, rules, budget)
    budget -= read
    for name, arrow_type in fields.items():
      found[name] = _merge(found.get(name), arrow_type)
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  names = (list(found) if keep_all_fields else list(keep_fields))
  columns = [Column(name, found.get(name) or pa.string())
             for name in names if name not in BASE_FIELDS]
  _LOGGER.info('Kept columns: %s', ', '.join(
      f'{c.name} ({c.type})' for c in columns) or 'none')
  return columns


def parquet_fields(columns: Sequence[Column]) -> list[tuple[str, Any]]:
  """``(name, Arrow type)`` pairs to append to the Parquet schema."""
  return [(c.name, c.type) for c in columns]


class _Misfit(ValueError):
  pass


def _fit(value: Any, arrow_type) -> Any:
  """``value`` as its Parquet column takes it; `_Misfit` when it cannot.

  Checked here rather than left to pyarrow, which would truncate 2.5 to 2 in
  an int64 column or fail the whole write.
  """
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  import pyarrow.types as pt  # pylint: disable=import-outside-toplevel
  if value is None:
    return None
  if pt.is_string(arrow_type) or pt.is_large_string(arrow_type):
    return text_value(value)
  if pt.is_boolean(arrow_type):
    if isinstance(value, bool):
      return value
  elif pt.is_integer(arrow_type):
    if isinstance(value, float) and value.is_integer():
      value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
      bits = arrow_type.bit_width
      low, high = ((0, (1 << bits) - 1) if pt.is_unsigned_integer(arrow_type)
                   else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
      if low <= value <= high:
        return value
  elif pt.is_floating(arrow_type):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
  elif pt.is_binary(arrow_type) or pt.is_large_binary(arrow_type):
    if isinstance(value, (bytes, bytearray)):
      return bytes(value)
    if isinstance(value, str):
      return value.encode('utf-8')
  else:
    try:
      pa.array([value], type=arrow_type)
      return value
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
      pass
  raise _Misfit(f'{type(value).__name__} {ascii(value)[:60]}')


class FitColumns(beam.DoFn):
  """Checks records against the CSV/Parquet columns; misfits go to errors.

  Main output: records whose kept fields all have a column (and, for
  Parquet, fit its type), converted as the column takes them. Output
  ``errors``: ``{"id", "stage": "write", "reason"}`` for the others.

  Args:
    columns: the kept columns.
    output_format: ``csv`` or ``parquet``.
  """
  ERRORS = _ERRORS

  def __init__(self, columns: Sequence[Column], output_format: str):
    self._columns = list(columns)
    self._format = output_format
    self._errors = Metrics.counter(NAMESPACE, 'errors')

  def setup(self):
    self._types = {c.name: c.type for c in self._columns}

  def _error(self, record: dict[str, Any], reason: str):
    self._errors.inc()
    return beam.pvalue.TaggedOutput(self.ERRORS, {
        'id': record['id'], 'stage': 'write', 'reason': reason})

  def process(self, record: dict[str, Any]) -> Iterator[Any]:
    extra = [k for k in record if k not in BASE_FIELDS and k not in self._types]
    if extra:
      yield self._error(
          record, f'the record has the field {ascii(extra[0])}, which is not '
          f'a {self._format.upper()} column: the columns come from the '
          f'input\'s schema or its first records. Name the fields with '
          f'--keep_fields, or write JSONL.')
      return
    if self._format != 'parquet':
      yield record
      return
    out = dict(record)
    for name, arrow_type in self._types.items():
      try:
        out[name] = _fit(record.get(name), arrow_type)
      except _Misfit as e:
        yield self._error(
            record, f'the kept field {ascii(name)} holds {e}, which its '
            f'Parquet column of type {arrow_type} cannot hold (the type comes '
            f'from the input\'s schema or its first records); write JSONL, or '
            f'make the field one type.')
        return
    yield out
