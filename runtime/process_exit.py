"""Ends a process whose work is done without Python's interpreter teardown.

Why this module exists: a Python process that imported TensorFlow takes
about 1.5 s to exit after its last statement (measured on the project's
2-core machine: 1.53 s from the end of the main module to the end of the
process, 0.1 s when the teardown is skipped). The interpreter frees
TensorFlow's thousands of modules and objects one by one and runs its C++
destructors; none of it is needed once the work is written. It is paid by the
commands themselves, and by every Beam SDK worker process: the DirectRunner
stops its worker processes one after the other at the end of a job, so a
two-worker job waited about 3 s for them to exit.

`exit_now` flushes the standard streams, runs the ``atexit`` handlers (among
them logging's shutdown, which sends a worker's last log entries to the
runner) and ends the process with ``os._exit``. `exit_quickly_when_done`
arranges the same for an SDK worker process of a local job once its harness
has returned; a worker that fails (an uncaught exception) exits the normal
way, with its error status.

Only this package's own local worker processes end this way: those a local
job's launcher starts, which it marks with `LOCAL_WORKER_ENV` in the
environment they inherit (`local_workers_marked`). A Dataflow, Flink or
Spark worker never carries the mark, and exits as Beam made it to.
"""

import contextlib
import logging
import os
import sys
import threading
from typing import Callable, Iterator, NoReturn

from runtime import internals

_LOGGER = logging.getLogger(__name__)

# Beam's SDK worker entry point (``python -m ...``).
SDK_WORKER_MAIN = 'apache_beam.runners.worker.sdk_worker_main'
# Set to 1 in the environment of the worker processes a local job starts.
LOCAL_WORKER_ENV = 'JA_DOC_SCORER_LOCAL_WORKER'
_installed = False
_lock = threading.Lock()


def _flush_standard_streams() -> None:
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (AttributeError, OSError, ValueError):
      pass


def exit_now(status: int = 0) -> NoReturn:
  """Flushes, runs the ``atexit`` handlers and ends the process at once."""
  _flush_standard_streams()
  try:
    internals.run_atexit_handlers()
  finally:
    _flush_standard_streams()
    os._exit(status)  # pylint: disable=protected-access


def run_command(main: Callable[[], int]) -> NoReturn:
  """Runs a command's ``main()`` and exits with its status (`exit_now`)."""
  try:
    status = main()
  except SystemExit as e:  # argparse: --help, usage errors.
    code = e.code
    if code is not None and not isinstance(code, int):
      print(code, file=sys.stderr)
      code = 1
    status = code or 0
  exit_now(status)


def is_sdk_worker() -> bool:
  """Whether this process is a Beam SDK worker (``sdk_worker_main``)."""
  spec = getattr(sys.modules.get('__main__'), '__spec__', None)
  return getattr(spec, 'name', None) == SDK_WORKER_MAIN


def is_local_worker() -> bool:
  """Whether this process is an SDK worker a local job of this package
  started (`local_workers_marked`)."""
  return is_sdk_worker() and os.environ.get(LOCAL_WORKER_ENV) == '1'


@contextlib.contextmanager
def local_workers_marked() -> Iterator[None]:
  """Marks the worker processes started in the block as local ones.

  For a launcher whose job runs on this machine: the processes Beam's
  DirectRunner starts inherit the environment. The mark is removed when the
  block ends.
  """
  saved = os.environ.get(LOCAL_WORKER_ENV)
  os.environ[LOCAL_WORKER_ENV] = '1'
  try:
    yield
  finally:
    if saved is None:
      os.environ.pop(LOCAL_WORKER_ENV, None)
    else:
      os.environ[LOCAL_WORKER_ENV] = saved


def _exit_if_done() -> None:
  # Called by the threading module as the main thread ends, before
  # interpreter teardown. An uncaught exception was already printed and
  # left in sys.last_value: keep the normal exit and its status then.
  if getattr(sys, 'last_value', None) is not None:
    return
  exit_now(0)


def exit_quickly_when_done(*, force: bool = False) -> bool:
  """Skips interpreter teardown when this local SDK worker process ends.

  Call it from a DoFn's setup (or a model handler's ``load_model``): in any
  process but a local job's worker (`is_local_worker`) it does nothing.
  Idempotent.

  Args:
    force: install even where `is_local_worker` is false (tests).

  Returns:
    Whether the quick exit is installed in this process.
  """
  global _installed  # pylint: disable=global-statement
  if not (force or is_local_worker()):
    return False
  with _lock:
    if not _installed:
      internals.call_when_main_thread_ends(_exit_if_done)
      _installed = True
      _LOGGER.debug('This SDK worker process will exit without teardown')
  return True
