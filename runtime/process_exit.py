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
runner) and ends the process with ``os._exit``. `run_command` runs a
command's main function and ends with its status that way: the commands do,
and so do the worker processes of a local job (`runtime.sdk_worker`), whose
status is the harness's own. A Dataflow, Flink or Spark worker runs Beam's
entry point, and exits as Beam made it to.
"""

import os
import sys
from typing import Callable, NoReturn

from runtime import internals

# Beam's SDK worker entry point (``python -m ...``).
SDK_WORKER_MAIN = 'apache_beam.runners.worker.sdk_worker_main'


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
