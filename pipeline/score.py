"""Score a corpus of Japanese documents with a bundle.

Usage::

  python -m pipeline.score --input GLOB --model BUNDLE --output OUTDIR \\
      [--format jsonl|csv|parquet|tfrecord] [--num_shards N] \\
      [--scores_as list|columns] [--id_field id] [--text_field text] \\
      [--keep_fields a,b | --keep_all_fields] [--progress_secs 10] \
      [--log_level ERROR] [any Beam pipeline option]

Writes ``OUTDIR/scores-SSSSS-of-NNNNN.<ext>`` (one record per document:
``id``, ``scores`` (or one column per output), ``n_tokens``, ``truncated``),
``OUTDIR/_errors-SSSSS-of-NNNNN.jsonl`` (``id``, ``stage``, ``reason`` and,
for unreadable records, ``source``) and ``OUTDIR/_SUMMARY.json``. Every input
record ends in exactly one of the first two. Dataset readers pointed at
``OUTDIR`` skip the ``_`` files and read exactly the scores. The DirectRunner
is the default runner.

``--keep_fields a,b`` and ``--keep_all_fields`` carry input fields to the
score records after ``truncated`` (`pipeline.kept` says how each format
writes them).

Options are strict: one that neither this command nor Beam knows is an error
naming the closest valid one. Inputs, the output directory and the bundle
are checked before the pipeline is built; each problem is one line naming
the option that fixes it, with exit status 2.

A rerun into the same directory replaces the earlier outputs: they are set
aside in ``OUTDIR/_previous/`` while the run goes, deleted when it succeeds
and put back when it fails.
"""

import sys  # isort: skip

if __name__ == '__main__':
  # Before any other import (Beam's takes 2 s): local worker processes start
  # warming now, and the garbage collector waits until the job is built.
  from pipeline import warm_workers as _warm_workers  # isort: skip
  _warm_workers.start_early(sys.argv[1:])
  from pipeline import startup as _startup  # isort: skip
  _startup.pause_collector()

# Then: model.console drops Beam's notices before Beam is imported.
from model import console  # isort: skip

import argparse
import contextlib
import datetime
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Any, NoReturn, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options import pipeline_options as beam_options
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.runners.runner import PipelineState

from model import process_exit, storage
from model.bundle import MANIFEST, BundleError
from pipeline import (job_servers, kept, progress, scaling, startup,
                      warm_workers, watchdog)
from pipeline.readers import INPUT_FORMATS, ReadCorpus, format_from_extension
from pipeline.writers import (ERRORS_PREFIX, OUTPUT_FORMATS, SCORES_AS,
                              SCORES_PREFIX, SUMMARY_NAME, WriteErrors,
                              WriteScores)
from transforms import ScoreDocuments
from transforms.handler import (DEFAULT_BATCH_TOKENS, SCORING_FUNCTIONS,
                                SIGNATURE_BATCH_TOKENS)
from transforms.metrics import NAMESPACE

_LOGGER = logging.getLogger(__name__)
_COUNTERS = ('documents', 'tokens', 'unknown_tokens', 'truncated', 'empty',
             'errors', 'read_errors', 'scored', 'padded_tokens',
             'models_loaded', 'models_loaded_lstm', 'models_loaded_signature',
             'bytes_read', 'records_read')
_REQUIRED = ('input', 'model', 'output')
_PREVIOUS = '_previous'
# Output files of this command, earlier names included (``errors-*``).
_OUTPUT_PATTERNS = watchdog.OUTPUT_SHARDS + (SUMMARY_NAME,)
_TEMP_PREFIXES = tuple(f'beam-temp-{p}-' for p in (SCORES_PREFIX,
                                                    ERRORS_PREFIX, 'errors'))
# Option names that may hold secrets: these anywhere in the name...
_SECRET_PARTS = ('secret', 'password', 'passwd', 'credential',
                 'connection_string')
# ...and these as a whole word of it (``batch_tokens`` is no secret).
_SECRET_WORDS = ('token', 'key', 'apikey', 'auth')

