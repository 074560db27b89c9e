"""How a scoring job spreads over processes and cores, decided before it runs.

Three settings decide whether a second core helps:

* **Worker processes on the local DirectRunner.** MeCab and the vocabulary
  lookup hold Python's GIL for much of their time, so threads in one process
  do not add up; worker processes do. With no ``--direct_*`` flag given,
  `plan` switches the DirectRunner to ``multi_processing`` with one worker
  process per 4 MiB of input (8 MiB where they start cold), up to one per
  core, from two on (`pipeline.local.machine`): each worker imports Beam and
  TensorFlow and loads the model. Started warm (`pipeline.local.warm_workers`,
  the default on Linux), two workers start up at least as fast as one
  in-process run on two cores; started cold by Beam, 1.5 to 2.3 s slower.
  ``--direct_num_workers 1`` still forces one worker.
* **TensorFlow's threads per process** (``--tf_threads``): by default each
  worker gets its share of the cores, so two workers on two cores do not
  both run two TensorFlow threads and fight for the cores. Local workers'
  share is counted here. On Dataflow, which runs one Python process per
  vCPU, it is one thread. On Flink and Spark each worker counts its own
  machine's cores and divides them by ``--sdk_worker_parallelism``, the SDK
  processes an executor or a TaskManager runs (`transforms.CoreShare`);
  with one SDK process (Beam's default) or ``--sdk_worker_parallelism 0``
  (the runner decides) TensorFlow keeps its default, every core it sees.
* **Range size** (``--split_bytes``): the DirectRunner deals ranges to its
  workers round robin, once; a count of ranges that the workers divide
  (`local_split_bytes`: 16 a worker from one file) keeps the deal even, and
  several ranges per worker even out documents of different lengths. On
  Flink, Spark and Dataflow the ranges are what spreads a file over the task
  slots: Flink's batch translation forwards the documents' own shuffle
  (``Rebalance``) to the same slot instead of spreading them, measured on a
  real session cluster, so one range of a file is scored by one slot. With
  no ``--split_bytes`` a file is cut for ``--parallelism`` slots where it is
  given (Flink), else for `ENGINE_SLOTS` (`engine_split_bytes`).

And ``--rebalance``: a shuffle of the documents after reading evens out
skewed ranges on runners whose shuffle lives outside the workers and
spreads them (Dataflow, Spark), so ``auto`` uses it there. Not on the
DirectRunner, where it would hold the whole corpus in the runner's memory,
and not on Flink, whose batch translation forwards it to the slot that read
the documents: each slot scored the same documents with it as without it
(4,130 and 3,870 of 8,000 on the test session cluster), and the shuffle cut
the fused read-and-score stage in two, reading first (the job took 27.9 to
32.4 s with it, 26.9 s without; one run each way per setting).
"""

import logging
from typing import Optional, Sequence

from apache_beam.options.pipeline_options import (DirectOptions,
                                                  FlinkRunnerOptions,
                                                  PipelineOptions,
                                                  PortableOptions,
                                                  StandardOptions)

from pipeline.io.inputs import input_bytes
from pipeline.io.ranges import DEFAULT_SPLIT_BYTES
from pipeline.local.machine import (is_local_runner, local_tf_threads,
                                    local_workers)
from runtime.argv import flag_given
from runtime.cores import available_cores
from transforms.handler import CoreShare, TFThreads

_LOGGER = logging.getLogger(__name__)

MIN_SPLIT_BYTES = 256 << 10
RANGES_PER_WORKER = 16
#: The slots a file is cut for on an engine whose parallelism is not given
#: here (Spark's cores, Dataflow's autoscaled workers).
ENGINE_SLOTS = 8


