"""``python -m pipeline.score --watch``: follow a folder, scoring each new
file once, window by window, until a stop signal.

Why this module exists: a folder that a producer keeps filling (a file at a
time, written elsewhere and renamed into the ``--input`` pattern) should be
scored as it fills, without rescoring what was scored and without a
half-written output under a final name when the command is stopped. This is
the watching command's sequence; `pipeline.cli.score` hands over to it when
``--watch`` is given.

How it runs:

* Every ``--watch_interval_secs`` the pattern is matched again
  (`pipeline.io.inputs`: output folders and names starting with ``_`` or
  ``.`` are never read). A path is taken once, the first time it is seen.
* Time is cut into fixed windows of ``--window_secs``, aligned to the epoch
  as Beam's ``FixedWindows`` are. A file belongs to the window in which it
  was first matched. When a window ends, its files are scored by one bounded
  job (`pipeline.cli.job.build` with the window's files: the same readers,
  scorer and record shapes as the batch command) into
  ``OUTDIR/scores-START-END-SSSSS-of-NNNNN.<ext>`` and
  ``OUTDIR/_errors-START-END-SSSSS-of-NNNNN.jsonl``
  (`pipeline.io.outdir.window_names`). Beam's file sinks write to a
  ``beam-temp-*`` folder and rename when done. A window without files
  writes nothing.
* SIGINT, SIGTERM or SIGHUP (`runtime.signals`) stops it: a window's job
  that is running is cancelled (`pipeline.local.watchdog`) and the
  temporary folders are deleted. If every shard of that window's two sets
  was already renamed, the window is kept; otherwise what of it was renamed
  is deleted: every window is whole or absent. The command says in one line
  what it wrote and exits with status 130, whichever the signal.

Why not a streaming pipeline with ``fileio.MatchContinuously``: in Beam
2.77 it is built on splittable DoFns (``Watch``, ``PeriodicImpulse``). The
local ``DirectRunner`` runs a streaming pipeline that has one on the
``FnApiRunner``, which never finishes the first stage, so nothing is ever
written; the ``BundleBasedDirectRunner`` refuses it ("was not replaced as
expected") and, with that worked around, fails in ``Watch`` ("restriction
was neither claimed nor checkpointed"). A stateful DoFn of our own that
polls on a processing-time timer fired once and never again on the
``BundleBasedDirectRunner`` (its bounded impulse's watermark passes the end
of the global window at once). Prism, which could run
``MatchContinuously``, downloads its binary on first use. One bounded
in-process job per window runs on every machine and keeps the batch
command's readers, writers and scores exactly. The job's steps are
`pipeline.cli.job.build`'s; `ReadMatchedFiles` takes the matched files as
``MatchContinuously`` would give them, so a streaming build can replace
the loop here without new reading code.

The job runs in this process on the DirectRunner (one worker, the model
loaded once and probed before the first poll): no warm or cold worker
processes. Once a window's shards are in place, its files are added to
``OUTDIR/_WATCHED.jsonl`` (`pipeline.io.outdir.add_watched_files`): a later
run into the same ``OUTDIR`` skips them, and scores the files a stop left
unscored.
"""

import argparse
import csv
import io
import logging
import os
import re
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (DirectOptions,
                                                  PipelineOptions,
                                                  StandardOptions)
from apache_beam.runners.runner import PipelineState

from pipeline.cli import summary
from pipeline.cli.job import build, load_scorer
from pipeline.cli.model_updates import BundleUpdates
from pipeline.cli.preflight import UsageError, check_output
from pipeline.io import inputs, outdir
from pipeline.local import scaling, watchdog
from runtime import collector, console, signals
from runtime.argv import flag_given

_LOGGER = logging.getLogger(__name__)

# The output formats a watched window is written in.
WATCH_FORMATS = ('jsonl', 'csv')
# The exit status of a watch that a stop signal ended (Ctrl-C's, 128 + 2),
# whichever signal it was: stopping is how a watch ends.
STOPPED_STATUS = 130
# The job of one window: in this process, one worker.
_WILDCARDS = re.compile(r'[*?[]')
_JOB_FLAGS = ['--direct_running_mode', 'in_memory', '--direct_num_workers',
              '1']


