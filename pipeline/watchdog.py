"""Runs a pipeline so that a dead SDK worker never hangs it.

Beam 2.77 runs Python SDK workers as separate processes on the DirectRunner
with ``--direct_running_mode multi_processing`` and behind a portable job
service with an external worker pool. When such a worker process dies:

* while it works on a bundle, Beam sees its data channel close and fails the
  job within seconds (``Channel closed prematurely``), but it leaves the file
  sinks' ``beam-temp-*`` folders in the output directory;
* before its first bundle (while it starts up, or when it cannot start at
  all), Beam's Python runner waits for that worker's data channel forever.
  The DirectRunner learns of the exit, but only in a background thread
  (``Worker subprocess exited with return code N``) that nothing waits on.

:func:`run_and_wait` closes both gaps for a run whose runner lives in this
process: it notices that report, gives Beam ``grace_secs`` to fail on its own,
and otherwise stops the run itself. Either way it stops the run's remaining
worker processes, removes what the run left in the output directory and
raises :class:`WorkerDied`. A portable job service runs its workers where this
process cannot see them; there ``--job_timeout_secs`` bounds the wait.
"""

import glob
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (PipelineOptions,
                                                  StandardOptions)
from apache_beam.runners.runner import PipelineResult

from model.storage import remove_tree
from pipeline import warm_workers
from pipeline.writers import ERRORS_PREFIX, SCORES_PREFIX

_LOGGER = logging.getLogger(__name__)

# What Beam's SubprocessSdkWorker thread is called and raises when its worker
# process exits with a non-zero code (runners/portability/local_job_service).
_WORKER_THREAD = 'run_worker'
# What Beam's runner raises when a worker's data channel closes mid-bundle.
_CLOSED_CHANNEL = 'Channel closed prematurely'
# Command-line marks of an SDK worker process started by the DirectRunner:
# Beam's own, or `pipeline.warm_workers` (its clients and warm processes).
_WORKER_MARKS = (warm_workers.SDK_WORKER_MAIN.encode(),
                 warm_workers.MODULE.encode())
# The job's output shards, earlier names included (``errors-*``).
OUTPUT_SHARDS = (f'{SCORES_PREFIX}-*-of-*', f'{ERRORS_PREFIX}-*-of-*',
                 'errors-*-of-*')
_TEMP_DIRS = 'beam-temp-*'


class RunAborted(RuntimeError):
  """The run was stopped; its partial output was removed."""


class WorkerDied(RunAborted):
  """An SDK worker process died while the job ran."""


class JobTimedOut(RunAborted):
  """The job ran longer than ``--job_timeout_secs``."""


class WatchdogOptions(PipelineOptions):
  """How long to wait for a job (Beam's runner options come on top)."""
  @classmethod
  def _add_argparse_args(cls, parser):
    parser.add_argument(
        '--job_timeout_secs', type=float, default=0,
        help='cancel the job, remove its partial output and fail after this '
        'many seconds (0: no limit). A portable job service waits forever '
        'for a worker that dies before its first bundle; this bounds it.')


def _process_table() -> dict[int, tuple[int, bytes]]:
  """``pid -> (parent pid, command line)`` of every visible process."""
  table = {}
  try:
    names = os.listdir('/proc')
  except OSError:
    return table
  for name in names:
    if not name.isdigit():
      continue
    try:
      with open(f'/proc/{name}/stat', 'rb') as f:
        stat = f.read()
      with open(f'/proc/{name}/cmdline', 'rb') as f:
        cmdline = f.read().replace(b'\0', b' ')
    except OSError:
      continue  # It exited meanwhile.
    # The command name in parentheses may hold spaces and parentheses.
    fields = stat.rsplit(b')', 1)[1].split()
    table[int(name)] = (int(fields[1]), cmdline)
  return table


def worker_processes(root: Optional[int] = None) -> list[int]:
  """Pids of SDK worker processes below ``root`` (default: this process).

  Reads ``/proc``; gives nothing where there is none.
  """
  table = _process_table()
  children: dict[int, list[int]] = {}
  for pid, (ppid, _) in table.items():
    children.setdefault(ppid, []).append(pid)
  found, todo = [], [os.getpid() if root is None else root]
  while todo:
    for pid in children.get(todo.pop(), ()):
      todo.append(pid)
      if any(mark in table[pid][1] for mark in _WORKER_MARKS):
        found.append(pid)
  return found


