"""``python -m pipeline.score``: score a corpus of Japanese documents with a
bundle.

Usage::

  python -m pipeline.score --input GLOB --model BUNDLE --output OUTDIR \\
      [--format jsonl|csv|parquet|tfrecord] [--num_shards N] \\
      [--scores_as list|columns] [--id_field id] [--text_field text] \\
      [--keep_fields a,b | --keep_all_fields] [--progress_secs 10] \\
      [--log_level ERROR] [any Beam pipeline option]

Writes ``OUTDIR/scores-SSSSS-of-NNNNN.<ext>`` (one record per document:
``id``, ``scores`` (or one column per output), ``n_tokens``, ``truncated``),
``OUTDIR/_errors-SSSSS-of-NNNNN.jsonl`` (``id``, ``stage``, ``reason`` and,
for unreadable records, ``source``) and ``OUTDIR/_SUMMARY.json``. Every input
record ends in exactly one of the first two. The DirectRunner is the default
runner. With ``--watch`` the command follows ``--input`` instead, window by
window, until a stop signal (`pipeline.cli.watch`).

Why this module exists: it is the command's sequence, and only that: parse
(`pipeline.cli.options`), check (`pipeline.cli.preflight`), plan the workers
(`pipeline.local.scaling`), start warm workers where they pay
(`pipeline.local.warm_workers`), build the job (`pipeline.cli.job`), run it
under the watchdog with the earlier outputs set aside
(`pipeline.io.outdir`), and write the summary (`pipeline.cli.summary`).
"""

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (PipelineOptions,
                                                  SetupOptions,
                                                  StandardOptions)
from apache_beam.runners.runner import PipelineState

from pipeline import job_servers, progress
from pipeline.cli import summary, watch
from pipeline.cli.job import build, load_scorer
from pipeline.cli.options import parse_args
from pipeline.cli.preflight import (UsageError, check_fields, check_input,
                                    check_offline, check_output,
                                    check_remote_paths, is_dry_run,
                                    remote_runner)
from pipeline.io import inputs, kept, outdir
from pipeline.local import scaling, warm_workers, watchdog
from runtime import collector, console, signals
from runtime.argv import flag_given, flag_value

_LOGGER = logging.getLogger(__name__)


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


def _metrics_while_running(result) -> bool:
  """Whether to poll the job's metrics while it runs.

  Not on the DirectRunner (its result comes at the end) nor on portable job
  services (Flink, Spark, local): their result keeps the first answer to a
  metrics query, which would then stand for the final counts.
  """
  from apache_beam.runners.portability import portable_runner  # pylint: disable=import-outside-toplevel
  return not (PipelineState.is_terminal(result.state) or
              isinstance(result, portable_runner.PipelineResult))


def _run_pipeline(pipeline: beam.Pipeline, args: argparse.Namespace,
                  reporter: progress.ProgressReporter,
                  describe: Callable[[Any, dict[str, int]], dict[str, Any]],
                  *, in_process: bool = False):
  """Runs ``pipeline`` with the earlier outputs set aside; returns the
  result, its ``summary`` written to ``_SUMMARY.json``. Whatever happens, no
  temporary folder stays behind and the output directory holds either this
  run's outputs or the earlier ones (`pipeline.io.outdir`).

  Args:
    pipeline: the job.
    args: the command's options.
    reporter: the progress line.
    describe: makes the summary of a finished run from its result and what
      was recovered of a killed run's leftovers.
    in_process: whether the job's workers are the run's own thread.
  """
  result, succeeded, set_aside, recovered = None, False, False, {}
  try:
    # Whole file moves only: a stop signal is raised once they are done
    # (`runtime.signals`), and the ``finally`` below puts them back.
    with signals.held():
      recovered = outdir.recover(args.output)
      moved = outdir.set_aside_earlier_outputs(args.output)
      set_aside = True
    if recovered:
      _LOGGER.info('Recovered %s from a run that was killed: %s',
                   args.output, _recovery_text(recovered))
    if moved:
      _LOGGER.debug('Set aside %d files of an earlier run', moved)
    def on_start(started):
      if _metrics_while_running(started):
        reporter.use_metrics(lambda: summary.summarize(started,
                                                       attempted=True))
    # The watchdog fails the run, instead of hanging, when a worker dies.
    with console.others_silenced():
      result = watchdog.run_and_wait(pipeline, on_start=on_start,
                                     in_process=in_process)
    state = result.state
    if state is not None and state != PipelineState.DONE:
      raise RuntimeError(f'the pipeline ended in state {state}.')
    succeeded = True
  finally:
    if set_aside:
      _finish(args, result, succeeded, recovered, describe)
  return result