class Window(NamedTuple):
  """A fixed window of wall-clock time, ``[start, end)`` in epoch seconds."""
  start: float
  end: float


def window_of(secs: float, length: int) -> Window:
  """The window of ``length`` seconds that holds ``secs``, aligned to the
  epoch as ``FixedWindows(length)`` aligns them."""
  start = secs // length * length
  return Window(start, start + length)


class Totals:
  """What a watch wrote so far: windows, documents scored, errors."""
  def __init__(self):
    self.windows = 0
    self.scored = 0
    self.errors = 0

  def add(self, counts: dict[str, int]) -> None:
    """Adds one window's ``{'scored', 'errors'}``."""
    self.windows += 1
    self.scored += counts['scored']
    self.errors += counts['errors']


class Stopped:
  """How a watch ended: its one line and its exit status.

  Args:
    signal_name: the stop signal's name.
    output: the output folder.
    totals: what was written.
    files: the files this run took.
    pending: the files taken whose window was not written.
  """
  def __init__(self, signal_name: str, output: str, totals: Totals,
               files: int, pending: int):
    self.exit_status = STOPPED_STATUS
    line = (f'Stopped by {signal_name}: watched {_plural(files, "file")}; '
            f'wrote {_plural(totals.windows, "window")} '
            f'({_plural(totals.scored, "document")} scored, '
            f'{_plural(totals.errors, "error")}) under {output}')
    if pending:
      line += (f'; {_plural(pending, "file")} of the last window '
               f'{"was" if pending == 1 else "were"} not scored')
    self.line = line + '.'
    self.summary = {'watch': True, 'windows': totals.windows,
                    'scored': totals.scored, 'errors': totals.errors,
                    'files': files, 'pending': pending}


def _plural(n: int, word: str) -> str:
  return f'{n:,} {word}{"" if n == 1 else "s"}'


def check_watch(args: Any, options: PipelineOptions,
                argv: Sequence[str]) -> None:
  """The usage rules of ``--watch``, before any work.

  Raises:
    UsageError: a remote or job-service runner, worker processes asked
      for, an output format other than JSONL or CSV, or an ``--input`` that
      names a directory, or a folder on this machine that is not there.
  """
  if not scaling.is_local(options):
    runner = options.view_as(StandardOptions).runner
    raise UsageError(f'--runner {runner}: --watch runs on this machine\'s '
                     f'DirectRunner only; leave --runner out.')
  direct = options.view_as(DirectOptions)
  if flag_given(argv, 'direct_running_mode') and (
      direct.direct_running_mode != 'in_memory'):
    raise UsageError(f'--direct_running_mode {direct.direct_running_mode}: '
                     f'--watch scores in this process; leave it out.')
  if flag_given(argv, 'direct_num_workers') and (
      direct.direct_num_workers != 1):
    raise UsageError(f'--direct_num_workers {direct.direct_num_workers}: '
                     f'--watch scores in this process with one worker; '
                     f'leave it out.')
  if args.output_format not in WATCH_FORMATS:
    raise UsageError(f'--format {args.output_format}: --watch writes '
                     f'{" or ".join(WATCH_FORMATS)}; give --format jsonl or '
                     f'--format csv.')
  if outdir.is_local(args.input):
    if os.path.isdir(args.input):
      raise UsageError(f'--input {args.input}: is a directory; give a file '
                       f'pattern such as '
                       f'{os.path.join(args.input, "*.jsonl")}.')
    folder = os.path.dirname(_WILDCARDS.split(args.input, 1)[0]) or '.'
    if not os.path.isdir(folder):
      raise UsageError(f'--input {args.input}: there is no folder {folder} '
                       f'to watch; create it, or fix the pattern.')


