"""The training and import commands, run as a user runs them (in a
subprocess): ``python -m pipeline.train``, ``python -m pipeline.import_keras``,
and the ``python -m model.*`` lines typed before the commands moved."""

import pytest
import json
import os
import re

from tests.commands import ROOT, run_command

# Each test runs a command.
pytestmark = pytest.mark.slow





def test_train_checks_its_inputs_before_any_work(tmp_path, trained_bundle):
  manifest = os.path.join(trained_bundle.path, 'manifest.json')
  with open(manifest, 'rb') as f:
    before = f.read()
  for command in ('pipeline.train', 'model.train'):
    out = run_command(command, '--train', str(tmp_path / 'nope.jsonl'),
                      '--out', str(tmp_path / 'b'))
    assert out.returncode == 2 and out.stdout == ''
    assert out.stderr == f'error: --train {tmp_path / "nope.jsonl"}: no ' \
        'such file.\n'
  out = run_command('pipeline.train', '--train',
                    os.path.join(ROOT, 'examples', 'corpus.jsonl'), '--out',
                    trained_bundle.path)
  assert out.returncode == 2 and out.stdout == ''
  [line] = out.stderr.splitlines()
  assert line.startswith('error: --out') and '--overwrite' in line
  with open(manifest, 'rb') as f:
    assert f.read() == before
  for command in ('pipeline.import_keras', 'model.import_keras'):
    out = run_command(command, '--model', str(tmp_path / 'm.h5'),
                      '--tokenizer', 't.json', '--maxlen', '10', '--out',
                      str(tmp_path / 'b'))
    assert out.returncode == 2
    assert out.stderr.startswith('error: --model') and len(
        out.stderr.splitlines()) == 1


def test_train_prints_a_line_per_epoch_and_a_summary(tmp_path, corpus):
  data = tmp_path / 'small.jsonl'
  data.write_text(''.join(json.dumps(d, ensure_ascii=False) + '\n'
                          for d in corpus[:40]), encoding='utf-8')
  out = run_command('pipeline.train', '--train', str(data), '--out',
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