BEAM_EPILOG = (
    'Apache Beam\'s pipeline options are accepted too, for example --runner, '
    '--direct_running_mode, --direct_num_workers, --flink_master, '
    '--parallelism, --job_endpoint, --environment_type, --temp_location, '
    '--setup_file. An option that neither this command nor Beam knows is an '
    'error.')


UsageError = console.UsageError


class ScoreOptions(PipelineOptions):
  """Options of the scoring pipeline (Beam's runner options come on top)."""
  @classmethod
  def _add_argparse_args(cls, parser):
    # Not argparse-required: every PipelineOptions in the process parses
    # these arguments, including those of pipelines that embed the scorer.
    # `parse_args` checks them.
    parser.add_argument('--input', metavar='PATTERN',
                        help='file pattern of the documents, on any Beam '
                        'filesystem (required)')
    parser.add_argument('--model', metavar='BUNDLE',
                        help='bundle directory (required)')
    parser.add_argument('--output', metavar='OUTDIR',
                        help='output directory (required)')
    parser.add_argument('--format', dest='output_format', default='jsonl',
                        choices=OUTPUT_FORMATS, help='format of the scores')
    parser.add_argument('--input_format', default='auto',
                        choices=INPUT_FORMATS + ('auto',),
                        help='format of the input; auto: by file extension')
    parser.add_argument('--num_shards', type=console.non_negative_int,
                        default=0,
                        help='output shards; 0: the runner decides')
    parser.add_argument('--scores_as', default='list', choices=SCORES_AS,
                        help='list: one "scores" field; columns: one column '
                        'per output, named after the bundle\'s outputs')
    parser.add_argument('--id_field', default='id',
                        help='id field of JSONL, CSV and Parquet input')
    parser.add_argument('--text_field', default='text',
                        help='text field of JSONL, CSV and Parquet input')
    parser.add_argument('--batch_tokens', type=console.positive_int,
                        default=DEFAULT_BATCH_TOKENS,
                        help='token budget of one padded inference batch '
                        '(scoring with the SavedModel signature splits it '
                        'further, to %d tokens)' % SIGNATURE_BATCH_TOKENS)
    parser.add_argument('--scoring_function', default='auto',
                        choices=SCORING_FUNCTIONS,
                        help='auto: a faster LSTM loop built from the '
                        "model's weights where it applies and matches the "
                        "SavedModel's signature on a probe; signature: "
                        "always the SavedModel's signature")
    parser.add_argument('--tf_threads', type=int, default=-1,
                        help='TensorFlow threads per worker process; -1: the '
                        "worker's share of the cores (1 on Dataflow); 0: "
                        "TensorFlow's default")
    parser.add_argument('--warm_workers', default='auto',
                        choices=('auto', 'off'),
                        help='auto: with local worker processes (the '
                        'DirectRunner\'s multi_processing, on Linux), start '
                        'them as the command starts, so that they import '
                        'TensorFlow and load the model while the job is '
                        'built; off: Beam starts them once the job runs')
    parser.add_argument('--split_bytes', type=console.non_negative_int,
                        default=0,
                        help='size of the ranges large input files are cut '
                        'into; 0: automatic, at most 64 MiB')
    parser.add_argument('--rebalance', default='auto',
                        choices=('auto', 'always', 'never'),
                        help='shuffle documents after reading; auto: on every '
                        'runner but the local DirectRunner')
    parser.add_argument('--keep_fields', default=None, metavar='A,B',
                        help='input fields to write after the scores, '
                        'separated by commas (the text only when named)')
    parser.add_argument('--keep_all_fields', action='store_true',
                        help='write every input field (the text too) after '
                        'the scores')
    parser.add_argument('--allow_empty_input', action='store_true',
                        help='a pattern that matches no file scores nothing '
                        'instead of failing')
    parser.add_argument('--progress_secs', type=console.non_negative_float,
                        default=10.0,
                        help='seconds between progress lines; 0: none')
    console.add_log_level_argument(parser)


def build_parser() -> console.StrictArgumentParser:
  """The command line of ``pipeline.score`` (its own options only)."""
  parser = console.StrictArgumentParser(
      prog=console.prog_name('python -m pipeline.score'),
      description='Score Japanese documents with a bundle on Apache Beam.',
      epilog=BEAM_EPILOG)
  ScoreOptions._add_argparse_args(parser)  # pylint: disable=protected-access
  watchdog.WatchdogOptions._add_argparse_args(parser)  # pylint: disable=protected-access
  return parser


