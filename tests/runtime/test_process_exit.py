"""Quick exits: the commands' and Beam SDK workers' (in fresh processes)."""

import os
import subprocess
import sys
import time

import pytest

from runtime import process_exit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# A module global whose __del__ runs only if the interpreter tears down.
_PRELUDE = r'''
import atexit, os, sys
from runtime import process_exit
OUT = sys.argv[1]
def mark(name, open=open, join=os.path.join, out=OUT):  # usable in teardown
  with open(join(out, name), 'w') as f:
    f.write('x')
class TornDown:
  def __del__(self):
    mark('torn-down')
witness = TornDown()
atexit.register(mark, 'atexit-ran')
sys.stdout.write('unflushed output')
'''

# Each exit is a fresh process.
pytestmark = pytest.mark.slow


def _run(tmp_path, body):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  out = subprocess.run([sys.executable, '-c', _PRELUDE + body, str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=120)
  return out, sorted(os.listdir(tmp_path))


def test_a_normal_exit_tears_down(tmp_path):
  """The control: without a quick exit the witness is torn down."""
  out, marks = _run(tmp_path, '')
  assert out.returncode == 0 and marks == ['atexit-ran', 'torn-down']


@pytest.mark.parametrize('status', [0, 3])
def test_exit_now_flushes_runs_atexit_and_skips_teardown(tmp_path, status):
  out, marks = _run(tmp_path, f'process_exit.exit_now({status})')
  assert out.returncode == status
  assert out.stdout == 'unflushed output'
  assert marks == ['atexit-ran']


@pytest.mark.parametrize('main,status', [
    ('lambda: 4', 4),
    ('lambda: sys.exit(2)', 2),
    ('lambda: sys.exit("usage: bad")', 1),
])
def test_run_command_exits_with_the_commands_status(tmp_path, main, status):
  out, marks = _run(tmp_path, f'process_exit.run_command({main})')
  assert out.returncode == status and marks == ['atexit-ran']


# A local job's worker process (`runtime.sdk_worker`) with Beam's harness
# replaced by one that ends as given.
_WORKER = r'''
from apache_beam.runners.worker import sdk_worker_main
from runtime import sdk_worker
def harness(argv):
  {ending}
sdk_worker_main.main = harness
sdk_worker.main()
'''


@pytest.mark.parametrize('ending,status', [
    ('return None', 0),
    ('sys.exit(0)', 0),
    ('sys.exit(3)', 3),
    ('sys.exit(130)', 130),
    ('sys.exit(None)', 0),
    ('sys.exit("the harness gave up")', 1),
])
def test_a_local_worker_keeps_the_harness_status(tmp_path, ending, status):
  """The quick exit never decides the status: ``sys.exit(n)`` keeps n."""
  out, marks = _run(tmp_path, _WORKER.format(ending=ending))
  assert out.returncode == status, out.stderr
  assert marks == ['atexit-ran']  # ... and the teardown is skipped.


def test_a_local_worker_that_fails_keeps_its_status_and_traceback(tmp_path):
  out, marks = _run(tmp_path, _WORKER.format(
      ending='raise RuntimeError("the harness failed")'))
  assert out.returncode == 1
  assert 'RuntimeError: the harness failed' in out.stderr
  assert 'atexit-ran' in marks


def test_a_local_worker_whose_runner_is_gone_ends_at_once(tmp_path):
  """A worker started as its run stopped finds no control service: it ends
  with status 1 instead of waiting for one (Beam waits 60 s)."""
  import socket  # pylint: disable=import-outside-toplevel
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]  # Free once closed: nothing listens there.
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''),
             CONTROL_API_SERVICE_DESCRIPTOR=f'url: "localhost:{port}"\n')
  out = subprocess.run([sys.executable, '-m', 'runtime.sdk_worker'],
                       env=env, capture_output=True, text=True, timeout=30)
  assert out.returncode == 1, out.stderr
  assert 'Traceback' not in out.stderr


def test_a_local_worker_whose_runner_goes_away_ends_quietly(tmp_path):
  """The harness fails because its runner stopped (a closed channel): no
  traceback, status 1. A failure while the runner is there keeps its
  traceback (`test_a_local_worker_that_fails_keeps_its_status_and_traceback`)."""
  body = _WORKER.format(ending='listener.close(); raise RuntimeError("x")')
  body = body.replace('sdk_worker_main.main = harness', (
      'import socket\n'
      'listener = socket.socket()\n'
      'listener.bind(("localhost", 0)); listener.listen()\n'
      'os.environ["CONTROL_API_SERVICE_DESCRIPTOR"] = '
      '\'url: "localhost:%d"\' % listener.getsockname()[1]\n'
      'sdk_worker_main.main = harness'))
  out, marks = _run(tmp_path, body)
  assert out.returncode == 1, out.stderr
  assert 'Traceback' not in out.stderr and 'RuntimeError' not in out.stderr
  assert marks == ['atexit-ran']


def test_a_local_worker_ends_with_its_launcher(tmp_path):
  """A worker whose launcher (`LAUNCHER_ENV`) is gone ends within a second,
  whatever its harness is waiting for."""
  launcher = subprocess.Popen([sys.executable, '-c', 'pass'])
  launcher.wait()  # Gone (reaped) before the worker starts.
  body = _WORKER.format(ending='import time; time.sleep(60)')
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''),
             JA_DOC_SCORER_LAUNCHER_PID=str(launcher.pid))
  started = time.monotonic()
  out = subprocess.run([sys.executable, '-c', _PRELUDE + body, str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=60)
  assert out.returncode == 1, out.stderr
  assert time.monotonic() - started < 30


def test_a_local_worker_stays_while_its_launcher_runs(tmp_path):
  body = _WORKER.format(ending='import time; time.sleep(1.5)')
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''),
             JA_DOC_SCORER_LAUNCHER_PID=str(os.getpid()))
  out = subprocess.run([sys.executable, '-c', _PRELUDE + body, str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stderr


def test_a_local_worker_logs_in_the_format_the_console_filters():
  """The console drops a worker's records by ``LEVEL:logger:``; without a
  handler, Python's last resort would print the bare message (and a bundle's
  traceback would reach the console)."""
  code = ('import logging; from runtime import sdk_worker; '
          'sdk_worker.log_in_default_format(); '
          'logging.getLogger("apache_beam.x").error("boom")')
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                        capture_output=True, text=True, timeout=120,
                        check=False)
  assert done.returncode == 0, done.stderr
  assert done.stderr.splitlines() == ['ERROR:apache_beam.x:boom']