def _stop_workers(wait_secs: float = 5.0) -> None:
  """Terminates this process's SDK workers and waits for Beam to see it."""
  pids = worker_processes()
  for sig in (signal.SIGTERM, signal.SIGKILL):
    for pid in pids:
      try:
        os.kill(pid, sig)
      except OSError:
        pass
    deadline = time.monotonic() + wait_secs
    while time.monotonic() < deadline:
      pids = worker_processes()
      if not pids:
        break
      time.sleep(0.1)
    if not pids:
      break
  # Beam's threads that watch the workers report their exits; let them.
  for thread in threading.enumerate():
    if thread.name == _WORKER_THREAD:
      thread.join(wait_secs)


def _snapshot(outdir: str) -> dict[str, Any]:
  """Output shards and temporary folders in ``outdir``, with their mtimes.

  A local folder is listed as itself (Beam's match finds files only, and a
  sink's folder may still be empty); on object stores a folder exists only
  through the files below it.
  """
  found = {}
  patterns = [FileSystems.join(outdir, name) for name in OUTPUT_SHARDS]
  patterns.append(FileSystems.join(outdir, _TEMP_DIRS, '*'))
  for result in FileSystems.match(patterns):
    for meta in result.metadata_list:
      found[meta.path] = getattr(meta, 'last_updated_in_seconds', None)
  if FileSystems.get_scheme(outdir) in (None, 'file'):
    local = outdir[len('file://'):] if outdir.startswith('file://') else outdir
    for path in glob.glob(os.path.join(glob.escape(local), _TEMP_DIRS)):
      found[path] = os.path.getmtime(path)
  return found


def _temp_dir(path: str) -> Optional[str]:
  """The ``beam-temp-*`` folder that is or holds ``path``, if any."""
  parts = path.replace(os.sep, '/').split('/')
  for i, part in enumerate(parts):
    if part.startswith('beam-temp-'):
      return '/'.join(parts[:i + 1])
  return None


def remove_partial_output(outdir: str, before: dict[str, Any]) -> list[str]:
  """Removes what a failed run left in ``outdir``; returns what it removed.

  That is every ``beam-temp-*`` folder that was not there before the run and,
  if the run had already put any shard under its final name, every
  ``scores-*``/``errors-*`` shard: an earlier run's set is no longer
  complete once some of its shards were replaced.
  """
  try:
    now = _snapshot(outdir)
  except Exception as e:  # pylint: disable=broad-except
    _LOGGER.warning('Cannot list %s to clean it up: %s', outdir, e)
    return []
  temp_dirs = sorted({_temp_dir(path) for path in now} -
                     {_temp_dir(path) for path in before} - {None})
  shards = [path for path in now if _temp_dir(path) is None]
  touched = [path for path in shards if before.get(path, -1) != now[path]]
  removed = list(temp_dirs)
  for path in temp_dirs:
    remove_tree(path)
  if touched:
    FileSystems.delete(shards)
    removed += shards
  if removed:
    _LOGGER.info('Removed %d partial outputs of the failed run from %s',
                 len(removed), outdir)
  return removed


class _WorkerExits:
  """Collects the worker exits Beam reports from its watcher threads."""
  def __init__(self):
    self.exits: list[tuple[float, str]] = []
    self.stopping = False
    self._previous = None

  def _hook(self, args):
    if (args.thread is not None and args.thread.name == _WORKER_THREAD and
        isinstance(args.exc_value, RuntimeError)):
      if not self.stopping:
        _LOGGER.error('SDK worker process died: %s', args.exc_value)
        self.exits.append((time.monotonic(), str(args.exc_value)))
      return
    self._previous(args)

  def __enter__(self):
    self._previous = threading.excepthook
    threading.excepthook = self._hook
    return self

  def __exit__(self, *exc):
    threading.excepthook = self._previous


def _died_message(reason: str, outdir: str) -> str:
  return (f'an SDK worker process died during the run ({reason}); the job '
          f'was stopped and its partial output removed from {outdir}. Rerun '
          'the same command to write the complete output.')


