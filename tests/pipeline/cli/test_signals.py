"""A scoring run stopped by SIGTERM, SIGINT or SIGHUP at any moment.

Real runs (`tests.stops`): each signal at each moment, on the in-process and
the multi-process DirectRunner (Flink's are in ``test_flink_spark.py``). Each
stop must take under 10 s, leave no process and no temporary folder behind,
put the earlier output back byte for byte, say one line and exit 128 + n.
"""

import signal

import pytest

from tests import stops

RUNNERS = {
    'in_process': ['--direct_running_mode', 'in_memory'],
    'multi_process': ['--direct_running_mode', 'multi_processing',
                      '--direct_num_workers', '2'],
}
# Ctrl-C and a closed terminal signal the whole process group; ``timeout``,
# Kubernetes and Airflow signal the launcher only.
SIGNALS = {'SIGTERM': (signal.SIGTERM, False),
           'SIGINT': (signal.SIGINT, True),
           'SIGHUP': (signal.SIGHUP, True)}


@pytest.fixture(scope='module')
def documents(tmp_path_factory, corpus):
  """Enough documents that an in-process run writes for a few seconds."""
  path = str(tmp_path_factory.mktemp('signals') / 'docs.jsonl')
  return path, stops.write_input(path, corpus, copies=6)


def _stop(tmp_path, documents, trained_bundle, runner, sig, moment):
  path, count = documents
  signum, group = SIGNALS[sig]
  run = stops.stop_run(str(tmp_path), input_path=path,
                       bundle=trained_bundle.path, flags=RUNNERS[runner],
                       signum=signum, moment=moment, group=group)
  return run, stops.check_stopped(run, count)


def test_sigterm_while_running_keeps_the_earlier_output(
    tmp_path, documents, trained_bundle):
  run, end = _stop(tmp_path, documents, trained_bundle, 'multi_process',
                   'SIGTERM', 'running')
  assert end == 'earlier' and run.returncode == 143
  assert run.stderr.strip().splitlines()[-1] == (
      f'interrupted by SIGTERM; the earlier output in {run.outdir} is kept; '
      f'rerun the same command to finish.')


@pytest.mark.slow
@pytest.mark.parametrize('moment', ['starting', 'running', 'writing'])
@pytest.mark.parametrize('sig', sorted(SIGNALS))
@pytest.mark.parametrize('runner', sorted(RUNNERS))
def test_each_signal_at_each_moment(tmp_path, documents, trained_bundle,
                                    runner, sig, moment):
  run, end = _stop(tmp_path, documents, trained_bundle, runner, sig, moment)
  assert end == 'earlier'
  assert run.returncode == 128 + SIGNALS[sig][0]


@pytest.mark.slow
@pytest.mark.parametrize('runner', sorted(RUNNERS))
def test_a_signal_while_the_shards_move(tmp_path, documents, trained_bundle,
                                        runner):
  """The moves are finished or undone whole: either end is a complete
  folder."""
  run, end = _stop(tmp_path, documents, trained_bundle, runner, 'SIGTERM',
                   'moving')
  assert end in ('earlier', 'finished')


@pytest.mark.parametrize('earlier', [True, False])
def test_temporary_shards_written_while_stopping_are_removed(
    tmp_path, monkeypatch, capsys, earlier):
  """A worker can open a temporary shard after the run's ``finally`` blocks
  put the output folder back (a bundle sent before the job was cancelled,
  in a LOOPBACK worker thread): the command's last step removes it, and
  its line still says what the folder holds."""
  # pylint: disable=import-outside-toplevel
  from pipeline.cli import score
  from runtime import signals
  monkeypatch.setattr(signals, 'stop_children', lambda **_: 0)  # pytest's own
  out = tmp_path / 'out'
  late = out / 'beam-temp-scores-0123' / 'late.scores.jsonl'
  late.parent.mkdir(parents=True)
  late.write_text('{"id": "late"}\n')
  (out / 'beam-temp-_errors-0123').mkdir()
  if earlier:
    for name, data in stops.EARLIER.items():
      (out / name).write_bytes(data)
  status = score.interrupted(signals.Interrupted(signal.SIGTERM), str(out))
  assert status == 143
  left = sorted(p.name for p in out.iterdir())
  assert left == (sorted(stops.EARLIER) if earlier else [])
  line = capsys.readouterr().err.strip()
  assert line.startswith('interrupted by SIGTERM')
  assert (('earlier output' in line) if earlier else
          ('nothing was written' in line)), line
