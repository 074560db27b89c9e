"""A stress test: a random stop signal at a random moment of a real run.

Each round picks a signal (SIGTERM, SIGINT, SIGHUP), whether it goes to the
launcher alone or its whole process group, the runner mode (in-process,
worker processes warm or cold), and a moment:
a random delay after the run starts, or after it set the earlier output aside
or began to write. Every round checks all the promises of a stop
(`tests.stops.check_stopped`): under 10 s, nothing left behind, the earlier
output intact (or the run's complete output, when it finished first), one
line, 128 + n. The seed is printed, so that a failing round can be replayed.
"""

import os
import random
import signal

import pytest

from tests import stops
from tests.pipeline.cli.test_signals import RUNNERS

ROUNDS = 20
# The signal tests' runner modes, and worker processes that start cold.
STRESS_RUNNERS = dict(RUNNERS, multi_process_cold=RUNNERS['multi_process'] +
                      ['--warm_workers', 'off'])
pytestmark = pytest.mark.slow


def test_random_signals_at_random_moments(tmp_path, corpus, trained_bundle):
  seed = int(os.environ.get('STOP_STRESS_SEED',
                            random.SystemRandom().randrange(2**32)))
  print(f'STOP_STRESS_SEED={seed}')
  rng = random.Random(seed)
  path = str(tmp_path / 'docs.jsonl')
  documents = stops.write_input(path, corpus, copies=4)
  ends, times = [], []
  for i in range(ROUNDS):
    signum = rng.choice([signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
    group = rng.random() < 0.5
    runner = rng.choice(sorted(STRESS_RUNNERS))
    moment = rng.choice(['starting', 'running', 'writing'])
    delay = rng.uniform(0, 3.0 if moment == 'starting' else 1.0)
    where = (f'round {i} (seed {seed}): {signal.Signals(signum).name} to the '
             f'{"group" if group else "launcher"}, {runner}, {moment} '
             f'+{delay:.2f} s')
    workdir = tmp_path / f'round-{i}'
    workdir.mkdir()
    run = stops.stop_run(str(workdir), input_path=path,
                         bundle=trained_bundle.path, flags=STRESS_RUNNERS[runner],
                         signum=signum, moment=moment, group=group,
                         delay=delay)
    try:
      ends.append(stops.check_stopped(run, documents))
    except AssertionError as e:
      raise AssertionError(f'{where}: {e}') from e
    times.append(run.stop_secs)
    print(f'{where}: {ends[-1]}, exit {run.returncode}, stopped in '
          f'{run.stop_secs:.2f} s')
  print(f'stop times: median {sorted(times)[len(times) // 2]:.2f} s, '
        f'longest {max(times):.2f} s')
  # Most rounds must really be stopped, or the test tests little.
  assert ends.count('earlier') >= ROUNDS // 2, ends