def _finish(args, result, succeeded, recovered, describe) -> None:
  """`_run_pipeline`'s end: cancels a job that failed and leaves the output
  folder as `outdir.finish` does, the summary written on success."""
  if not succeeded and result is not None and not (
      PipelineState.is_terminal(result.state)):
    try:
      result.cancel()
    except Exception:  # pylint: disable=broad-except
      (_LOGGER.debug if signals.received() else _LOGGER.warning)(
          'Could not cancel the job; it may still run.')
  def write_summary():
    result.summary = describe(result, recovered)
    summary.write_summary(args.output, result.summary)
  try:
    with signals.held():
      outdir.finish(args.output, succeeded=succeeded,
                    output_format=args.output_format, complete=write_summary)
  except signals.Interrupted as e:  # It arrived while the files moved.
    e.output_complete = succeeded
    raise


def _recovery_text(recovered: dict[str, int]) -> str:
  """What `outdir.recover` did, in words."""
  words = {'restored': 'put back {} files of the earlier output',
           'partial': 'removed {} files the killed run had written',
           'temporary_folders': 'removed {} temporary folders',
           'dropped': 'finished the killed run (its output was complete)',
           'emptied': 'removed its empty _previous/ folder'}
  return '; '.join(words[k].format(v) for k, v in recovered.items())


