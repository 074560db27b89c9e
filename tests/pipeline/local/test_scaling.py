"""The scaling plan: when a local job uses the cores, and with what settings."""

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from hypothesis import given, settings, strategies as st

from pipeline.io import inputs
from pipeline.local import machine, scaling
from pipeline.io.ranges import DEFAULT_SPLIT_BYTES, byte_ranges
from transforms import CoreShare

MB = 1 << 20


def plan(argv, size, cores=2, **kwargs):
  return scaling.plan(PipelineOptions(argv), argv, size=size, cores=cores,
                      **kwargs)


@pytest.mark.parametrize('warm', [False, True])
def test_small_local_input_stays_in_process(warm):
  per_worker = (machine.WARM_WORKER_BYTES if warm
                else machine.COLD_WORKER_BYTES)
  p = plan([], 2 * per_worker - 1, warm=warm)
  assert (p.workers, p.flags, p.tf_threads, p.rebalance) == (1, [], 0, False)


@pytest.mark.parametrize('warm', [False, True])
@pytest.mark.parametrize('cores', [2, 3, 8, 64])
@pytest.mark.parametrize('mib', [0, 1, 7, 8, 9, 15, 16, 17, 40, 100, 1000])
def test_local_workers_grow_with_the_input_up_to_the_cores(mib, cores, warm):
  """One worker process per 4 MiB (warm) or 8 MiB (cold), at most one per
  core, two at least: else the job stays in this process."""
  per_worker = 4 if warm else 8
  p = plan([], mib * MB, cores=cores, warm=warm)
  expected = min(cores, mib // per_worker)
  if expected < 2:
    assert (p.workers, p.flags, p.in_process) == (1, [], True)
  else:
    assert p.workers == expected and not p.in_process
    assert p.flags == ['--direct_running_mode', 'multi_processing',
                       '--direct_num_workers', str(expected)]
    assert p.tf_threads == max(1, cores // expected)


@pytest.mark.parametrize('cores', [2, 4, 16])
def test_large_local_input_uses_one_process_per_core(cores):
  size = 512 * MB
  p = plan([], size, cores=cores)
  assert p.flags == ['--direct_running_mode', 'multi_processing',
                     '--direct_num_workers', str(cores)]
  assert p.workers == cores and p.tf_threads == 1 and not p.rebalance
  assert scaling.MIN_SPLIT_BYTES <= p.split_bytes <= 64 * MB
  assert size // p.split_bytes >= cores * 2  # several ranges per worker


@given(workers=st.integers(2, 256), data=st.data())
def test_one_file_is_cut_into_a_multiple_of_the_workers(workers, data):
  """The DirectRunner deals ranges round robin: every worker gets as many."""
  size = data.draw(st.integers(workers * scaling.MIN_SPLIT_BYTES, 1 << 44))
  split = scaling.local_split_bytes(size, workers)
  ranges = len(byte_ranges(size, split))
  assert ranges % workers == 0
  assert split <= DEFAULT_SPLIT_BYTES
  per_worker = ranges // workers
  if size >= workers * scaling.RANGES_PER_WORKER * DEFAULT_SPLIT_BYTES:
    assert per_worker >= scaling.RANGES_PER_WORKER  # Capped at 64 MiB.
  elif size >= workers * scaling.RANGES_PER_WORKER * scaling.MIN_SPLIT_BYTES:
    assert per_worker == scaling.RANGES_PER_WORKER
  else:
    assert 1 <= per_worker < scaling.RANGES_PER_WORKER
  assert split >= scaling.MIN_SPLIT_BYTES


@pytest.mark.parametrize('workers', [2, 3, 64])
@pytest.mark.parametrize('size', [1, 1000, 255 << 10, 256 << 10])
def test_a_file_under_the_smallest_range_is_read_whole(size, workers):
  split = scaling.local_split_bytes(size, workers)
  assert split == scaling.MIN_SPLIT_BYTES
  assert len(byte_ranges(size, split)) == 1


@pytest.mark.parametrize('size', [70556700, 17465918, 16 * MB + 1, 1000 * MB])
def test_the_plan_gives_two_workers_as_many_ranges_each(size):
  """70,556,700 bytes used to be cut into 17 ranges: 9 for one worker."""
  p = plan([], size, warm=True)
  assert p.workers == 2
  assert len(byte_ranges(size, p.split_bytes)) == 2 * scaling.RANGES_PER_WORKER


def test_one_core_never_spawns_workers():
  assert plan([], 512 * MB, cores=1).flags == []


@pytest.mark.parametrize('argv,workers,threads', [
    (['--direct_num_workers', '1'], 1, 0),
    (['--direct_num_workers=1'], 1, 0),
    (['--direct_running_mode', 'multi_processing', '--direct_num_workers',
      '2'], 2, 2),
    (['--direct_running_mode', 'multi_processing', '--direct_num_workers',
      '8'], 8, 1),
    (['--direct_running_mode', 'multi_threading', '--direct_num_workers',
      '2'], 2, 0),
])
def test_explicit_direct_flags_are_obeyed(argv, workers, threads):
  p = plan(argv, 512 * MB, cores=4)
  assert p.flags == [] and p.workers == workers and p.tf_threads == threads


def test_dataflow_gets_one_thread_per_sdk_process_and_a_rebalance():
  p = plan(['--runner', 'DataflowRunner'], 512 * MB, cores=8)
  assert (p.flags, p.tf_threads, p.rebalance) == ([], 1, True)
  # Cut for ENGINE_SLOTS slots, 16 ranges each: every worker reads.
  assert p.split_bytes == 512 * MB // (scaling.ENGINE_SLOTS * 16)


@pytest.mark.parametrize('runner', ['FlinkRunner', 'SparkRunner',
                                    'PortableRunner'])
def test_one_sdk_process_per_machine_keeps_tensorflow_default(runner):
  for argv in ([], ['--sdk_worker_parallelism', '1'],
               ['--sdk_worker_parallelism', '0']):
    p = plan(['--runner', runner, '--parallelism', '2'] + argv, 512 * MB)
    assert p.tf_threads == 0, argv


@pytest.mark.parametrize('runner, shuffled', [
    ('SparkRunner', True), ('DataflowRunner', True), ('PortableRunner', True),
    ('FlinkRunner', False), ('DirectRunner', False), (None, False)])
def test_documents_are_shuffled_where_the_runner_spreads_them(runner,
                                                              shuffled):
  """Flink's batch translation forwards the shuffle to the reading slot:
  it would only split the read from the scoring."""
  argv = ['--runner', runner] if runner else []
  assert plan(argv, 512 * MB).rebalance == shuffled
  assert plan(argv, 512 * MB, rebalance='always').rebalance
  assert not plan(argv, 512 * MB, rebalance='never').rebalance


@pytest.mark.parametrize('runner', ['FlinkRunner', 'SparkRunner'])
@pytest.mark.parametrize('processes', [2, 3, 16])
def test_sdk_processes_share_each_worker_machines_cores(runner, processes):
  """The submitter's cores do not matter: each worker counts its own."""
  for cores in (1, 2, 64):
    p = plan(['--runner', runner, '--sdk_worker_parallelism',
              str(processes)], 512 * MB, cores=cores)
    assert p.tf_threads == CoreShare(processes)
  assert p.tf_threads.threads(cores=32) == 32 // processes
  assert p.tf_threads.threads(cores=1) == 1


@pytest.mark.parametrize('value', ['two', '-1', '1.5', ''])
def test_a_bad_sdk_worker_parallelism_is_named(value):
  with pytest.raises(ValueError, match='--sdk_worker_parallelism must be'):
    plan(['--runner', 'SparkRunner', '--sdk_worker_parallelism', value], 1)


def test_tf_threads_given_wins_on_every_runner():
  for runner in ('FlinkRunner', 'SparkRunner', 'DataflowRunner'):
    assert plan(['--runner', runner, '--sdk_worker_parallelism', '4'], 1,
                tf_threads=3).tf_threads == 3
    assert plan(['--runner', runner, '--sdk_worker_parallelism', '4'], 1,
                tf_threads=0).tf_threads == 0


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 1 << 40), slots=st.integers(1, 64))
def test_an_engine_cuts_one_file_for_every_slot(size, slots):
  """Flink forwards the documents' shuffle to the slot that read them, so
  the ranges are what spreads a file over the slots."""
  argv = ['--runner', 'FlinkRunner', '--parallelism', str(slots)]
  split = plan(argv, size).split_bytes
  assert split == scaling.engine_split_bytes(size, slots)
  assert scaling.MIN_SPLIT_BYTES <= split <= max(DEFAULT_SPLIT_BYTES,
                                                 scaling.MIN_SPLIT_BYTES)
  ranges = -(-size // split)
  if size >= slots * scaling.MIN_SPLIT_BYTES:
    assert ranges >= slots  # no slot without a range of the file
  else:
    assert split == scaling.MIN_SPLIT_BYTES  # small: not worth cutting


def test_explicit_settings_win():
  p = plan([], 512 * MB, tf_threads=0, split_bytes=123, rebalance='always')
  assert (p.tf_threads, p.split_bytes, p.rebalance) == (0, 123, True)
  assert not plan(['--runner', 'DataflowRunner'], 1,
                  rebalance='never').rebalance
  with pytest.raises(ValueError, match='--rebalance'):
    plan([], 1, rebalance='sometimes')


@pytest.mark.parametrize('argv,size,in_process', [
    ([], 1, True),
    ([], 512 * MB, False),
    (['--direct_num_workers', '1'], 512 * MB, True),
    (['--direct_running_mode', 'multi_threading', '--direct_num_workers',
      '2'], 1, True),
    (['--direct_running_mode', 'multi_processing', '--direct_num_workers',
      '1'], 1, False),
    (['--runner', 'FlinkRunner'], 1, False),
    (['--runner', 'DataflowRunner'], 1, False),
])
def test_in_process_says_whether_this_process_scores(argv, size, in_process):
  """The launcher loads the model only when it is the one that scores."""
  assert plan(argv, size).in_process is in_process


def test_input_bytes_sums_the_matched_files(tmp_path):
  for name, size in (('a.jsonl', 10), ('b.jsonl', 32)):
    (tmp_path / name).write_bytes(b'x' * size)
  assert inputs.input_bytes(str(tmp_path / '*.jsonl')) == 42
  assert inputs.input_bytes(str(tmp_path / 'none-*.jsonl')) == 0
