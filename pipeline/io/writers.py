"""Writers for the scoring pipeline's outputs.

``OUTDIR/scores-SSSSS-of-NNNNN.<ext>`` in JSONL, CSV, Parquet or TFRecord
(``tf.train.Example``), and ``OUTDIR/_errors-SSSSS-of-NNNNN.jsonl``. The
error shards start with ``_`` so that dataset readers pointed at ``OUTDIR``
(pyarrow, pandas, Spark, which skip names starting with ``_`` or ``.``) read
exactly the scores. Beam's file sinks write to a temporary directory and
rename when done, so no partial shard is ever left under a final name.

Scores go either as one ``scores`` list (``scores_as='list'``, the default)
or as one column per output named after the bundle's outputs
(``scores_as='columns'``).
"""

import csv
import io
import json
import logging
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.io.formats import OUTPUT_FORMATS
from pipeline.io.kept import (Column, csv_cells, csv_suffix, json_record,
                              parquet_fields, tf_features, tf_kinds)
from pipeline.io.outdir import ERRORS_PREFIX, SCORES_PREFIX
from runtime.tensorflow_import import import_tensorflow
from transforms.records import (COUNT_FIELDS, MODEL_ID_FIELD, SCORES_AS,
                                score_field_names)

_LOGGER = logging.getLogger(__name__)

_FIXED_FIELDS = ('id',) + COUNT_FIELDS


def score_fields(output_names: Optional[Sequence[str]],
                 scores_as: str = 'list') -> list[str]:
  """The fields of a score record, in order.

  Raises:
    ValueError: ``scores_as`` is unknown, or an output name is empty,
      repeated, or one of ``id``, ``n_tokens``, ``truncated``.
  """
  if scores_as not in SCORES_AS:
    raise ValueError(f'scores_as must be one of {SCORES_AS}; received '
                     f'{scores_as!r}.')
  if scores_as == 'list':
    return ['id', *score_field_names((), 'list')]
  names = list(output_names or [])
  bad = sorted({n for n in names if not n or n in _FIXED_FIELDS or
                names.count(n) > 1})
  if not names or bad:
    raise ValueError(
        f'the bundle\'s output names {names} cannot be columns (empty, '
        f'repeated, or one of {list(_FIXED_FIELDS)}: {bad}).')
  return ['id', *score_field_names(names, 'columns')]


def _flat(record: dict, names: Optional[Sequence[str]]) -> dict:
  """The record with its scores as named fields when ``names`` is given."""
  if names is None:
    return record
  out = {'id': record['id']}
  out.update(zip(names, record['scores']))
  # n_tokens, truncated, then any kept fields, in their order.
  out.update((k, v) for k, v in record.items() if k not in ('id', 'scores'))
  return out


def _csv_text(values: Sequence) -> str:
  out = io.StringIO()
  csv.writer(out, lineterminator='').writerow(values)
  return out.getvalue()


def _csv_line(record: dict, names: Optional[Sequence[str]] = None,
              model_id: bool = False) -> str:
  scores = (list(record['scores']) if names is not None
            else [json.dumps(record['scores'])])
  return _csv_text([record['id'], *scores, record['n_tokens'],
                    str(record['truncated']).lower(),
                    *([record[MODEL_ID_FIELD]] if model_id else [])])


def _tf_example(record: dict, names: Optional[Sequence[str]] = None,
                kept: Optional[dict] = None) -> bytes:
  tf = import_tensorflow()
  floats = lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=v))
  ints = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
  feature = {
      'id': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[str(record['id']).encode('utf-8')])),
      'n_tokens': ints([record['n_tokens']]),
      'truncated': ints([int(record['truncated'])]),
  }
  if names is None:
    feature['scores'] = floats(record['scores'])
  else:
    feature.update({n: floats([s]) for n, s in zip(names, record['scores'])})
  if kept is not None:  # The tf_kinds of the kept columns.
    feature.update(tf_features(record, kept))
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString()


def _parquet_row(record: dict, names: Optional[Sequence[str]] = None) -> dict:
  return {**_flat(record, names), 'id': str(record['id'])}


def json_line(record: dict) -> str:
  """One line of strict JSON (no NaN or Infinity), valid UTF-8 when encoded.

  Strings that cannot be encoded as UTF-8 (unpaired surrogates) are written
  with JSON escapes instead of failing the write.
  """
  line = json.dumps(record, ensure_ascii=False, allow_nan=False)
  try:
    line.encode('utf-8')
  except UnicodeEncodeError:
    line = json.dumps(record, ensure_ascii=True, allow_nan=False)
  return line