def run(argv: Optional[Sequence[str]] = None, test_pipeline=None):
  """Checks, builds and runs the scoring pipeline; writes ``_SUMMARY.json``.

  With ``--watch``, follows the input instead until a stop signal
  (`pipeline.cli.watch`) and returns its `watch.Stopped`.

  Returns:
    The PipelineResult; its ``summary`` attribute holds what was written to
    ``_SUMMARY.json``. With Dataflow's ``--dry_run=True``, nothing is
    written: ``result.job`` is the job Beam built (``proto_pipeline``,
    ``options``) and ``summary`` says so (``dry_run``).

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
  if args.model_updates is not None and not args.watch:
    raise UsageError(f'--model_updates {args.model_updates}: bundles are '
                     f'followed by a command that keeps running; add '
                     f'--watch, or leave --model_updates out.')
  if args.watch:  # Until a stop signal (`pipeline.cli.watch`).
    return watch.run(args, options,
                     list(sys.argv[1:] if argv is None else argv))
  started, clock = summary.now(), time.monotonic()
  paths = {'--input': args.input, '--model': args.model,
           '--output': args.output}
  check_remote_paths(paths, remote_runner(options))
  dry_run = is_dry_run(options)
  if dry_run:  # Checked offline: only the bundle is read, to build the job.
    check_offline(paths)
    found = []
  else:
    found = check_input(args.input, input_format=args.input_format,
                        allow_empty=args.allow_empty_input,
                        outdir=args.output)
    check_fields([m.path for m in found], input_format=args.input_format,
                 id_field=args.id_field, text_field=args.text_field)
  files, total_bytes = len(found), inputs.size_of(found)
  if not dry_run:
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
  local_processes = (scaling.is_local(options) and not plan.in_process and
                     plan.workers > 0)
  flags = plan.flags + _harness_log_flags(argv, args.log_level,
                                          local_processes)
  if flags and test_pipeline is None:
    options = PipelineOptions(argv + flags)
  warm = None
  if test_pipeline is None and warm_wanted and local_processes:
    # Started first: they import and load while this process builds the job.
    settings = {'model': args.model, 'tf_threads': plan.tf_threads,
                'scoring_function': args.scoring_function}
    try:
      warm = (warm_workers.take_early(plan.workers, **settings) or
              warm_workers.start(plan.workers, **settings))
      warm.forward_stderr()  # Through the console's filter.
    except OSError as e:  # They start cold instead.
      _LOGGER.debug('Could not start warm workers: %s', e)
  try:
    runner = None
    if warm is not None:
      runner = warm.runner(PipelineOptions(argv + flags))
    elif test_pipeline is None and local_processes:
      # Beam's harness, ending with its own status and no teardown.
      runner = warm_workers.cold_runner(PipelineOptions(argv + flags))
    return _check_build_and_run(args, options, plan, files, total_bytes,
                                started, clock, test_pipeline, runner)
  finally:
    if warm is not None:
      warm.close()


def _harness_log_flags(argv: Sequence[str], log_level: str,
                       local_processes: bool) -> list[str]:
  """Beam's SDK harness log level for local worker processes: the command's
  ``--log_level``, unless given. Their log lines go to this console; those
  of remote workers (Dataflow's logging) are left as Beam sets them."""
  if not local_processes or flag_given(argv, 'default_sdk_harness_log_level'):
    return []
  return ['--default_sdk_harness_log_level', log_level]


def _check_build_and_run(args, options, plan, files, total_bytes, started,
                         clock, test_pipeline, local_runner):
  """`run` once the plan is made (and warm workers started); ``local_runner``
  runs the job's local worker processes, if it has any."""
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
  runner = options.view_as(StandardOptions).runner or 'DirectRunner'
  sized = ('not listed: a dry run' if is_dry_run(options) else
           f'{files} file{"" if files == 1 else "s"}, {total_bytes:,} bytes')
  _LOGGER.info('Scoring %s (%s) with %s into %s on %s%s', args.input, sized,
               args.model, args.output, runner,
               f' ({plan.workers} worker processes)' if plan.workers > 1
               else '')
  _LOGGER.debug('Scaling plan: %r', plan)
  if test_pipeline is not None:
    pipeline = test_pipeline
  elif local_runner is not None:
    # The runner's copy of the options has no running mode (see
    # `warm_workers.local_runner`); the summary keeps the one asked for.
    pipeline = beam.Pipeline(runner=local_runner, options=local_runner.options)
  else:
    pipeline = beam.Pipeline(options=options)
  build(pipeline, args, scorer, plan)
  # Paused by the command line's entry points (`pipeline.cli.entry_points`)
  # while they imported Beam and, in this process or not, TensorFlow, loaded
  # the model and built the job: all of which stays until the process ends.
  collector.resume(freeze=True)
  if is_dry_run(options) and test_pipeline is None:
    return _dry_run(pipeline, runner)
  def describe(result, recovered):
    return summary.record(
        result, args, options, started=started,
        seconds=time.monotonic() - clock, files=files,
        total_bytes=total_bytes, recovered=recovered)
  with _progress(args.progress_secs, total_bytes or None) as reporter:
    return _run_pipeline(pipeline, args, reporter, describe,
                         in_process=plan.in_process)


def _dry_run(pipeline: beam.Pipeline, runner: str):
  """Dataflow's ``--dry_run=True``: Beam builds the job it would submit
  and returns it as ``result.job`` (``proto_pipeline``, ``options``); nothing
  is submitted, listed or written (no output folder moves, no summary)."""
  result = pipeline.run()
  job = getattr(result, 'job', None)
  proto = getattr(job, 'proto_pipeline', None)
  result.summary = {
      'dry_run': True, 'runner': runner,
      'job_name': getattr(getattr(job, 'proto', None), 'name', None),
      'transforms': len(proto.components.transforms) if proto else 0}
  return result


def _short(error: BaseException) -> str:
  """The last meaningful line of an error (Beam wraps worker tracebacks)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  where = next((line for line in reversed(lines)
                if line.startswith('[while running')), '')
  text = next((line for line in reversed(lines)
               if not line.startswith('[while running')), type(error).__name__)
  return f'{text} {where}'.strip()


def _print_result(record: dict[str, Any]) -> None:
  if record.get('dry_run'):
    print(f'Dry run: built the {record["runner"]} job {record["job_name"]} '
          f'({record["transforms"]} transforms); nothing was submitted, '
          f'listed or written.')
    return
  totals = record['counts']
  out = record['options']['output']
  ext = record['options']['output_format']
  print(f'Scored {totals["scored"]:,} documents ({totals["tokens"]:,} tokens, '
        f'{totals["unknown_tokens"]:,} unknown, {totals["truncated"]:,} '
        f'truncated, {totals["empty"]:,} empty); {totals["errors"]:,} errors '
        f'in {record["seconds"]:.1f} s.')
  print(f'Outputs: '
        f'{FileSystems.join(out, f"{outdir.SCORES_PREFIX}-*.{ext}")}; '
        f'errors: {FileSystems.join(out, f"{outdir.ERRORS_PREFIX}-*.jsonl")}; '
        f'summary: {FileSystems.join(out, outdir.SUMMARY_NAME)}')


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``python -m pipeline.score`` and ``ja-doc-score``; returns the exit
  status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  level = console.log_level_from(argv)
  output = flag_value(argv, 'output')
  with console.Console(level, command=__name__) as shown, \
      signals.when_stopping(shown.quiet_other_libraries):
    try:
      result = run(argv)
      if isinstance(result, watch.Stopped):
        console.say(result.line)
        return result.exit_status
    except signals.Interrupted as e:
      return interrupted(e, output)
    except SystemExit as e:  # argparse: usage errors and --help
      return e.code if isinstance(e.code, int) else 2
    except UsageError as e:
      return console.fail(str(e))
    except watchdog.RunAborted as e:
      if signals.received():
        return interrupted(signals.Interrupted(signals.received()), output)
      print(f'error: {e.explain(output) if output else e}', file=sys.stderr)
      return 1
    except KeyboardInterrupt:  # `run` called without `signals.install`.
      return console.fail('interrupted.')
    except Exception as e:  # pylint: disable=broad-except
      if signals.received():  # An error of the stop itself.
        _LOGGER.debug('Stopped with an error', exc_info=True)
        return interrupted(signals.Interrupted(signals.received()), output)
      _LOGGER.debug('The pipeline failed', exc_info=True)
      print(f'error: the pipeline failed: {_short(e)}', file=sys.stderr)
      if level != 'DEBUG':
        print('(--log_level DEBUG shows the traceback)', file=sys.stderr)
      return 1
    finally:
      warm_workers.close_early()  # Those no run took (a usage error).
  _print_result(result.summary)
  return 0


def interrupted(error: signals.Interrupted, output: Optional[str]) -> int:
  """Stops what the run started, says in one line what the output folder
  holds, and returns 128 + the signal's number.

  By then the run's ``finally`` blocks have stopped the job and put the
  output folder back (`_run_pipeline`).
  """
  signals.handled()
  stopped = signals.stop_children()
  if stopped:
    _LOGGER.debug('Stopped %d processes the run left', stopped)
  if output is not None and outdir.is_local(output):
    # Again, now that nothing runs the job: a worker can open a temporary
    # shard after the ``finally`` blocks cleaned up (a bundle the runner
    # sent before it was cancelled; Flink's and Spark's LOOPBACK workers).
    # A remote folder's workers are not this machine's.
    removed = outdir.remove_temporary_files(output)
    if removed:
      _LOGGER.debug('Removed %d temporary folders written while stopping',
                    removed)
  said = f'interrupted by {error.name}'
  if output is None:
    console.say(f'{said}.')
  elif getattr(error, 'output_complete', False):
    console.say(f'{said} after the run finished; the output in {output} is '
                f'complete.')
  elif outdir.output_files(output):
    console.say(f'{said}; the earlier output in {output} is kept; rerun the '
                f'same command to finish.')
  else:
    console.say(f'{said}; nothing was written to {output}; rerun the same '
                f'command to finish.')
  return error.exit_status
