"""Beam's SDK worker, as a local job's worker processes run it.

Why this module exists: a worker process that imported TensorFlow takes
about 1.5 s to exit after its harness returned (`runtime.process_exit`).
The local jobs of this package (the DirectRunner's worker processes, cold or
warm) start their workers with ``python -m runtime.sdk_worker`` instead of
Beam's ``python -m apache_beam.runners.worker.sdk_worker_main``: the same
harness, followed by `process_exit.run_command`, which skips the teardown and
exits with the harness's own status (``sys.exit(n)`` keeps n). A harness that
fails with an uncaught exception exits the normal way, with its traceback and
status 1. Dataflow, Flink and Spark start Beam's own entry point, so nothing
here is part of their workers.
"""

import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from typing import NoReturn

from runtime import process_exit

# This module, as ``python -m`` runs it.
MODULE = 'runtime.sdk_worker'
# Where Beam names the runner's control service for a worker process: an
# ``ApiServiceDescriptor`` in protobuf's text format (``url: "host:port"``).
CONTROL_ENV = 'CONTROL_API_SERVICE_DESCRIPTOR'
# The pid of the command whose local job started this worker (set by
# `pipeline.cli.entry_points` for the processes it starts).
LAUNCHER_ENV = 'JA_DOC_SCORER_LAUNCHER_PID'
_URL = re.compile(r'\burl:\s*"([^"]+)"')


def runner_reachable(timeout_secs: float = 2.0) -> bool:
  """Whether the runner's control service, as this process's environment
  names it, accepts a connection (True where none is named).

  A worker process that a stopped run's runner started just before it
  exited would otherwise wait 60 s for that service (Beam's harness waits
  that long for its control channel), holding the run's console open.
  """
  # Read before Beam is imported (which takes seconds, and logs).
  found = _URL.search(os.environ.get(CONTROL_ENV, ''))
  if not found:
    return True  # Not ours to judge: Beam reports it.
  host, _, port = found.group(1).rpartition(':')
  try:
    with socket.create_connection((host or 'localhost', int(port)),
                                  timeout=timeout_secs):
      return True
  except ValueError:
    return True
  except OSError:
    return False


def harness() -> int:
  """Runs Beam's SDK harness with this process's command line and
  environment (what Beam hands a worker); returns 0 when it ends, and 1,
  quietly, when the runner is gone (`runner_reachable`) before or while it
  runs."""
  if not runner_reachable():
    return 1
  from apache_beam.runners.worker import sdk_worker_main  # pylint: disable=import-outside-toplevel
  try:
    sdk_worker_main.main(sys.argv)
  except Exception:  # pylint: disable=broad-except
    if runner_reachable(timeout_secs=0.5):
      raise  # A failure of the worker's own: its traceback is the report.
    # The runner went away (its job was stopped), closing this worker's
    # channels: nobody is left to read a traceback.
    return 1
  return 0


def exit_with_launcher(poll_secs: float = 0.5) -> bool:
  """Ends this process (status 1) once the command that started its job is
  gone, as `LAUNCHER_ENV` names it; returns whether it watches.

  A worker process that a stopped run's runner started as it exited would
  otherwise wait out Beam's 60 s for a control channel that never comes.
  """
  pid = os.environ.get(LAUNCHER_ENV, '')
  if not pid.isdigit():
    return False
  import psutil  # pylint: disable=import-outside-toplevel

  def gone() -> bool:
    try:
      return psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
      return True
    except psutil.Error:
      return False

  def watch() -> None:
    while not gone():
      time.sleep(poll_secs)
    os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watch, name='launcher-watch', daemon=True).start()
  return True


def log_in_default_format() -> None:
  """Gives this worker process's root logger logging's default format.

  The launcher's console (`runtime.console`) knows a worker's records, and
  drops them with their tracebacks, by that format (``LEVEL:logger:``).
  Without a handler, Python's last-resort handler prints a record's bare
  message, and a failing bundle's traceback reached the console. (Beam's
  import used to configure logging as a side effect, by warning that
  apitools was missing; with ``apache-beam[gcp]`` installed it does not.)
  """
  if not logging.getLogger().handlers:
    logging.basicConfig()


def main() -> NoReturn:
  """``python -m runtime.sdk_worker``: the harness, then a quick exit.

  Ctrl-C reaches the whole process group: the launcher handles it and stops
  the job, and this process ends without a traceback of its own, as Beam's
  worker pool starts its workers.
  """
  signal.signal(signal.SIGINT, signal.SIG_DFL)
  # A warm worker also inherits SIGINT blocked (`runtime.signals.
  # start_ignoring`).
  signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
  log_in_default_format()
  exit_with_launcher()
  process_exit.run_command(harness)


if __name__ == '__main__':
  main()
