"""Runs a pipeline so that a dead SDK worker never hangs it.

Beam 2.77 runs Python SDK workers as separate processes on the DirectRunner
with ``--direct_running_mode multi_processing`` and behind a portable job
service with an external worker pool. When such a worker process dies:

* while it works on a bundle, Beam sees its data channel close and fails the
  job within seconds;
* before its first bundle (while it starts up, or when it cannot start at
  all), Beam's Python runner waits for that worker's data channel forever.
  The DirectRunner learns of the exit, but only in a background thread
  that nothing waits on (`runtime.internals.SDK_WORKER_THREAD`).

:func:`run_and_wait` closes both gaps for a run whose runner lives in this
process: it notices that report, gives Beam ``grace_secs`` to fail on its own,
and otherwise stops the run itself. Either way it stops the run's remaining
worker processes and raises :class:`WorkerDied`. A run that is stopped for
any other reason (a timeout, a stop signal: `runtime.signals`) is cancelled
the same way. Where the runner lives in this process, its thread is stopped
too (it starts worker processes stage by stage, and in-process workers are
its own), so that nothing writes to the output once this function has
raised. A portable job service runs
its workers where this process cannot see them; there ``--job_timeout_secs``
bounds the wait. What the run left in its output folder is the caller's to
clean up (`pipeline.io.outdir.finish`), on every failure alike.
"""


import logging
import threading
import time
from typing import Any, Callable, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import (PipelineOptions,
                                                  StandardOptions)
from apache_beam.runners.runner import PipelineResult

from pipeline.local import processes
from pipeline.local.machine import is_local_runner
from runtime import internals, signals

_LOGGER = logging.getLogger(__name__)
# How long a stopped run may take to stop its thread and worker processes.
STOP_SECS = 5.0

class RunAborted(RuntimeError):
  """The run was stopped before it finished."""
  def explain(self, outdir: str) -> str:
    """The command's error line, once ``outdir`` was cleaned up."""
    return f'{self}; its partial output was removed from {outdir}.'


class WorkerDied(RunAborted):
  """An SDK worker process died while the job ran.

  Args:
    reason: what Beam reported of the exit.
  """
  def __init__(self, reason: str):
    super().__init__(f'an SDK worker process died during the run ({reason})')
    self.reason = reason

  def explain(self, outdir: str) -> str:
    return (f'{self}; the job was stopped and its partial output removed '
            f'from {outdir}. Rerun the same command to write the complete '
            f'output.')


class JobTimedOut(RunAborted):
  """The job ran longer than ``--job_timeout_secs``."""
  def __init__(self, timeout: float):
    super().__init__(f'the job ran longer than --job_timeout_secs='
                     f'{timeout:g}; it was cancelled')
    self.timeout = timeout


class WatchdogOptions(PipelineOptions):
  """How long to wait for a job (Beam's runner options come on top)."""
  @classmethod
  def _add_argparse_args(cls, parser):
    parser.add_argument(
        '--job_timeout_secs', type=float, default=0,
        help='cancel the job, remove its partial output and fail after this '
        'many seconds (0: no limit). A portable job service waits forever '
        'for a worker that dies before its first bundle; this bounds it.')


def _stop_run(thread: threading.Thread, runner_here: bool, in_process: bool,
              wait_secs: float = STOP_SECS) -> None:
  """Stops a run: its thread, when the runner lives in this process, and
  its SDK worker processes, including any the thread starts meanwhile.

  Raises `runtime.signals.ThreadStopped` in the run's thread (where the
  DirectRunner starts worker processes, and where in-process workers read
  and write) and stops worker processes, until none is left twice in a row
  and, for ``in_process`` workers, the thread has ended; or until
  ``wait_secs`` have passed. (A runner whose worker processes are gone may
  wait on them forever inside a lock, where no exception reaches it; it
  writes nothing itself.) Then lets Beam's threads that watch the workers
  report their exits.
  """
  deadline = time.monotonic() + wait_secs
  calm = 0
  while True:
    if runner_here and thread.is_alive():
      signals.raise_in_thread(thread, signals.ThreadStopped)
    found = processes.worker_processes()
    processes.stop(found, wait_secs=1.0)
    thread.join(0.1)
    calm = 0 if found else calm + 1
    if calm >= 2 and not (in_process and thread.is_alive()):
      break
    if time.monotonic() > deadline:
      _LOGGER.warning('The run did not stop within %.0f s', wait_secs)
      break
  for watcher in threading.enumerate():
    if watcher.name == internals.SDK_WORKER_THREAD:
      watcher.join(max(0.0, min(0.5, deadline - time.monotonic())))


