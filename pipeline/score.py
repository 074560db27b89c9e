"""Score a corpus of Japanese documents with a bundle.

Usage::

  python -m pipeline.score --input GLOB --model BUNDLE --output OUTDIR \\
      [--format jsonl|csv|parquet|tfrecord] [--num_shards N] \\
      [--id_field id] [--text_field text] \\
      [--keep_fields a,b | --keep_all_fields] [any Beam runner flag]

Writes ``OUTDIR/scores-SSSSS-of-NNNNN.<ext>`` (one record per document:
``id``, ``scores``, ``n_tokens``, ``truncated``) and
``OUTDIR/errors-SSSSS-of-NNNNN.jsonl`` (``id``, ``stage``, ``reason`` and,
for unreadable records, ``source``). Every input record ends in exactly one
of the two. The DirectRunner is the default runner.

``--keep_fields a,b`` and ``--keep_all_fields`` carry input fields to the
score records after ``truncated`` (`pipeline.kept` says how each format
writes them).
"""

import logging
import sys
import time
from typing import Any, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from model.bundle import BundleError
from pipeline import kept, scaling
from pipeline.readers import INPUT_FORMATS, ReadCorpus
from pipeline.writers import OUTPUT_FORMATS, WriteErrors, WriteScores
from transforms import ScoreDocuments
from transforms.handler import DEFAULT_BATCH_TOKENS
from transforms.metrics import NAMESPACE

_LOGGER = logging.getLogger(__name__)
_COUNTERS = ('documents', 'tokens', 'unknown_tokens', 'truncated', 'empty',
             'errors', 'read_errors', 'scored', 'padded_tokens',
             'models_loaded')


class ScoreOptions(PipelineOptions):
  """Options of the scoring pipeline (Beam's runner options come on top)."""
  @classmethod
  def _add_argparse_args(cls, parser):
    # Not argparse-required: every PipelineOptions in the process parses
    # these arguments, including those of pipelines that embed the scorer.
    parser.add_argument('--input',
                        help='file pattern of the documents (any Beam '
                        'filesystem)')
    parser.add_argument('--model', help='bundle directory')
    parser.add_argument('--output', help='output directory')
    parser.add_argument('--format', dest='output_format', default='jsonl',
                        choices=OUTPUT_FORMATS, help='format of the scores')
    parser.add_argument('--input_format', default='auto',
                        choices=INPUT_FORMATS + ('auto',),
                        help='format of the input (default: by extension)')
    parser.add_argument('--num_shards', type=int, default=0,
                        help='output shards (0: the runner decides)')
    parser.add_argument('--id_field', default='id')
    parser.add_argument('--text_field', default='text')
    parser.add_argument('--batch_tokens', type=int,
                        default=DEFAULT_BATCH_TOKENS,
                        help='token budget of one padded inference batch')
    parser.add_argument('--tf_threads', type=int, default=-1,
                        help='TensorFlow threads per worker process (-1: the '
                        "worker's share of the cores; 0: TensorFlow's "
                        'default)')
    parser.add_argument('--split_bytes', type=int, default=0,
                        help='size of the ranges large input files are cut '
                        'into (0: automatic, at most 64 MiB)')
    parser.add_argument('--rebalance', default='auto',
                        choices=('auto', 'always', 'never'),
                        help='shuffle documents after reading (auto: on every '
                        'runner but the local DirectRunner)')
    parser.add_argument('--keep_fields', default=None,
                        help='input fields to write after the scores, '
                        'separated by commas (the text only when named)')
    parser.add_argument('--keep_all_fields', action='store_true',
                        help='write every input field (the text too) after '
                        'the scores')


class _CountAndLog(beam.DoFn):
  """Counts scored documents and logs progress every ``every_secs``."""
  def __init__(self, every_secs: float = 30.0):
    self._every = every_secs
    self._scored = Metrics.counter(NAMESPACE, 'scored')

  def start_bundle(self):
    self._count, self._last = 0, time.monotonic()

  def process(self, record):
    self._scored.inc()
    self._count += 1
    now = time.monotonic()
    if now - self._last >= self._every:
      _LOGGER.info('Scored %d documents in this bundle so far', self._count)
      self._last = now
    yield record


def _count_read_error(record):
  Metrics.counter(NAMESPACE, 'read_errors').inc()
  Metrics.counter(NAMESPACE, 'errors').inc()
  return record


def _keep_fields(scores, opts: ScoreOptions, keep_fields: list[str]):
  """The score records with their kept fields, fitted to the output's columns.

  Returns:
    ``(records, misfits, columns)``: the records to write, the records whose
    kept fields the CSV/Parquet columns cannot hold (errors at stage
    ``write``, or None), and those columns (None for JSONL).
  """
  records = scores | 'KeepFields' >> beam.Map(
      kept.output_record, id_field=opts.id_field, keep_fields=keep_fields,
      keep_all_fields=opts.keep_all_fields)
  if opts.output_format == 'jsonl':
    return records, None, None
  columns = kept.infer_columns(
      opts.input, opts.input_format, id_field=opts.id_field,
      text_field=opts.text_field, keep_fields=keep_fields,
      keep_all_fields=opts.keep_all_fields)
  if opts.output_format == 'tfrecord' or (
      opts.output_format == 'csv' and not opts.keep_all_fields):
    # TFRecord writes any field; CSV text takes any value of known names.
    return records, None, columns
  records, misfits = records | 'FitKeptColumns' >> beam.ParDo(
      kept.FitColumns(columns, opts.output_format)).with_outputs(
          kept.FitColumns.ERRORS, main='records')
  return records, misfits, columns


