"""The local machine's cores, and how many worker processes a local job uses.

Why this module exists: `pipeline.local.scaling` plans a job once Beam's
options are parsed, but `pipeline.local.warm_workers` starts the worker
processes before Beam is even imported (2 s). Both read the rule here, which
imports nothing but the standard library.
"""

import glob
import os
from typing import Optional

from runtime.cores import core_share

# Input bytes per local worker process: a job on a local DirectRunner with
# no --direct_* flag gets min(cores, size // these) worker processes, and
# stays in this process below two. Measured on the project's 2-core machine
# (python -m bench.run, 8 documents of start-up):
# * started cold by Beam, two worker processes started 1.5 to 2.3 s later
#   than one in-process worker and then scored about 2.1x as fast; at 16.7 MB
#   they were 1.15x to 1.35x one worker, whole process: 8 MiB a worker (two
#   from 16 MiB) keeps a margin;
# * started warm (`pipeline.local.warm_workers`), two worker processes started in
#   7.7 to 10.3 s, against 8.7 to 10.2 s for one in-process worker (three
#   runs, one of them of 3 rounds), and in 5.9 to 8.1 s against 6.5 to 8.3 s
#   (3 rounds) once the collector waited during imports (`runtime.collector`):
#   at least as fast, so they pay at any size here. 4 MiB a worker (about
#   480 of the benchmark's documents, 3 s of one worker's scoring) keeps small
#   jobs in one process (one model in memory, 1 GB) and bounds the processes
#   on machines with many cores.
COLD_WORKER_BYTES = 8 << 20
WARM_WORKER_BYTES = 4 << 20
# What --runner names a runner that runs the job in this process, on this
# machine: Beam's DirectRunner under its names (None or '': no --runner),
# and the InteractiveRunner, which runs on it. Compared without case and
# without a ``Runner`` suffix, as Beam looks runner names up.
_LOCAL_RUNNER_NAMES = ('', 'direct', 'switchingdirect', 'bundlebaseddirect',
                       'interactive')


def is_local_runner(runner: Optional[str]) -> bool:
  """Whether ``--runner`` names a runner whose job runs in this process."""
  name = str(runner or '').lower()
  if name.endswith('runner'):
    name = name[:-len('runner')]
  return name in _LOCAL_RUNNER_NAMES


def local_input_bytes(pattern: str) -> int:
  """The bytes a local ``pattern`` matches, read before Beam is imported
  (0 for a pattern on another filesystem: not known cheaply).

  The warm workers' early estimate; the plan uses Beam's match
  (`pipeline.io.inputs`), and warm workers started for another size are
  stopped (`pipeline.local.warm_workers.take_early`).
  """
  if pattern.startswith('file://'):
    pattern = pattern[len('file://'):]
  elif '://' in pattern:
    return 0
  total = 0
  for path in glob.glob(pattern):
    try:
      total += os.path.getsize(path)
    except OSError:
      pass
  return total


def local_workers(mode: Optional[str], num_workers: Optional[int], *,
                  chosen: bool, size: int, cores: int,
                  warm: bool = False) -> tuple[int, bool]:
  """Workers of a job on the local DirectRunner, and whether in this process.

  Args:
    mode: ``--direct_running_mode``.
    num_workers: ``--direct_num_workers`` (0: one per core).
    chosen: whether either flag was given; else the size decides.
    size: the input's size in bytes.
    cores: the machine's cores.
    warm: whether worker processes would start warm (`pipeline.local.warm_workers`).

  Returns:
    ``(workers, in_process)``: worker processes are used when not
    ``in_process``.
  """
  if chosen:
    return num_workers or cores, mode != 'multi_processing'
  workers = min(cores, size // (WARM_WORKER_BYTES if warm
                                else COLD_WORKER_BYTES))
  if workers >= 2:
    return workers, False
  return 1, True


def local_tf_threads(requested: int, processes: int, cores: int) -> int:
  """TensorFlow threads for each of ``processes`` local worker processes.

  Args:
    requested: ``--tf_threads``; -1 for the process's share of the cores.
    processes: the job's worker processes on this machine.
    cores: the machine's cores.

  Returns:
    The threads, or 0 for TensorFlow's default (one process: every core).
  """
  if requested >= 0:
    return requested
  return 0 if processes == 1 else core_share(processes, cores)
