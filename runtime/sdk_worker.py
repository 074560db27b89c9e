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

import os
import socket
import sys
from typing import NoReturn

from runtime import process_exit

# This module, as ``python -m`` runs it.
MODULE = 'runtime.sdk_worker'
# Where Beam names the runner's control service for a worker process.
CONTROL_ENV = 'CONTROL_API_SERVICE_DESCRIPTOR'


def runner_reachable(timeout_secs: float = 2.0) -> bool:
  """Whether the runner's control service, as this process's environment
  names it, accepts a connection (True where none is named).

  A worker process that a stopped run's runner started just before it
  exited would otherwise wait 60 s for that service (Beam's harness waits
  that long for its control channel), holding the run's console open.
  """
  descriptor = os.environ.get(CONTROL_ENV)
  if not descriptor:
    return True
  # pylint: disable=import-outside-toplevel
  from apache_beam.portability.api import endpoints_pb2
  from google.protobuf import text_format
  endpoint = endpoints_pb2.ApiServiceDescriptor()
  try:
    text_format.Merge(descriptor, endpoint)
    host, _, port = endpoint.url.rpartition(':')
    with socket.create_connection((host or 'localhost', int(port)),
                                  timeout=timeout_secs):
      return True
  except (ValueError, text_format.ParseError):
    return True  # Not ours to judge: Beam reports it.
  except OSError:
    return False


def harness() -> int:
  """Runs Beam's SDK harness with this process's command line and
  environment (what Beam hands a worker); returns 0 when it ends, 1 at once
  when the runner is gone (`runner_reachable`)."""
  if not runner_reachable():
    return 1
  from apache_beam.runners.worker import sdk_worker_main  # pylint: disable=import-outside-toplevel
  sdk_worker_main.main(sys.argv)
  return 0


def main() -> NoReturn:
  """``python -m runtime.sdk_worker``: the harness, then a quick exit."""
  process_exit.run_command(harness)


if __name__ == '__main__':
  main()
