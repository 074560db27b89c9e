"""Writers for the scoring pipeline's outputs.

``OUTDIR/scores-SSSSS-of-NNNNN.<ext>`` in JSONL, CSV, Parquet or TFRecord
(``tf.train.Example``), and ``OUTDIR/errors-SSSSS-of-NNNNN.jsonl``. Beam's
file sinks write to a temporary directory and rename when done, so no partial
shard is ever left under a final name.
"""

import csv
import io
import json
import logging
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.kept import (Column, csv_cells, csv_suffix, json_record,
                           parquet_fields, tf_features, tf_kinds)

_LOGGER = logging.getLogger(__name__)

OUTPUT_FORMATS = ('jsonl', 'csv', 'parquet', 'tfrecord')


def _csv_line(record: dict) -> str:
  out = io.StringIO()
  csv.writer(out, lineterminator='').writerow([
      record['id'], json.dumps(record['scores']), record['n_tokens'],
      str(record['truncated']).lower()
  ])
  return out.getvalue()


def _tf_example(record: dict, kept: Optional[dict] = None) -> bytes:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  feature = {
      'id': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[str(record['id']).encode('utf-8')])),
      'scores': tf.train.Feature(float_list=tf.train.FloatList(
          value=record['scores'])),
      'n_tokens': tf.train.Feature(int64_list=tf.train.Int64List(
          value=[record['n_tokens']])),
      'truncated': tf.train.Feature(int64_list=tf.train.Int64List(
          value=[int(record['truncated'])])),
  }
  if kept is not None:  # The tf_kinds of the kept columns.
    feature.update(tf_features(record, kept))
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString()


def _parquet_row(record: dict) -> dict:
  return {**record, 'id': str(record['id'])}


def json_line(record: dict) -> str:
  return json.dumps(record, ensure_ascii=False)


class WriteScores(beam.PTransform):
  """Writes score records to ``OUTDIR/scores-SSSSS-of-NNNNN.<ext>``.

  JSONL and CSV keep ``scores`` as a JSON list; CSV, Parquet and TFRecord
  write ids as strings (these formats need one type per column).

  Kept input fields (``kept=True``) follow today's fields, written as
  `pipeline.kept` says per format. CSV and Parquet need their columns
  (``kept_columns``, from `pipeline.kept.infer_columns`), and records must
  have passed `pipeline.kept.FitColumns`; TFRecord uses them, when given, to
  give a feature one type in every Example.
  """
  def __init__(self, outdir: str, output_format: str = 'jsonl', *,
               num_shards: int = 0, kept: bool = False,
               kept_columns: Optional[Sequence[Column]] = None):
    super().__init__()
    if output_format not in OUTPUT_FORMATS:
      raise ValueError(f'output format must be one of {OUTPUT_FORMATS}; '
                       f'received {output_format!r}.')
    if kept and kept_columns is None and output_format in ('csv', 'parquet'):
      raise ValueError(f'{output_format} output of kept fields needs their '
                       f'columns (kept_columns).')
    self._kept = kept
    self._kept_columns = list(kept_columns or []) if kept else []
    self._prefix = FileSystems.join(outdir, 'scores')
    self._format = output_format
    self._num_shards = num_shards

  def expand(self, records):
    fmt, prefix, shards = self._format, self._prefix, self._num_shards
    kept, columns = self._kept, self._kept_columns
    if fmt == 'jsonl':
      to_json = (lambda r: json_line(json_record(r))) if kept else json_line
      return (records | 'ToJson' >> beam.Map(to_json)
              | 'WriteJsonl' >> beam.io.WriteToText(
                  prefix, file_name_suffix='.jsonl', num_shards=shards))
    if fmt == 'csv':
      header = 'id,scores,n_tokens,truncated'
      to_csv = _csv_line
      if columns:
        names = [c.name for c in columns]
        header += csv_suffix(names)
        to_csv = lambda r: _csv_line(r) + csv_suffix(csv_cells(r, names))
      return (records | 'ToCsv' >> beam.Map(to_csv)
              | 'WriteCsv' >> beam.io.WriteToText(
                  prefix, file_name_suffix='.csv', num_shards=shards,
                  header=header))
    if fmt == 'tfrecord':
      kinds = tf_kinds(columns) if kept else None
      return (records | 'ToExample' >> beam.Map(_tf_example, kinds)
              | 'WriteTfrecord' >> beam.io.WriteToTFRecord(
                  prefix, file_name_suffix='.tfrecord', num_shards=shards))
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    schema = pa.schema([('id', pa.string()), ('scores', pa.list_(pa.float64())),
                        ('n_tokens', pa.int64()), ('truncated', pa.bool_()),
                        *parquet_fields(columns)])
    return (records | 'ToParquetRow' >> beam.Map(_parquet_row)
            | 'WriteParquet' >> beam.io.WriteToParquet(
                prefix, schema, file_name_suffix='.parquet',
                num_shards=shards))


class WriteErrors(beam.PTransform):
  """Writes error records to ``OUTDIR/errors-SSSSS-of-NNNNN.jsonl``."""
  def __init__(self, outdir: str, *, num_shards: int = 0):
    super().__init__()
    self._prefix = FileSystems.join(outdir, 'errors')
    self._num_shards = num_shards

  def expand(self, errors):
    return (errors | 'ErrorToJson' >> beam.Map(json_line)
            | 'WriteErrorsJsonl' >> beam.io.WriteToText(
                self._prefix, file_name_suffix='.jsonl',
                num_shards=self._num_shards))
