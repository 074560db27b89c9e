"""The cores this process may run on.

Why this module exists: the local planner (`pipeline.local`) sizes worker
processes by the submitting machine's cores, and a scoring worker on a
cluster sizes TensorFlow's thread pools by its own machine's cores
(`transforms.handler.CoreShare`), which only that worker can see. Both count
them the same way, here, with the standard library alone.
"""

import os


def available_cores() -> int:
  """The cores this process may run on (its CPU affinity where known)."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:  # Not on Linux.
    return max(1, os.cpu_count() or 1)


def core_share(processes: int, cores: int = 0) -> int:
  """Each of ``processes`` processes' share of ``cores`` (default: this
  process's cores); at least 1."""
  return max(1, (cores or available_cores()) // processes)