def _runs_in_process(pipeline: beam.Pipeline) -> bool:
  """Whether ``pipeline.run()`` itself runs the job (the DirectRunner)."""
  runner = pipeline.options.view_as(StandardOptions).runner
  return runner in (None, '', 'DirectRunner', 'direct', 'BundleBasedDirectRunner',
                    'SwitchingDirectRunner')


def run_and_wait(pipeline: beam.Pipeline, outdir: str, *,
                 grace_secs: float = 5.0,
                 poll_secs: float = 0.5,
                 on_start: Optional[Callable[[PipelineResult], None]] = None,
                 clean_up_output: bool = True) -> PipelineResult:
  """Runs ``pipeline``, waits for it and never hangs on a dead worker.

  Args:
    pipeline: the pipeline to run; ``--job_timeout_secs`` among its options
      bounds the whole run.
    outdir: the directory its file sinks write to; a failed run leaves no
      ``beam-temp-*`` folder and no shard of its own there.
    grace_secs: how long Beam may take to fail by itself after a worker
      process exited, before the run is stopped here.
    poll_secs: how often to look at the run.
    on_start: called with the PipelineResult as soon as the job started
      (e.g. to poll its metrics), before it is waited for.
    clean_up_output: remove what a failed run left in ``outdir`` here. Off
      for a caller that restores ``outdir`` itself (``pipeline.score``
      sets earlier outputs aside and puts them back), which then neither
      lists ``outdir`` before the run nor cleans it twice.

  Returns:
    The finished PipelineResult.

  Raises:
    WorkerDied: an SDK worker process died.
    JobTimedOut: the run took longer than ``--job_timeout_secs``.
    Exception: whatever else the run raised, after the same clean-up.
  """
  timeout = pipeline.options.view_as(WatchdogOptions).job_timeout_secs
  before = None  # Then nothing can be told apart as this run's.
  if clean_up_output:
    try:
      before = _snapshot(outdir)
    except Exception as e:  # pylint: disable=broad-except
      # The run reports an unusable output path better than a listing does.
      _LOGGER.debug('Cannot list %s: %s', outdir, e)
  box: dict[str, Any] = {}
  done = threading.Event()

  def clean_up():
    if before is not None:
      remove_partial_output(outdir, before)

  def submit():
    box['result'] = pipeline.run()
    if on_start is not None:
      on_start(box['result'])

  def run():
    try:
      if 'result' not in box:
        submit()
      box['result'].wait_until_finish()
    except BaseException as e:  # pylint: disable=broad-except
      box['error'] = e
    finally:
      done.set()

  if not _runs_in_process(pipeline):
    # Job-service runners return once the job is submitted, and starting a
    # job server (Flink, Spark) installs signal handlers, which only the
    # main thread may do: submit here, wait in the thread.
    try:
      submit()
    except BaseException:
      clean_up()
      raise

  start = time.monotonic()
  with _WorkerExits() as exits:
    # A daemon: a runner stuck on a dead worker must not keep the process.
    thread = threading.Thread(target=run, name='WatchedPipelineRun',
                              daemon=True)
    thread.start()
    try:
      while not done.wait(poll_secs):
        now = time.monotonic()
        if exits.exits and now - exits.exits[0][0] > grace_secs:
          _LOGGER.error('The runner did not stop %.0f s after a worker died; '
                        'stopping the run', grace_secs)
          raise WorkerDied(_died_message(exits.exits[0][1], outdir))
        if timeout and now - start > timeout:
          raise JobTimedOut(
              f'the job ran longer than --job_timeout_secs={timeout:g}; it '
              f'was cancelled and its partial output removed from {outdir}.')
    except BaseException:
      exits.stopping = True
      if 'result' in box:
        try:
          box['result'].cancel()
        except Exception as e:  # pylint: disable=broad-except
          _LOGGER.warning('Could not cancel the job: %s', e)
      _stop_workers()
      clean_up()
      raise
    exits.stopping = True
    if 'error' not in box:
      return box['result']
    error = box['error']
    clean_up()
    if exits.exits:
      raise WorkerDied(_died_message(exits.exits[0][1], outdir)) from error
    if _CLOSED_CHANNEL in str(error):
      raise WorkerDied(_died_message(
          f'a worker closed its data channel: {_CLOSED_CHANNEL}',
          outdir)) from error
    raise error
