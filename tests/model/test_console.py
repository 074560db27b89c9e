"""The console of the commands; ``model.train`` and ``model.import_keras``
run as a user runs them (in a subprocess)."""

import argparse
import json
import logging
import os
import re
import subprocess
import sys

import pytest

from model import console

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def run_command(*args, timeout=600):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)  # the command must quiet TF itself
  return subprocess.run([sys.executable, '-m', *args], env=env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize('typo,valid,want', [
    ('--num-shards', ['--num_shards', '--format'], '--num_shards'),
    ('--formt=csv', ['--num_shards', '--format'], '--format'),
    ('--epoch', ['--epochs', '--patience'], '--epochs'),
    ('--zzz', ['--epochs'], None),
])
def test_unknown_option_message_names_the_closest(typo, valid, want):
  message = console.unknown_argument_message([typo, 'x'], valid)
  name = typo.split('=')[0]
  assert message.startswith(f'unrecognized option {name}')
  assert (f'(did you mean {want}?)' in message) == (want is not None)


def test_stray_value_is_named():
  assert console.unknown_argument_message(['stray'], ['--a']) == (
      "unexpected argument 'stray'")


def test_value_checks():
  assert console.non_negative_int('0') == 0
  assert console.positive_int('3') == 3
  for check, bad in ((console.non_negative_int, '-1'),
                     (console.positive_int, '0'),
                     (console.non_negative_float, '-0.5'),
                     (console.non_negative_float, 'nan')):
    with pytest.raises(argparse.ArgumentTypeError):
      check(bad)


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


def _filtered(lines):
  """What the command's stderr filter lets through of ``lines``."""
  noise = '|'.join(f'(?:{p})' for p in console._NOISE)
  out = subprocess.run(
      [sys.executable, '-I', '-S', '-c', console._FILTER_PROGRAM, noise,
       console._WORKER_RECORD, console._TRACEBACK_LINE],
      input='\n'.join(lines) + '\n', capture_output=True, text=True,
      timeout=60, check=True)
  return out.stdout.splitlines()


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
  ]
  assert _filtered(lines) == [lines[0], lines[10], lines[12], lines[13],
                             lines[14]]


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


def test_beam_notices_are_dropped_on_import():
  """Importing the project before Beam keeps Beam's import notice away."""
  code = 'import model, apache_beam; print("ok")'
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, '-c', code], env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.stdout == 'ok\n' and 'apitools' not in out.stderr


def test_train_checks_its_inputs_before_any_work(tmp_path, trained_bundle):
  manifest = os.path.join(trained_bundle.path, 'manifest.json')
  with open(manifest, 'rb') as f:
    before = f.read()
  out = run_command('model.train', '--train', str(tmp_path / 'nope.jsonl'),
                    '--out', str(tmp_path / 'b'))
  assert out.returncode == 2 and out.stdout == ''
  assert out.stderr == f'error: --train {tmp_path / "nope.jsonl"}: no such ' \
      'file.\n'
  out = run_command('model.train', '--train',
                    os.path.join(ROOT, 'examples', 'corpus.jsonl'), '--out',
                    trained_bundle.path)
  assert out.returncode == 2 and out.stdout == ''
  [line] = out.stderr.splitlines()
  assert line.startswith('error: --out') and '--overwrite' in line
  with open(manifest, 'rb') as f:
    assert f.read() == before
  out = run_command('model.import_keras', '--model', str(tmp_path / 'm.h5'),
                    '--tokenizer', 't.json', '--maxlen', '10', '--out',
                    str(tmp_path / 'b'))
  assert out.returncode == 2
  assert out.stderr.startswith('error: --model') and len(
      out.stderr.splitlines()) == 1


def test_train_prints_a_line_per_epoch_and_a_summary(tmp_path, corpus):
  data = tmp_path / 'small.jsonl'
  data.write_text(''.join(json.dumps(d, ensure_ascii=False) + '\n'
                          for d in corpus[:40]), encoding='utf-8')
  out = run_command('model.train', '--train', str(data), '--out',
                    str(tmp_path / 'bundle'), '--epochs', '2', '--units', '4',
                    '--maxlen', '64', '--w2v_epochs', '1', '--patience', '0')
  assert out.returncode == 0, out.stderr
  lines = out.stderr.splitlines()
  assert lines[0].startswith('Training on ')
  assert len(lines) == 3, out.stderr
  for n, line in enumerate(lines[1:], 1):
    assert re.fullmatch(rf'Epoch {n}/2: loss [\d.]+, val_loss [\d.]+ '
                        r'\([\d.]+ s\)', line), line
  printed = out.stdout.splitlines()
  assert printed[0].startswith('Trained 2 epochs on 40 documents')
  assert printed[-1] == f'Wrote bundle {tmp_path / "bundle"}'
