"""Adversarial input through the real pipeline: nothing lost, clear errors."""

import glob
import json
import os

import numpy as np
import pytest

from pipeline.cli import score

BIG = 5 * 1024 * 1024


def _records(outdir, kind):
  out = []
  for path in glob.glob(os.path.join(outdir, f'*{kind}-*-of-*.jsonl')):
    with open(path, encoding='utf-8') as f:
      out += [json.loads(line) for line in f]
  return out


@pytest.mark.slow
def test_every_bad_record_ends_as_score_or_error(tmp_path, trained_bundle):
  path = tmp_path / 'bad.jsonl'
  good = lambda i, text: json.dumps({'id': i, 'text': text}, ensure_ascii=False)
  lines = [
      good('ok', '猫が日なたで丸くなって眠っている。'),
      '{"id": "trunc", "text": "途中で',                    # invalid JSON
      json.dumps({'id': 'notext'}),                        # missing text
      json.dumps({'id': 'null', 'text': None}),            # null text
      json.dumps({'id': 'list', 'text': ['猫']}),           # non-string
      good('empty', ''),
      good('blank', ' \u3000\t '),
      good('nul', '前半\x00後半'),
      good('control', '制御\x07文字\x1bを含む\x0c文章'),
      good('big', '猫が好きです。' * (BIG // 21)),            # ~5 MB of UTF-8
      good('emoji', '😀' * 100_000),
      good('ascii', 'No Japanese here at all, only ASCII words.'),
      good('unknown', 'ｚｙｘｗ ｑｑｑ'),
      good('dup', '犬が好き。'),
      good('dup', '猫が好き。'),
      good(7, '数字のIDです。'),
      good(7.5, '小数のIDです。'),
  ]
  raw = '\n'.join(lines).encode('utf-8') + b'\n' + b'{"id": "latin1", "text": "caf\xe9"}\n'
  path.write_bytes(raw)
  outdir = str(tmp_path / 'out')
  score.run(['--input', str(path), '--model', trained_bundle.path, '--output',
             outdir])
  scores, errors = _records(outdir, 'scores'), _records(outdir, 'errors')
  # Count in = scores + errors, by id.
  assert len(scores) + len(errors) == len(lines) + 1
  scored = sorted(map(str, (r['id'] for r in scores)))
  assert scored == sorted(['ok', 'empty', 'blank', 'control', 'big', 'emoji',
                           'ascii', 'unknown', 'dup', 'dup', '7'])
  by_id = {str(e['id']): e for e in errors}
  assert by_id['nul']['stage'] == 'segment'
  assert 'NUL' in by_id['nul']['reason']
  for key in ('notext', 'null', 'list'):
    assert by_id[key]['stage'] == 'read' and 'text' in by_id[key]['reason']
  assert 'invalid JSON' in by_id[f'{path}:2']['reason']
  assert 'invalid UTF-8' in by_id[f'{path}:{len(lines) + 1}']['reason']
  records = {str(r['id']): r for r in scores if r['id'] != 'dup'}
  empty = trained_bundle.empty_document_scores
  for key in ('empty', 'blank', 'unknown'):
    assert records[key]['n_tokens'] == 0
    np.testing.assert_allclose(records[key]['scores'], empty)
  assert records['big']['truncated'] and records['big']['n_tokens'] > 100_000
  assert records['emoji']['n_tokens'] == 0  # no emoji in the training vocabulary
  assert [r['id'] for r in scores if str(r['id']) == '7'] == [7]
  # Float ids are refused by the id policy, naming the type and the line.
  assert 'received float 7.5' in by_id[f'{path}:17']['reason']