def _beam_parser(parser: console.StrictArgumentParser) -> argparse.ArgumentParser:
  """Every registered Beam pipeline option, as ``get_all_options`` sees them,
  reporting errors through ``parser``."""
  class _Parser(beam_options._BeamArgumentParser):  # pylint: disable=protected-access
    def error(self, message):
      parser.error(message)
  beam_parser = _Parser(allow_abbrev=False)
  seen = {}
  for cls in PipelineOptions.__subclasses__():
    seen.setdefault(str(cls), cls)
  for cls in seen.values():
    if cls is not ScoreOptions:
      cls._add_argparse_args(beam_parser)  # pylint: disable=protected-access
  return beam_parser


def parse_args(argv: Optional[Sequence[str]] = None
               ) -> tuple[argparse.Namespace, PipelineOptions]:
  """Parses the command line strictly.

  Exits with status 2 (argparse) on an option that neither this command nor
  Beam knows, naming the closest valid one, and on a bad or missing value.

  Returns:
    The command's options and the full `PipelineOptions`.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  args, rest = parser.parse_known_args(argv)
  beam_parser = _beam_parser(parser)
  _, unknown = beam_parser.parse_known_args(rest)
  if unknown:
    parser.extra_options = {
        s for a in beam_parser._actions for s in a.option_strings}  # pylint: disable=protected-access
    parser.reject_unknown(unknown)
  missing = [f'--{name}' for name in _REQUIRED if not getattr(args, name)]
  if missing:
    parser.error(f'the following arguments are required: '
                 f'{", ".join(missing)}')
  return args, PipelineOptions(argv)


class _CountScored(beam.DoFn):
  """Counts scored documents and their tokens (Beam counter and progress)."""
  def __init__(self):
    self._scored = Metrics.counter(NAMESPACE, 'scored')

  def process(self, record):
    self._scored.inc()
    progress.tally(scored=1, tokens=record['n_tokens'])
    yield record

  def finish_bundle(self):
    progress.flush()


def _count_read_error(record):
  Metrics.counter(NAMESPACE, 'read_errors').inc()
  Metrics.counter(NAMESPACE, 'errors').inc()
  return record


def _tally_error(record):
  progress.tally(errors=1)
  return record


def _keep_fields(scores, opts: Any, keep_fields: list[str]):
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


def _keeps(opts: Any) -> bool:
  return bool(getattr(opts, 'keep_fields', None) or
              getattr(opts, 'keep_all_fields', False))


def build(pipeline: beam.Pipeline, opts: Any,
          scorer: Optional[ScoreDocuments] = None,
          plan: Optional[scaling.Plan] = None) -> None:
  """Adds the read, score and write steps to ``pipeline``.

  Args:
    pipeline: the pipeline.
    opts: the command's options (`ScoreOptions` or `parse_args`' namespace).
    scorer: the `ScoreDocuments` to use (built from ``opts`` if not given).
    plan: how the job spreads (`pipeline.scaling.plan`; made from ``opts``
      and the pipeline's options if not given).
  """
  plan = plan or scaling.plan(
      pipeline.options, [], pattern=opts.input,
      tf_threads=getattr(opts, 'tf_threads', -1),
      split_bytes=getattr(opts, 'split_bytes', 0),
      rebalance=getattr(opts, 'rebalance', 'auto'))
  keep_fields = kept.parse_keep_fields(getattr(opts, 'keep_fields', None))
  keep_all = bool(getattr(opts, 'keep_all_fields', False))
  keeps = _keeps(opts)
  scorer = scorer or make_scorer(opts, tf_threads=plan.tf_threads)
  docs, read_errors = pipeline | 'ReadCorpus' >> ReadCorpus(
      opts.input, opts.input_format, id_field=opts.id_field,
      text_field=opts.text_field, split_bytes=plan.split_bytes,
      rebalance=plan.rebalance, keep_fields=keep_fields,
      keep_all_fields=keep_all)
  scores, errors = docs | 'ScoreDocuments' >> scorer
  counted = read_errors | 'CountReadErrors' >> beam.Map(_count_read_error)
  all_errors, columns = [errors, counted], None
  if keeps:
    # One error shape whether fields are kept or not; the record is in the
    # input.
    all_errors[0] = errors | 'StripErrorRecords' >> beam.Map(
        kept.strip_record)
    scores, misfits, columns = _keep_fields(scores, opts, keep_fields)
    if misfits is not None:
      all_errors.append(misfits)
  _ = (scores | 'CountScored' >> beam.ParDo(_CountScored())
       | 'WriteScores' >> WriteScores(
           opts.output, opts.output_format, num_shards=opts.num_shards,
           output_names=scorer.output_names,
           scores_as=getattr(opts, 'scores_as', 'list'), kept=keeps,
           kept_columns=columns))
  _ = (all_errors | 'AllErrors' >> beam.Flatten()
       | 'TallyErrors' >> beam.Map(_tally_error)
       | 'WriteErrors' >> WriteErrors(opts.output,
                                      num_shards=opts.num_shards))


# Checks before the pipeline is built.


def _is_local(path: str) -> bool:
  return '://' not in path


def check_input(pattern: str, *, input_format: str = 'auto',
                allow_empty: bool = False) -> tuple[int, int]:
  """Checks that ``pattern`` names readable input.

  Returns:
    ``(files, total bytes)``.

  Raises:
    UsageError: no such file, no match (unless ``allow_empty``), a
      directory, or a file whose format the extension does not tell.
  """
  try:
    found = FileSystems.match([pattern])[0].metadata_list
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'--input {pattern}: cannot list it ({e}).') from e
  wildcard = any(c in pattern for c in '*?[')
  if _is_local(pattern):
    dirs = [m.path for m in found if os.path.isdir(m.path)]
    if dirs:
      raise UsageError(
          f'--input {pattern}: {dirs[0]} is a directory; give a file '
          f'pattern such as {os.path.join(dirs[0], "*.jsonl")}.')
  if not found:
    if not wildcard:
      raise UsageError(f'--input {pattern}: no such file.')
    if not allow_empty:
      raise UsageError(f'--input {pattern}: the pattern matches no file '
                       f'(--allow_empty_input accepts that).')
  if input_format == 'auto':
    unknown = [m.path for m in found
               if format_from_extension(m.path) is None]
    if unknown:
      raise UsageError(
          f'--input: cannot tell the format of {unknown[0]} from its name'
          f'{f" (and {len(unknown) - 1} more files)" if len(unknown) > 1 else ""}; '
          f'give --input_format {"|".join(INPUT_FORMATS)}.')
  return len(found), sum(m.size_in_bytes or 0 for m in found)


def check_output(outdir: str) -> None:
  """Checks that files can be written to ``outdir`` (creating it).

  Raises:
    UsageError: ``outdir`` is a file or cannot be written.
  """
  if _is_local(outdir):
    if os.path.exists(outdir) and not os.path.isdir(outdir):
      raise UsageError(f'--output {outdir}: is a file; give a directory.')
  elif any(m.path.rstrip('/') == outdir.rstrip('/') for m in
           FileSystems.match([outdir])[0].metadata_list):
    raise UsageError(f'--output {outdir}: is a file; give a directory.')
  console.check_writable_dir(outdir, '--output')


def make_scorer(opts: Any, *, tf_threads: int = 0,
                probe_model: bool = True) -> ScoreDocuments:
  """The `ScoreDocuments` for the options: pairs, or dicts with kept fields.

  Args:
    opts: the parsed command line.
    tf_threads: TensorFlow threads per worker process (0: TF's default).
    probe_model: load and probe the model in this process (see
      `ScoreDocuments`); off when the workers are other processes.

  Raises:
    BundleError: the bundle is missing or invalid.
  """
  # Kept fields make the documents dicts; pairs stay the fast path.
  record_fields = ({'id_field': opts.id_field, 'text_field': opts.text_field}
                   if _keeps(opts) else {})
  return ScoreDocuments(opts.model, batch_tokens=opts.batch_tokens,
                        tf_threads=tf_threads, probe_model=probe_model,
                        scoring_function=getattr(opts, 'scoring_function',
                                                 'auto'),
                        **record_fields)


def load_scorer(opts: Any, *, tf_threads: int = 0,
                probe_model: bool = True) -> ScoreDocuments:
  """Loads and checks the bundle; checks ``--scores_as`` against it.

  Raises:
    UsageError: the bundle is missing or invalid, or its output names
      cannot be columns.
  """
  try:
    scorer = make_scorer(opts, tf_threads=tf_threads, probe_model=probe_model)
  except BundleError as e:
    raise UsageError(f'--model {opts.model}: {e}') from e
  if opts.scores_as == 'columns':
    from pipeline.writers import score_fields  # pylint: disable=import-outside-toplevel
    try:
      score_fields(scorer.output_names, 'columns')
    except ValueError as e:
      raise UsageError(f'--scores_as columns: {e} Use --scores_as list.') from e
  return scorer


# Earlier outputs, temporary files, the summary.


def _match(pattern: str) -> list[str]:
  try:
    return [m.path for m in FileSystems.match([pattern])[0].metadata_list]
  except Exception:  # pylint: disable=broad-except
    return []


def _output_files(outdir: str) -> list[str]:
  return sorted({p for name in _OUTPUT_PATTERNS
                 for p in _match(FileSystems.join(outdir, name))})


def _move(paths: Sequence[str], directory: str) -> None:
  if not paths:
    return
  if _is_local(directory):
    os.makedirs(directory, exist_ok=True)
  FileSystems.rename(list(paths), [
      FileSystems.join(directory, FileSystems.split(p)[1]) for p in paths])


def set_aside_earlier_outputs(outdir: str) -> int:
  """Moves an earlier run's outputs to ``OUTDIR/_previous/``.

  Files already there (a run that was killed) stay there unless newer
  outputs replace them. Returns how many files were moved.
  """
  previous = FileSystems.join(outdir, _PREVIOUS)
  current = _output_files(outdir)
  if current and _match(FileSystems.join(previous, '*')):
    storage.remove_tree(previous)
  _move(current, previous)
  return len(current)


def restore_earlier_outputs(outdir: str) -> None:
  """Puts the outputs set aside back (the run failed)."""
  previous = FileSystems.join(outdir, _PREVIOUS)
  stale = _output_files(outdir)
  if stale:
    FileSystems.delete(stale)
  _move(_match(FileSystems.join(previous, '*')), outdir)
  if FileSystems.exists(previous):
    storage.remove_tree(previous)


def drop_earlier_outputs(outdir: str) -> None:
  """Deletes the outputs set aside (the run succeeded)."""
  previous = FileSystems.join(outdir, _PREVIOUS)
  if FileSystems.exists(previous) or _match(FileSystems.join(previous, '*')):
    storage.remove_tree(previous)


def remove_temporary_files(outdir: str) -> None:
  """Deletes the ``beam-temp-*`` folders of this command's sinks."""
  if _is_local(outdir):
    try:
      names = os.listdir(outdir)
    except OSError:
      return
    for name in names:
      if name.startswith(_TEMP_PREFIXES):
        shutil.rmtree(os.path.join(outdir, name), ignore_errors=True)
    return
  files = [p for prefix in _TEMP_PREFIXES
           for p in _match(FileSystems.join(outdir, prefix + '*', '*'))]
  if files:
    FileSystems.delete(files)


def _remove_empty_jsonl(outdir: str) -> None:
  # pyarrow's JSON reader refuses empty files; an empty shard holds nothing.
  empty = [m.path for m in FileSystems.match([FileSystems.join(
      outdir, f'{SCORES_PREFIX}-*-of-*.jsonl')])[0].metadata_list
           if not m.size_in_bytes]
  if empty:
    FileSystems.delete(empty)


def summarize(result, *, attempted: bool = False) -> dict[str, int]:
  """The pipeline's counters, by name (committed values where the runner
  has them, unless ``attempted``)."""
  counters = result.metrics().query(
      MetricsFilter().with_namespace(NAMESPACE))['counters']
  totals = {name: 0 for name in _COUNTERS}
  for counter in counters:
    name = counter.key.metric.name
    if name in totals:
      value = counter.committed if (
          counter.committed is not None and not attempted) else (
              counter.attempted)
      totals[name] += value or 0
  return totals


def _package_versions() -> dict[str, str]:
  versions = {}
  for name in ('ja-doc-scorer', 'apache-beam', 'tensorflow', 'keras',
               'mecab-python3', 'unidic-lite', 'numpy', 'pyarrow'):
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return versions


def _is_secret(name: str) -> bool:
  name = name.lower().replace('-', '_')
  return (any(part in name for part in _SECRET_PARTS) or
          any(word in _SECRET_WORDS for word in name.split('_')))


def _redacted(options: dict[str, Any]) -> dict[str, Any]:
  """The options with the values of those that may hold secrets hidden."""
  return {k: ('<redacted>' if _is_secret(k) else v)
          for k, v in options.items()}


def _bundle_identity(path: str) -> dict[str, Any]:
  raw = storage.read_bytes(FileSystems.join(path, MANIFEST))
  manifest = json.loads(raw)
  return {'path': path, 'manifest_sha256': hashlib.sha256(raw).hexdigest(),
          'checksums': manifest.get('checksums', {}),
          'outputs': manifest.get('outputs', [])}


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds')


def write_summary(outdir: str, summary: dict[str, Any]) -> str:
  path = FileSystems.join(outdir, SUMMARY_NAME)
  storage.write_bytes(path, json.dumps(summary, ensure_ascii=False, indent=2,
                                       default=str).encode('utf-8'))
  return path


@contextlib.contextmanager
def _progress(every_secs: float, total_bytes: Optional[int]):
  """A `progress.ProgressReporter` for one run, with its directory."""
  directory = tempfile.mkdtemp(prefix='ja-doc-progress-')
  saved = os.environ.get(progress.PROGRESS_DIR_ENV)
  os.environ[progress.PROGRESS_DIR_ENV] = directory
  reporter = progress.ProgressReporter(every_secs, directory,
                                       total_bytes=total_bytes,
                                       log=_LOGGER.info).start()
  try:
    yield reporter
  finally:
    reporter.stop()
    if saved is None:
      os.environ.pop(progress.PROGRESS_DIR_ENV, None)
    else:
      os.environ[progress.PROGRESS_DIR_ENV] = saved
    shutil.rmtree(directory, ignore_errors=True)


def _run_pipeline(pipeline: beam.Pipeline, args: argparse.Namespace,
                  reporter: progress.ProgressReporter):
  """Runs ``pipeline`` with the earlier outputs set aside; returns the
  result. Whatever happens, no temporary folder stays behind and the output
  directory holds either this run's outputs or the earlier ones."""
  outdir = args.output
  moved = set_aside_earlier_outputs(outdir)
  if moved:
    _LOGGER.debug('Set aside %d files of an earlier run', moved)
  result, succeeded = None, False
  try:
    def on_start(started):
      if _metrics_while_running(started):
        reporter.use_metrics(lambda: summarize(started, attempted=True))
    # The watchdog fails the run, instead of hanging, when a worker dies;
    # the finally below cleans the output directory.
    result = watchdog.run_and_wait(pipeline, outdir, on_start=on_start,
                                   clean_up_output=False)
    state = result.state
    if state is not None and state != PipelineState.DONE:
      raise RuntimeError(f'the pipeline ended in state {state}.')
    succeeded = True
  finally:
    if not succeeded and result is not None and not (
        PipelineState.is_terminal(result.state)):
      try:
        result.cancel()
      except Exception:  # pylint: disable=broad-except
        _LOGGER.warning('Could not cancel the job; it may still run.')
    remove_temporary_files(outdir)
    if succeeded:
      drop_earlier_outputs(outdir)
      if args.output_format == 'jsonl':
        _remove_empty_jsonl(outdir)
    else:
      restore_earlier_outputs(outdir)
  return result


def _names(outdir: str, prefix: str) -> list[str]:
  return sorted(FileSystems.split(p)[1] for p in _match(
      FileSystems.join(outdir, f'{prefix}-*-of-*')))


def run(argv: Optional[Sequence[str]] = None, test_pipeline=None):
  """Checks, builds and runs the scoring pipeline; writes ``_SUMMARY.json``.

  Returns:
    The PipelineResult; its ``summary`` attribute holds what was written to
    ``_SUMMARY.json``.

  Raises:
    UsageError: a check before the pipeline failed (the message names the
      option that fixes it).
    SystemExit: bad command line (argparse, status 2).
  """
  args, options = parse_args(argv)
  try:
    kept.check_keep_options(kept.parse_keep_fields(args.keep_fields),
                            args.keep_all_fields, args.id_field)
  except ValueError as e:
    raise UsageError(str(e)) from e
  started, clock = _now(), time.monotonic()
  files, total_bytes = check_input(args.input, input_format=args.input_format,
                                   allow_empty=args.allow_empty_input)
  check_output(args.output)
  argv = list(sys.argv[1:] if argv is None else argv)
  warm_wanted = args.warm_workers == 'auto' and warm_workers.supported()
  try:
    plan = scaling.plan(options, argv, size=total_bytes,
                        tf_threads=args.tf_threads,
                        split_bytes=args.split_bytes,
                        rebalance=args.rebalance, warm=warm_wanted)
  except ValueError as e:
    raise UsageError(str(e)) from e
  if plan.flags and test_pipeline is None:
    options = PipelineOptions(argv + plan.flags)
  warm = None
  if (test_pipeline is None and warm_wanted and scaling.is_local(options) and
      not plan.in_process and plan.workers):
    # Started first: they import and load while this process builds the job.
    settings = {'model': args.model, 'tf_threads': plan.tf_threads,
                'scoring_function': args.scoring_function}
    warm = (warm_workers.take_early(plan.workers, **settings) or
            warm_workers.start(plan.workers, **settings))
    warm.forward_stderr()  # Through the console's filter.
  try:
    runner = warm and warm.runner(PipelineOptions(argv + plan.flags))
    return _check_build_and_run(args, options, plan, files, total_bytes,
                                started, clock, test_pipeline, runner)
  finally:
    if warm is not None:
      warm.close()


def _check_build_and_run(args, options, plan, files, total_bytes, started,
                         clock, test_pipeline, warm_runner):
  """`run` once the plan is made (and warm workers started)."""
  # A launcher whose workers are other processes need not import TensorFlow:
  # checksums are verified here, and each worker probes the model it loads.
  scorer = load_scorer(args, tf_threads=plan.tf_threads,
                       probe_model=test_pipeline is not None or
                       plan.in_process)
  if args.scores_as == 'columns':
    clash = sorted(set(kept.parse_keep_fields(args.keep_fields)) &
                   set(scorer.output_names))
    if clash:
      raise UsageError(f'--keep_fields names {clash[0]!r}, which is also a '
                       f'score column with --scores_as columns; rename the '
                       f'field or use --scores_as list.')
  options.view_as(SetupOptions).save_main_session = False
  if test_pipeline is None:
    # Flink/Spark: the job-server jar through Maven, Java 17 flags.
    try:
      job_servers.prepare_runner(options)
    except job_servers.JobServerError as e:
      raise UsageError(str(e)) from e
  runner = options.view_as(beam_options.StandardOptions).runner or (
      'DirectRunner')
  _LOGGER.info('Scoring %s (%d file%s, %s bytes) with %s into %s on %s%s',
               args.input, files, '' if files == 1 else 's',
               f'{total_bytes:,}', args.model, args.output, runner,
               f' ({plan.workers} worker processes)' if plan.workers > 1
               else '')
  _LOGGER.debug('Scaling plan: %r', plan)
  if test_pipeline is not None:
    pipeline = test_pipeline
  elif warm_runner is not None:
    # The runner's copy of the options has no running mode (see
    # `warm_workers`); the summary keeps the one asked for.
    pipeline = beam.Pipeline(runner=warm_runner, options=warm_runner.options)
  else:
    pipeline = beam.Pipeline(options=options)
  build(pipeline, args, scorer, plan)
  # Paused by the command line's entry points (`pipeline.startup`) while
  # they imported Beam and, in this process or not, TensorFlow, loaded the
  # model and built the job: all of which stays until the process ends.
  startup.resume_collector(freeze=True)
  with _progress(args.progress_secs, total_bytes or None) as reporter:
    result = _run_pipeline(pipeline, args, reporter)
  result.summary = {
      'command': 'pipeline.score',
      'status': 'succeeded',
      'started_at': started,
      'finished_at': _now(),
      'seconds': round(time.monotonic() - clock, 3),
      'counts': summarize(result),
      'input': {'pattern': args.input, 'files': files, 'bytes': total_bytes},
      'outputs': {'scores': _names(args.output, SCORES_PREFIX),
                  'errors': _names(args.output, ERRORS_PREFIX)},
      'bundle': _bundle_identity(args.model),
      'options': _redacted(vars(args)),
      'pipeline_options': _redacted(options.get_all_options(
          drop_default=True)),
      'packages': _package_versions(),
  }
  write_summary(args.output, result.summary)
  return result


def _metrics_while_running(result) -> bool:
  """Whether to poll the job's metrics while it runs.

  Not on the DirectRunner (its result comes at the end) nor on portable job
  services (Flink, Spark, local): their result keeps the first answer to a
  metrics query, which would then stand for the final counts.
  """
  from apache_beam.runners.portability import portable_runner  # pylint: disable=import-outside-toplevel
  return not (PipelineState.is_terminal(result.state) or
              isinstance(result, portable_runner.PipelineResult))


def _short(error: BaseException) -> str:
  """The last meaningful line of an error (Beam wraps worker tracebacks)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  where = next((line for line in reversed(lines)
                if line.startswith('[while running')), '')
  text = next((line for line in reversed(lines)
               if not line.startswith('[while running')), type(error).__name__)
  return f'{text} {where}'.strip()


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``python -m pipeline.score`` and ``ja-doc-score``; returns the exit
  status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  level = _log_level(argv)
  with console.Console(level, command=__name__):
    try:
      result = run(argv)
    except SystemExit as e:  # argparse: usage errors and --help
      return e.code if isinstance(e.code, int) else 2
    except UsageError as e:
      return console.fail(str(e))
    except watchdog.RunAborted as e:
      print(f'error: {e}', file=sys.stderr)
      return 1
    except KeyboardInterrupt:
      return console.fail('interrupted.')
    except Exception as e:  # pylint: disable=broad-except
      _LOGGER.debug('The pipeline failed', exc_info=True)
      print(f'error: the pipeline failed: {_short(e)}', file=sys.stderr)
      if level != 'DEBUG':
        print('(--log_level DEBUG shows the traceback)', file=sys.stderr)
      return 1
    finally:
      warm_workers.close_early()  # Those no run took (a usage error).
  totals, summary = result.summary['counts'], result.summary
  outdir = summary['options']['output']
  ext = summary['options']['output_format']
  print(f'Scored {totals["scored"]:,} documents ({totals["tokens"]:,} tokens, '
        f'{totals["unknown_tokens"]:,} unknown, {totals["truncated"]:,} '
        f'truncated, {totals["empty"]:,} empty); {totals["errors"]:,} errors '
        f'in {summary["seconds"]:.1f} s.')
  print(f'Outputs: {FileSystems.join(outdir, f"{SCORES_PREFIX}-*.{ext}")}; '
        f'errors: {FileSystems.join(outdir, f"{ERRORS_PREFIX}-*.jsonl")}; '
        f'summary: {FileSystems.join(outdir, SUMMARY_NAME)}')
  return 0


def _log_level(argv: Sequence[str]) -> str:
  """``--log_level`` read ahead of parsing (the console comes first)."""
  level = console.DEFAULT_LOG_LEVEL
  for i, arg in enumerate(argv):
    if arg == '--log_level' and i + 1 < len(argv):
      level = argv[i + 1]
    elif arg.startswith('--log_level='):
      level = arg.split('=', 1)[1]
  level = level.upper()
  return level if level in console.LOG_LEVELS else console.DEFAULT_LOG_LEVEL


def cli() -> NoReturn:
  """The ``ja-doc-score`` console script: `main`, then an exit that skips the
  interpreter's teardown (`model.process_exit`)."""
  process_exit.run_command(main)


if __name__ == '__main__':
  cli()
