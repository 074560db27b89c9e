"""The SDK worker processes of a local job, found in the process table.

Why this module exists: the watchdog stops a failed run's worker processes,
and the tests and the benchmark count them. All of them find those
processes the same way, here, through psutil: the processes below the
launcher whose command line runs Beam's SDK worker or this package's warm
worker module.
"""

from typing import Optional

import psutil

from runtime import sdk_worker, signals
from runtime.process_exit import SDK_WORKER_MAIN

# `pipeline.local.warm_workers`, as ``python -m`` runs it.
WARM_WORKERS_MODULE = 'pipeline.local.warm_workers'
# Command-line marks of an SDK worker process: Beam's own entry point, the
# one a local job's cold workers run (`runtime.sdk_worker`), or the warm
# worker module (its clients and its warm processes).
WORKER_MARKS = (SDK_WORKER_MAIN, sdk_worker.MODULE, WARM_WORKERS_MODULE)


def command_line(process: psutil.Process) -> str:
  """The process's command line as one string ('' once it is gone)."""
  try:
    return ' '.join(process.cmdline())
  except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
    return ''


def is_worker(process: psutil.Process) -> bool:
  """Whether ``process`` runs an SDK worker (Beam's or a warm one)."""
  command = command_line(process)
  return any(mark in command for mark in WORKER_MARKS)


def worker_processes(root: Optional[int] = None) -> list[psutil.Process]:
  """The SDK worker processes below ``root`` (default: this process)."""
  try:
    children = psutil.Process(root).children(recursive=True)
  except psutil.NoSuchProcess:
    return []
  return [p for p in children if is_worker(p)]


def stop(processes: list[psutil.Process], wait_secs: float = 5.0) -> None:
  """Terminates ``processes``, then kills those still there after
  ``wait_secs``, and waits for them to be gone (`runtime.signals`)."""
  signals.stop_processes(processes, wait_secs)