def local_split_bytes(size: int, workers: int) -> int:
  """The range size that cuts ``size`` bytes into a multiple of ``workers``.

  The DirectRunner deals ranges to its worker processes round robin, once,
  so a file cut into one range more than a multiple of the workers leaves
  one worker a range more to score while the others wait (17 ranges on 2
  workers: 9 against 8, 12% more). A file of ``size`` bytes is cut into
  ``workers * k`` ranges: ``k`` is `RANGES_PER_WORKER`, fewer where ranges
  would fall under `MIN_SPLIT_BYTES` (one at least), more where they would
  exceed the reader's default (64 MiB). A file under ``workers *
  MIN_SPLIT_BYTES`` is cut into ranges of `MIN_SPLIT_BYTES` (read whole
  below that): not worth more. Several ranges per worker also even out
  documents of different costs, and inputs of several files whose ranges
  cannot all be equal.

  Args:
    size: the input's size in bytes (positive).
    workers: the local worker processes (positive).
  """
  per_worker = min(RANGES_PER_WORKER, size // (workers * MIN_SPLIT_BYTES))
  per_worker = max(1, per_worker,
                   -(-size // (workers * DEFAULT_SPLIT_BYTES)))
  return max(MIN_SPLIT_BYTES, -(-size // (workers * per_worker)))


def engine_split_bytes(size: int, slots: int = 0) -> int:
  """The range size on Flink, Spark or Dataflow: the cut of
  `local_split_bytes` for ``slots`` task slots (`ENGINE_SLOTS` when 0), so
  that every slot reads, and scores, ranges of one file.

  Args:
    size: the input's size in bytes (positive).
    slots: the job's parallelism, when known (Flink's ``--parallelism``).
  """
  return local_split_bytes(size, slots if slots > 0 else ENGINE_SLOTS)


def sdk_worker_parallelism(options: PipelineOptions) -> int:
  """``--sdk_worker_parallelism`` as a number (Beam parses it as a string
  when given).

  Raises:
    ValueError: it is not a whole number of at least 0.
  """
  value = options.view_as(PortableOptions).sdk_worker_parallelism
  try:
    processes = int(value)
  except (TypeError, ValueError):
    processes = -1
  if processes < 0:
    raise ValueError(f'--sdk_worker_parallelism must be a whole number of '
                     f'SDK processes (0: the runner decides); received '
                     f'{value!r}.')
  return processes


def is_local(options: PipelineOptions) -> bool:
  """Whether the job runs on the DirectRunner in this machine."""
  return is_local_runner(options.view_as(StandardOptions).runner)


class Plan:
  """What `plan` decided; ``flags`` are added to the job's arguments.

  Attributes:
    workers: worker processes (1 for in-process runs; 0 where the runner
      decides).
    tf_threads: TensorFlow threads per worker process (0: TF's default), or
      the `CoreShare` each cluster worker counts.
    split_bytes: the size of one input range.
    rebalance: whether to shuffle documents after reading.
    flags: Beam flags to add (``--direct_running_mode``...).
    in_process: whether the job's workers run in this process (the local
      DirectRunner in memory or with threads), so that a model loaded here
      is the one that scores.
  """
  def __init__(self, workers: int, tf_threads: TFThreads, split_bytes: int,
               rebalance: bool, flags: list[str], in_process: bool = False):
    self.in_process = in_process
    self.workers = workers
    self.tf_threads = tf_threads
    self.split_bytes = split_bytes
    self.rebalance = rebalance
    self.flags = flags

  def __repr__(self) -> str:
    return (f'Plan(workers={self.workers}, tf_threads={self.tf_threads}, '
            f'split_bytes={self.split_bytes}, rebalance={self.rebalance}, '
            f'flags={self.flags}, in_process={self.in_process})')


def plan(options: PipelineOptions, argv: Sequence[str], *,
         size: Optional[int] = None, pattern: Optional[str] = None,
         tf_threads: int = -1, split_bytes: int = 0,
         rebalance: str = 'auto', cores: Optional[int] = None,
         warm: bool = False) -> Plan:
  """Decides workers, TF threads, range size and rebalancing for one job.

  Args:
    options: the job's options.
    argv: the job's arguments as given (to tell a default from a choice).
    size: the input's size in bytes, if known; else read from ``pattern``.
    pattern: the input pattern.
    tf_threads: ``--tf_threads``: -1 for the worker's share of the cores.
    split_bytes: ``--split_bytes``: 0 for automatic.
    rebalance: ``--rebalance``: ``auto``, ``always`` or ``never``.
    cores: the machine's cores (default: `available_cores`).
    warm: whether local worker processes start warm
      (`pipeline.local.warm_workers`), which lets smaller inputs use them.
  """
  cores = cores or available_cores()
  flags: list[str] = []
  local = is_local(options)
  runner = str(options.view_as(StandardOptions).runner or '')
  if size is None:
    size = input_bytes(pattern) if pattern else 0
  if local:
    direct = options.view_as(DirectOptions)
    chosen = flag_given(argv, 'direct_num_workers', 'direct_running_mode')
    workers, in_process = local_workers(
        direct.direct_running_mode, direct.direct_num_workers, chosen=chosen,
        size=size, cores=cores, warm=warm)
    processes = 1 if in_process else workers
    if not chosen and not in_process:
      flags = ['--direct_running_mode', 'multi_processing',
               '--direct_num_workers', str(workers)]
    threads = local_tf_threads(tf_threads, processes, cores)
  else:
    # Dataflow runs one SDK process per vCPU: each gets one core. Flink's
    # and Spark's workers run --sdk_worker_parallelism SDK processes per
    # TaskManager or executor, on cores only they can count (on a local
    # Flink or Spark with LOOPBACK every SDK harness shares this process,
    # with its default of 1). --tf_threads overrides either.
    workers = processes = 0
    in_process = False
    if tf_threads >= 0:
      threads = tf_threads
    elif 'Dataflow' in runner:
      threads = 1
    else:
      sdk_processes = sdk_worker_parallelism(options)
      # One process (Beam's default) or the runner's choice (0): TF's own.
      threads = CoreShare(sdk_processes) if sdk_processes > 1 else 0
  if not split_bytes:
    split_bytes = DEFAULT_SPLIT_BYTES
    if local and workers > 1 and size:
      split_bytes = local_split_bytes(size, workers)
    elif not local and size:
      split_bytes = engine_split_bytes(
          size, options.view_as(FlinkRunnerOptions).parallelism or 0)
  if rebalance not in ('auto', 'always', 'never'):
    raise ValueError(f'--rebalance must be auto, always or never; received '
                     f'{rebalance!r}.')
  shuffle = rebalance == 'always' or (rebalance == 'auto' and not local and
                                      'Flink' not in runner)
  result = Plan(workers, threads, split_bytes, shuffle, flags,
                in_process=in_process)
  _LOGGER.debug('Scaling plan for %d input bytes on %d cores: %r', size, cores,
                result)
  return result