class WriteScores(beam.PTransform):
  """Writes score records to ``OUTDIR/scores-SSSSS-of-NNNNN.<ext>``.

  JSONL and CSV keep ``scores`` as a JSON list by default; CSV, Parquet and
  TFRecord write ids as strings (these formats need one type per column).

  Args:
    outdir: the output directory on any Beam filesystem.
    output_format: one of `OUTPUT_FORMATS`.
    num_shards: output shards; 0 lets the runner decide.
    output_names: the bundle's output names (needed for ``columns``).
    scores_as: ``list`` (one ``scores`` field) or ``columns`` (one field per
      output, named after it).
    kept: the records carry kept input fields after today's fields, written
      as `pipeline.io.kept` says per format.
    kept_columns: their columns (`pipeline.io.kept.infer_columns`), needed for
      CSV and Parquet (records must have passed `pipeline.io.kept.FitColumns`);
      TFRecord uses them, when given, to give a feature one type.
    name: the shards' name before ``-SSSSS-of-NNNNN``; ``scores`` unless a
      command names them otherwise (the watching command's windows,
      `pipeline.io.outdir.window_name`).
    model_id: the records carry ``model_id`` after ``truncated`` (JSONL and
      CSV only).

  Raises:
    ValueError: an unknown format, kept fields without their columns, or
      ``model_id`` for Parquet or TFRecord.
  """
  def __init__(self, outdir: str, output_format: str = 'jsonl', *,
               num_shards: int = 0,
               output_names: Optional[Sequence[str]] = None,
               scores_as: str = 'list', kept: bool = False,
               kept_columns: Optional[Sequence[Column]] = None,
               name: str = SCORES_PREFIX, model_id: bool = False):
    super().__init__()
    if model_id and output_format not in ('jsonl', 'csv'):
      raise ValueError(f'model_id is written to jsonl or csv; received '
                       f'{output_format!r}.')
    if output_format not in OUTPUT_FORMATS:
      raise ValueError(f'output format must be one of {OUTPUT_FORMATS}; '
                       f'received {output_format!r}.')
    if kept and kept_columns is None and output_format in ('csv', 'parquet'):
      raise ValueError(f'{output_format} output of kept fields needs their '
                       f'columns (kept_columns).')
    self._kept = kept
    self._kept_columns = list(kept_columns or []) if kept else []
    self._fields = score_fields(output_names, scores_as) + (
        [MODEL_ID_FIELD] if model_id else [])
    self._model_id = model_id
    self._names = (list(output_names) if scores_as == 'columns' else None)
    self._prefix = FileSystems.join(outdir, name)
    self._format = output_format
    self._num_shards = num_shards

  def expand(self, records):
    fmt, prefix, shards = self._format, self._prefix, self._num_shards
    names, kept, columns = self._names, self._kept, self._kept_columns
    if fmt == 'jsonl':
      as_json = json_record if kept else (lambda r: r)
      return (records | 'ToJson' >> beam.Map(
          lambda r: json_line(_flat(as_json(r), names)))
              | 'WriteJsonl' >> beam.io.WriteToText(
                  prefix, file_name_suffix='.jsonl', num_shards=shards))
    if fmt == 'csv':
      header = _csv_text(self._fields)
      with_id = self._model_id
      to_csv = lambda r: _csv_line(r, names, with_id)
      if columns:
        kept_names = [c.name for c in columns]
        header += csv_suffix(kept_names)
        to_csv = lambda r: (_csv_line(r, names, with_id) +
                            csv_suffix(csv_cells(r, kept_names)))
      return (records | 'ToCsv' >> beam.Map(to_csv)
              | 'WriteCsv' >> beam.io.WriteToText(
                  prefix, file_name_suffix='.csv', num_shards=shards,
                  header=header))
    if fmt == 'tfrecord':
      kinds = tf_kinds(columns) if kept else None
      return (records | 'ToExample' >> beam.Map(_tf_example, names, kinds)
              | 'WriteTfrecord' >> beam.io.WriteToTFRecord(
                  prefix, file_name_suffix='.tfrecord', num_shards=shards))
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    scores = ([('scores', pa.list_(pa.float64()))] if names is None else
              [(n, pa.float64()) for n in names])
    schema = pa.schema([('id', pa.string()), *scores,
                        ('n_tokens', pa.int64()), ('truncated', pa.bool_()),
                        *parquet_fields(columns)])
    return (records | 'ToParquetRow' >> beam.Map(_parquet_row, names)
            | 'WriteParquet' >> beam.io.WriteToParquet(
                prefix, schema, file_name_suffix='.parquet',
                num_shards=shards))


class WriteErrors(beam.PTransform):
  """Writes error records to ``OUTDIR/_errors-SSSSS-of-NNNNN.jsonl``.

  Args:
    outdir: the output directory on any Beam filesystem.
    num_shards: output shards; 0 lets the runner decide.
    name: the shards' name before ``-SSSSS-of-NNNNN``; ``_errors`` unless a
      command names them otherwise.
  """
  def __init__(self, outdir: str, *, num_shards: int = 0,
               name: str = ERRORS_PREFIX):
    super().__init__()
    self._prefix = FileSystems.join(outdir, name)
    self._num_shards = num_shards

  def expand(self, errors):
    return (errors | 'ErrorToJson' >> beam.Map(json_line)
            | 'WriteErrorsJsonl' >> beam.io.WriteToText(
                self._prefix, file_name_suffix='.jsonl',
                num_shards=self._num_shards))