def build(pipeline: beam.Pipeline, opts: ScoreOptions,
          plan: Optional[scaling.Plan] = None) -> None:
  """Adds the read, score and write steps to ``pipeline``."""
  plan = plan or scaling.plan(pipeline.options, [], pattern=opts.input,
                              tf_threads=opts.tf_threads,
                              split_bytes=opts.split_bytes,
                              rebalance=opts.rebalance)
  keep_fields = kept.parse_keep_fields(opts.keep_fields)
  keeps = bool(keep_fields) or opts.keep_all_fields
  docs, read_errors = pipeline | 'ReadCorpus' >> ReadCorpus(
      opts.input, opts.input_format, id_field=opts.id_field,
      text_field=opts.text_field, split_bytes=plan.split_bytes,
      rebalance=plan.rebalance, keep_fields=keep_fields,
      keep_all_fields=opts.keep_all_fields)
  # Kept fields make the documents dicts; pairs stay the fast path.
  record_fields = ({'id_field': opts.id_field, 'text_field': opts.text_field}
                   if keeps else {})
  scores, errors = docs | 'ScoreDocuments' >> ScoreDocuments(
      opts.model, batch_tokens=opts.batch_tokens, tf_threads=plan.tf_threads,
      **record_fields)
  counted = read_errors | 'CountReadErrors' >> beam.Map(_count_read_error)
  all_errors, columns = [errors, counted], None
  if keeps:
    all_errors[0] = errors | 'StripErrorRecords' >> beam.Map(
        kept.strip_record)
    scores, misfits, columns = _keep_fields(scores, opts, keep_fields)
    if misfits is not None:
      all_errors.append(misfits)
  _ = (scores | 'CountAndLog' >> beam.ParDo(_CountAndLog())
       | 'WriteScores' >> WriteScores(opts.output, opts.output_format,
                                      num_shards=opts.num_shards, kept=keeps,
                                      kept_columns=columns))
  _ = (all_errors | 'AllErrors' >> beam.Flatten()
       | 'WriteErrors' >> WriteErrors(opts.output,
                                      num_shards=opts.num_shards))


def _existing_outputs(outdir: str) -> dict[str, Any]:
  """``scores-*``/``errors-*`` shard files in ``outdir``, with their mtimes."""
  found = {}
  for name in ('scores-*-of-*', 'errors-*-of-*'):
    pattern = FileSystems.join(outdir, name)
    for meta in FileSystems.match([pattern])[0].metadata_list:
      found[meta.path] = getattr(meta, 'last_updated_in_seconds', None)
  return found


def _remove_stale_outputs(outdir: str, before: dict[str, Any]) -> list[str]:
  """Deletes shards of an earlier run that this run did not rewrite.

  A rerun with another shard count or format would otherwise leave the
  earlier run's shards beside the new ones. A shard this run wrote has a new
  modification time; one it did not write keeps the time seen before.
  """
  now = _existing_outputs(outdir)
  stale = [path for path, updated in before.items()
           if path in now and now[path] == updated]
  if stale:
    FileSystems.delete(stale)
    _LOGGER.info('Removed %d output files of an earlier run', len(stale))
  return stale


def summarize(result) -> dict[str, int]:
  """The pipeline's counters, by name."""
  counters = result.metrics().query(
      MetricsFilter().with_namespace(NAMESPACE))['counters']
  totals = {name: 0 for name in _COUNTERS}
  for counter in counters:
    name = counter.key.metric.name
    if name in totals:
      value = counter.committed if counter.committed is not None else (
          counter.attempted)
      totals[name] += value or 0
  return totals


def run(argv: Optional[Sequence[str]] = None, test_pipeline=None):
  """Builds and runs the scoring pipeline; returns the PipelineResult."""
  argv = list(argv if argv is not None else sys.argv[1:])
  options = PipelineOptions(argv)
  opts = options.view_as(ScoreOptions)
  missing = [f'--{name}' for name in ('input', 'model', 'output')
             if not getattr(opts, name)]
  if missing:
    raise ValueError(f'the arguments {", ".join(missing)} are required.')
  kept.check_keep_options(kept.parse_keep_fields(opts.keep_fields),
                          opts.keep_all_fields, opts.id_field)
  plan = scaling.plan(options, argv, pattern=opts.input,
                      tf_threads=opts.tf_threads, split_bytes=opts.split_bytes,
                      rebalance=opts.rebalance)
  if plan.flags and test_pipeline is None:
    options = PipelineOptions(argv + plan.flags)
    opts = options.view_as(ScoreOptions)
  _LOGGER.info('Scoring with %s', plan)
  options.view_as(SetupOptions).save_main_session = False
  before = _existing_outputs(opts.output)
  pipeline = test_pipeline or beam.Pipeline(options=options)
  build(pipeline, opts, plan)
  result = pipeline.run()
  result.wait_until_finish()
  _remove_stale_outputs(opts.output, before)
  return result


def main(argv: Optional[Sequence[str]] = None) -> int:
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
  try:
    result = run(argv)
  except (BundleError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  totals = summarize(result)
  opts = PipelineOptions(argv).view_as(ScoreOptions)
  print(f'Scored {totals["scored"]} documents ({totals["tokens"]} tokens, '
        f'{totals["unknown_tokens"]} unknown, {totals["truncated"]} '
        f'truncated, {totals["empty"]} empty); {totals["errors"]} errors.')
  print(f'Outputs: {FileSystems.join(opts.output, "scores-*")} and '
        f'{FileSystems.join(opts.output, "errors-*")}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
