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

import sys
from typing import NoReturn

from runtime import process_exit

# This module, as ``python -m`` runs it.
MODULE = 'runtime.sdk_worker'


def harness() -> int:
  """Runs Beam's SDK harness with this process's command line and
  environment (what Beam hands a worker); returns 0 when it ends."""
  from apache_beam.runners.worker import sdk_worker_main  # pylint: disable=import-outside-toplevel
  sdk_worker_main.main(sys.argv)
  return 0


def main() -> NoReturn:
  """``python -m runtime.sdk_worker``: the harness, then a quick exit."""
  process_exit.run_command(harness)


if __name__ == '__main__':
  main()