class _WorkerExits:
  """Collects the worker exits Beam reports from its watcher threads."""
  def __init__(self):
    self.exits: list[tuple[float, str]] = []
    self.stopping = False
    self._previous = None

  def _hook(self, args):
    exit_error = internals.sdk_worker_exit(args)
    if exit_error is not None:
      # Said once, by the command's error line (`WorkerDied`); nothing when
      # the run is being stopped (the exit is the stop's doing).
      _LOGGER.debug('SDK worker process exited: %s', exit_error)
      if not self.stopping and signals.received() is None:
        self.exits.append((time.monotonic(), exit_error))
      return
    self._previous(args)

  def __enter__(self):
    self._previous = threading.excepthook
    threading.excepthook = self._hook
    return self

  def __exit__(self, *exc):
    if threading.excepthook == self._hook:  # Not replaced since (a stop).
      threading.excepthook = self._previous


def _runs_in_process(pipeline: beam.Pipeline) -> bool:
  """Whether ``pipeline.run()`` itself runs the job (the DirectRunner)."""
  return is_local_runner(pipeline.options.view_as(StandardOptions).runner)


def run_and_wait(pipeline: beam.Pipeline, *,
                 grace_secs: float = 5.0,
                 poll_secs: float = 0.5,
                 on_start: Optional[Callable[[PipelineResult], None]] = None,
                 in_process: bool = False) -> PipelineResult:
  """Runs ``pipeline``, waits for it and never hangs on a dead worker.

  Args:
    pipeline: the pipeline to run; ``--job_timeout_secs`` among its options
      bounds the whole run.
    grace_secs: how long Beam may take to fail by itself after a worker
      process exited, before the run is stopped here.
    poll_secs: how often to look at the run.
    on_start: called with the PipelineResult as soon as the job started
      (e.g. to poll its metrics), before it is waited for.
    in_process: whether the job's workers are the run's own thread (the
      DirectRunner in memory): a stopped run waits for that thread to end.

  Returns:
    The finished PipelineResult.

  Raises:
    WorkerDied: an SDK worker process died.
    JobTimedOut: the run took longer than ``--job_timeout_secs``.
    Exception: whatever else the run raised.
  """
  timeout = pipeline.options.view_as(WatchdogOptions).job_timeout_secs
  box: dict[str, Any] = {}
  done = threading.Event()

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
    submit()

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
          raise WorkerDied(exits.exits[0][1])
        if timeout and now - start > timeout:
          raise JobTimedOut(timeout)
    except BaseException:
      exits.stopping = True
      if 'result' in box:
        try:
          box['result'].cancel()
        except Exception as e:  # pylint: disable=broad-except
          # After a stop signal the job server may have stopped with it.
          (_LOGGER.debug if signals.received() else _LOGGER.warning)(
              'Could not cancel the job: %s', e)
      # Nothing of the run may write to the output once this raises.
      _stop_run(thread, _runs_in_process(pipeline), in_process)
      raise
    exits.stopping = True
    if 'error' not in box:
      return box['result']
    error = box['error']
    if exits.exits:
      raise WorkerDied(exits.exits[0][1]) from error
    if internals.CLOSED_CHANNEL in str(error):
      raise WorkerDied(f'a worker closed its data channel: '
                       f'{internals.CLOSED_CHANNEL}') from error
    raise error