class Watcher:
  """Follows ``--input`` and scores each window's new files.

  Args:
    args: the command's options.
    argv: the command line (Beam's options among it).
    scorer: the `ScoreDocuments` every window's job uses.
    plan: the jobs' plan (in process, one worker).
    updates: with ``--model_updates``, the bundle that scores each window
      (`pipeline.cli.model_updates`) in place of ``scorer``; its records then
      carry ``model_id``.
    clock: the wall clock (epoch seconds).
    sleep: waits so many seconds.
  """
  def __init__(self, args: Any, argv: Sequence[str], scorer, plan, *,
               updates: Optional[BundleUpdates] = None,
               clock: Callable[[], float] = time.time,
               sleep: Callable[[float], None] = time.sleep):
    self._args = args
    self._argv = list(argv)
    self._scorer = scorer
    self._plan = plan
    self._updates = updates
    self._clock = clock
    self._sleep = sleep
    # Files an earlier run into this folder scored (`outdir.watched_files`).
    self.earlier = {e['path'] for e in outdir.watched_files(args.output)}
    self.seen: set[str] = set(self.earlier)
    self.pending: list[Any] = []
    self.totals = Totals()
    self._window: Optional[Window] = None

  def poll(self) -> list[Any]:
    """Matches ``--input`` once; returns the ``FileMetadata`` of the files
    not seen before, now seen."""
    try:
      found = inputs.match_inputs(self._args.input, self._args.output)
    except Exception as e:  # pylint: disable=broad-except
      # A folder that is briefly missing (being replaced) is no failure.
      _LOGGER.debug('Could not match %s: %s', self._args.input, e)
      return []
    new = sorted((m for m in found if m.path not in self.seen and not (
        outdir.is_local(m.path) and os.path.isdir(m.path))),
                 key=lambda m: m.path)
    self.seen.update(m.path for m in new)
    return new

  def step(self) -> None:
    """One poll: a window that has ended is scored first."""
    if self._updates is not None:
      self._updates.poll()
    now = self._clock()
    window = window_of(now, self._args.window_secs)
    if self._window is not None and window != self._window:
      self.flush()
    self._window = window
    new = self.poll()
    if new:
      _LOGGER.debug('Matched %d new files: %s', len(new),
                    [m.path for m in new])
      self.pending.extend(new)

  def flush(self) -> None:
    """Scores the pending files into the current window's shards."""
    files, window = self.pending, self._window
    if not files or window is None:
      return
    names = outdir.window_names(*window)
    output = self._args.output
    counts = None
    started = time.monotonic()
    try:
      counts = self._run_job(files, names)
    finally:
      if counts is None:  # Stopped or failed: the window is whole or absent.
        outdir.remove_temporary_files(output)
        if all(outdir.whole_shard_set(output, n) for n in names):
          # Every shard was in place when the stop came: it is kept.
          self._done(window, files, names, self._count_records(names),
                     started)
        else:
          outdir.remove_named_shards(output, names)
    self._done(window, files, names, counts, started)

  def _done(self, window: Window, files: list[Any], names: tuple[str, str],
            counts: dict[str, int], started: float) -> None:
    """Records a window written whole and says so in one line."""
    self.pending = []
    label = names[0][len(outdir.SCORES_PREFIX) + 1:]
    # Whole, or not at all: a stop waits for it (`runtime.signals.held`).
    with signals.held():
      if self._args.output_format == 'jsonl':
        outdir.remove_empty_jsonl(self._args.output, names[0])
      outdir.add_watched_files(self._args.output, [m.path for m in files],
                               label)
      # Counted with its record: a stop held here comes out of the block,
      # and the stop line must count the window it kept.
      self.totals.add(counts)
    print(f'Window {label}: {_plural(len(files), "file")}, '
          f'{counts["scored"]:,} scored, {_plural(counts["errors"], "error")} '
          f'in {time.monotonic() - started:.1f} s', flush=True)

  def _count_records(self, names: tuple[str, str]) -> dict[str, int]:
    """The records in a window's shards, where the job's counters were lost
    to a stop that came after its last rename."""
    counts = {}
    for key, name in zip(('scored', 'errors'), names):
      total = 0
      for path in outdir.named_shards(self._args.output, [name]):
        with FileSystems.open(path) as f:
          text = f.read().decode('utf-8')
        if key == 'scored' and self._args.output_format == 'csv':
          total += max(0, len(list(csv.reader(io.StringIO(text)))) - 1)
        else:
          total += sum(1 for line in text.splitlines() if line.strip())
      counts[key] = total
    return counts

  def _run_job(self, files: list[Any], names: tuple[str, str]
               ) -> dict[str, int]:
    """Scores ``files`` into the shards ``names``; returns the job's
    counters (`pipeline.cli.summary.summarize`)."""
    options = PipelineOptions(self._argv + _JOB_FLAGS)
    pipeline = beam.Pipeline(options=options)
    updates = self._updates
    build(pipeline, self._args,
          self._scorer if updates is None else updates.scorer, self._plan,
          files=files, names=names,
          model_id=None if updates is None else updates.path)
    with console.others_silenced():
      result = watchdog.run_and_wait(pipeline, in_process=True)
    if result.state is not None and result.state != PipelineState.DONE:
      raise RuntimeError(f'the pipeline ended in state {result.state}.')
    return summary.summarize(result)

  def follow(self) -> None:
    """Polls and scores until a stop signal (`signals.Interrupted`)."""
    interval = self._args.watch_interval_secs
    while True:
      began = self._clock()
      self.step()
      # Wake at the next poll, or as the window ends, whichever comes first.
      wake = min(began + interval,
                 window_of(began, self._args.window_secs).end)
      self._sleep(max(0.0, wake - self._clock()))


