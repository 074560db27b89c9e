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

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

_LOGGER = logging.getLogger(__name__)

OUTPUT_FORMATS = ('jsonl', 'csv', 'parquet', 'tfrecord')


def _csv_line(record: dict) -> str:
  out = io.StringIO()
  csv.writer(out, lineterminator='').writerow([
      record['id'], json.dumps(record['scores']), record['n_tokens'],
      str(record['truncated']).lower()
  ])
  return out.getvalue()


def _tf_example(record: dict) -> bytes:
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
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString()


def _parquet_row(record: dict) -> dict:
  return {**record, 'id': str(record['id'])}


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

  JSONL and CSV keep ``scores`` as a JSON list; CSV, Parquet and TFRecord
  write ids as strings (these formats need one type per column).
  """
  def __init__(self, outdir: str, output_format: str = 'jsonl', *,
               num_shards: int = 0):
    super().__init__()
    if output_format not in OUTPUT_FORMATS:
      raise ValueError(f'output format must be one of {OUTPUT_FORMATS}; '
                       f'received {output_format!r}.')
    self._prefix = FileSystems.join(outdir, 'scores')
    self._format = output_format
    self._num_shards = num_shards

  def expand(self, records):
    fmt, prefix, shards = self._format, self._prefix, self._num_shards
    if fmt == 'jsonl':
      return (records | 'ToJson' >> beam.Map(json_line)
              | 'WriteJsonl' >> beam.io.WriteToText(
                  prefix, file_name_suffix='.jsonl', num_shards=shards))
    if fmt == 'csv':
      return (records | 'ToCsv' >> beam.Map(_csv_line)
              | 'WriteCsv' >> beam.io.WriteToText(
                  prefix, file_name_suffix='.csv', num_shards=shards,
                  header='id,scores,n_tokens,truncated'))
    if fmt == 'tfrecord':
      return (records | 'ToExample' >> beam.Map(_tf_example)
              | 'WriteTfrecord' >> beam.io.WriteToTFRecord(
                  prefix, file_name_suffix='.tfrecord', num_shards=shards))
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    schema = pa.schema([('id', pa.string()), ('scores', pa.list_(pa.float64())),
                        ('n_tokens', pa.int64()), ('truncated', pa.bool_())])
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
