"""The quiet console of the commands (`runtime.console`)."""

import contextlib
import io
import logging
import os
import subprocess
import sys

import pytest

from runtime import console, internals

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))




def test_console_restores_logging_and_keeps_errors():
  root = logging.getLogger()
  before = (root.level, list(root.handlers))
  with console.Console('ERROR', command='model.test_console',
                       filter_stderr=False):
    assert root.level == logging.ERROR
    assert logging.getLogger('model.test_console').isEnabledFor(logging.INFO)
    assert not logging.getLogger('apache_beam').isEnabledFor(logging.WARNING)
    assert logging.getLogger('apache_beam').isEnabledFor(logging.ERROR)
  assert (root.level, list(root.handlers)) == before


def test_a_stopping_console_keeps_only_the_commands_lines(capsys):
  """Once stopping, other libraries' errors stay out even where one of
  them sets the root logger's level again."""
  shown = console.Console('ERROR', command='model.test_console',
                          filter_stderr=False)
  try:
    shown.quiet_other_libraries()
    logging.getLogger().setLevel(logging.INFO)  # as a library may
    logging.getLogger('apache_beam.runners.common').error('consequence')
    logging.getLogger('model.test_console').info('our line')
    logging.getLogger('model.test_console').error('our error')
  finally:
    shown.close()
  err = capsys.readouterr().err
  assert 'consequence' not in err
  assert 'our line' in err and 'error: our error' in err


@pytest.mark.parametrize('redirect', ['redirect_stderr', 'assignment'])
def test_a_stop_while_stderr_is_redirected_keeps_the_commands_lines(
    capsys, redirect):
  """A stop signal can come while code points ``sys.stderr`` elsewhere for
  a moment (the command's check of Beam's options captures argparse's
  message so): the command's last line, and ``sys.stderr`` once the console
  closes, are the console's stream all the same, never the captured one."""
  root = logging.getLogger()
  level = root.level
  real = sys.stderr
  captured = io.StringIO()
  shown = console.Console('ERROR', command='model.test_console',
                          filter_stderr=False)
  try:
    if redirect == 'redirect_stderr':
      with contextlib.redirect_stderr(captured):
        shown.quiet_other_libraries()  # The stop's callback.
    else:
      sys.stderr = captured
      try:
        shown.quiet_other_libraries()
      finally:
        sys.stderr = real
    console.say('interrupted by SIGTERM')
  finally:
    shown.close()
  assert sys.stderr is real
  console.quiet_until_exit([])
  try:
    console.say('its work is done')
  finally:
    console._restore_stderr()  # pylint: disable=protected-access
    root.setLevel(level)
  err = capsys.readouterr().err
  assert captured.getvalue() == ''
  assert 'interrupted by SIGTERM' in err and 'its work is done' in err


@pytest.mark.parametrize('level,shown', [('ERROR', False), ('WARNING', True)])
def test_the_runners_error_on_closing_a_gone_worker(capsys, level, shown):
  """A stop signal sent to the process group ends the workers before the
  command reacts; the runner then logs an error with a closed channel's
  traceback. The default level leaves it out, as it leaves out the
  workers' own records; a chosen level shows it, and other errors of the
  same logger always show."""
  beam = logging.getLogger(internals.WORKER_HANDLERS_LOGGER)
  with console.Console(level, command='model.test_console',
                       filter_stderr=False):
    try:
      raise RuntimeError(internals.CLOSED_CHANNEL)
    except RuntimeError:
      beam.error(internals.CLOSING_WORKER_ERROR + ' <EmbeddedWorkerHandler>',
                 exc_info=True)
    beam.error('another error')
  err = capsys.readouterr().err
  assert (internals.CLOSING_WORKER_ERROR in err) == shown
  assert (internals.CLOSED_CHANNEL in err) == shown
  assert 'another error' in err


def _filtered(lines):
  """What the command's stderr filter lets through of ``lines``."""
  noise = '|'.join(f'(?:{p})' for p in console._NOISE)
  out = subprocess.run(
      [sys.executable, '-I', '-S', '-c', console._FILTER_PROGRAM, noise,
       console._WORKER_RECORD, console._TRACEBACK_LINE],
      input='\n'.join(lines) + '\n', capture_output=True, text=True,
      timeout=60, check=True)
  return out.stdout.splitlines()


@pytest.mark.slow
def test_stderr_filter_drops_worker_records_with_their_tracebacks():
  """Worker subprocesses' log records (Python's default format) go, with the
  tracebacks under them; the command's own lines and foreign errors stay."""
  lines = [
      'Scoring docs.jsonl (1 file, 10 bytes) with b into o on DirectRunner',
      'ERROR:apache_beam.runners.common:model broke [while running Step]',
      'Traceback (most recent call last):',
      '  File "x.py", line 1, in <module>',
      '    raise BundleError(',
      'model.bundle.BundleError: model broke',
      '',
      'During handling of the above exception, another exception occurred:',
      'RuntimeError: wrapped',
      'WARNING:apache_beam.io.filebasedsink:slow rename',
      '[10s] scored 0 documents (0 tokens), 0.0 docs/s',
      'I0000 00:00:1796039020.671007   23776 cudart_stub.cc:31] no GPU',
      'E0000 00:00:1796039020.671007   23776 some.cc:1] a real C++ error',
      'error: the pipeline failed: model.bundle.BundleError: model broke',
      'Segmentation fault (core dumped)',
      # On a CPU without AVX-512 (oneDNN's notice, at ERROR).
      'E0000 00:00:1796536599.733568   11264 util.cc:131] oneDNN supports '
      'DT_BOOL only on platforms with AVX-512. Falling back to the default '
      'Eigen-based implementation if present.',
      'E0000 00:00:1796536599.733568   11264 util.cc:131] oneDNN supports '
      'DT_HALF only on platforms with AVX-512-FP16.',
  ]
  assert _filtered(lines) == [lines[0], lines[10], lines[12], lines[13],
                             lines[14]]


@pytest.mark.slow
def test_noise_from_another_worker_inside_a_traceback_keeps_it_dropped():
  """Two workers share stderr: one's TensorFlow start-up lines can land
  between the lines of the other's traceback."""
  lines = [
      'Scoring docs.jsonl (1 file, 10 bytes) with b into o on DirectRunner',
      'ERROR:apache_beam.runners.worker.sdk_worker:Error processing',
      'Traceback (most recent call last):',
      'E0000 00:00:1796039020.671007   23776 cuda_platform.cc:52] failed '
      'call to cuInit: UNKNOWN ERROR (303)',
      'WARNING: All log messages before absl::InitializeLog() is called are '
      'written to STDERR',
      '  File "model/bundle.py", line 388, in verify_model',
      '    raise BundleError(',
      'model.bundle.BundleError: the manifest names 7 outputs',
      'error: the pipeline failed: model.bundle.BundleError: 7 outputs',
      '(--log_level DEBUG shows the traceback)',
  ]
  assert _filtered(lines) == [lines[0], lines[8], lines[9]]


@pytest.mark.slow
def test_beam_notices_are_dropped_on_import():
  """Importing the commands before Beam keeps Beam's import notice away."""
  code = 'import pipeline.cli, apache_beam; print("ok")'
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, '-c', code], env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.stdout == 'ok\n' and 'apitools' not in out.stderr