def run(args: Any, options: PipelineOptions,
        argv: Sequence[str]) -> Stopped:
  """Checks, loads the bundle, and watches until a stop signal.

  Returns:
    `Stopped`: what was written and the line to print.

  Raises:
    UsageError: a rule of `check_watch`, an unwritable ``--output`` or a
      bad bundle.
    Exception: a window's job failed (its partial shards removed).
  """
  check_watch(args, options, argv)
  watcher = None
  try:
    check_output(args.output)
    job_argv = list(argv) + _JOB_FLAGS
    try:
      plan = scaling.plan(PipelineOptions(job_argv), job_argv, size=0,
                          tf_threads=args.tf_threads,
                          split_bytes=args.split_bytes, rebalance='never')
    except ValueError as e:
      raise UsageError(str(e)) from e
    # Loaded and probed once, here: every window's job runs in this process.
    scorer = load_scorer(args, tf_threads=plan.tf_threads, probe_model=True)
    updates = None
    if args.model_updates is not None:
      # One job per window: a new bundle is the scorer the next jobs get.
      updates = BundleUpdates(
          args.model_updates, args.model, scorer,
          lambda path: load_scorer(argparse.Namespace(**{**vars(args),
                                                        'model': path}),
                                   tf_threads=plan.tf_threads,
                                   probe_model=True),
          batch_tokens=args.batch_tokens)
    watcher = Watcher(args, argv, scorer, plan, updates=updates)
    # Paused by the entry points while they imported (`runtime.collector`);
    # what is loaded by now stays until the process ends.
    collector.resume(freeze=True)
    removed = outdir.remove_temporary_files(args.output)
    if removed:
      _LOGGER.debug('Removed %d temporary folders of a killed run', removed)
    earlier = (f' ({_plural(len(watcher.earlier), "file")} scored by an '
               f'earlier run skipped)' if watcher.earlier else '')
    print(f'Watching {args.input} every {args.watch_interval_secs:g} s in '
          f'windows of {args.window_secs} s into {args.output}{earlier}; '
          f'Ctrl-C or SIGTERM stops.', flush=True)
    watcher.follow()
  except signals.Interrupted as e:
    signals.handled()
    signals.stop_children()
    outdir.remove_temporary_files(args.output)
    if watcher is None:
      return Stopped(e.name, args.output, Totals(), 0, 0)
    return Stopped(e.name, args.output, watcher.totals,
                   len(watcher.seen - watcher.earlier), len(watcher.pending))
  raise AssertionError('follow() returns only by an exception')
