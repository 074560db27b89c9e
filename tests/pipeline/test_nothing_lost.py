"""Whatever the bytes, through the whole pipeline: every non-blank input record
ends in exactly one scores or errors record, the job succeeds, and every
output line is strict JSON."""

import bz2
import glob
import gzip
import json
import lzma
import os
import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import score

EXAMPLES = int(os.environ.get('NOTHING_LOST_EXAMPLES', '6'))
CODECS = {
    '.gz': gzip.compress, '.bz2': bz2.compress, '.xz': lzma.compress,
    '.lzma': lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE),
    '.zst': lambda b: zstandard.ZstdCompressor().compress(b),
    '.deflate': zlib.compress,
}


def _strict(line: str):
  def refuse(name):
    raise ValueError(f'not strict JSON: {name}')
  return json.loads(line, parse_constant=refuse)


def read_outputs(outdir):
  """Scores and errors as parsed records; every line must be strict JSON."""
  out = {}
  for kind in ('scores', 'errors'):
    records = []
    for path in glob.glob(os.path.join(outdir, f'*{kind}-*-of-*.jsonl')):
      with open(path, 'rb') as f:
        for raw in f:
          records.append(_strict(raw.decode('utf-8')))
    out[kind] = records
  assert not glob.glob(os.path.join(outdir, 'beam-temp-*'))
  return out['scores'], out['errors']


def run(path, bundle, outdir, *flags):
  score.run(['--input', str(path), '--model', bundle.path, '--output',
             str(outdir)] + list(flags))
  return read_outputs(str(outdir))


def test_every_codec_in_one_job(tmp_path, corpus, trained_bundle):
  docs = [{'id': d['id'], 'text': d['text']} for d in corpus[:len(CODECS) * 3]]
  indir = tmp_path / 'in'
  indir.mkdir()
  want = {}
  for i, (suffix, compress) in enumerate(sorted(CODECS.items())):
    part = docs[3 * i:3 * i + 3]
    raw = b'\xef\xbb\xbf' + b'\r\n'.join(
        json.dumps(d, ensure_ascii=False).encode('utf-8') for d in part)
    (indir / f'part{i}.jsonl{suffix}').write_bytes(compress(raw))
    want.update({d['id']: suffix for d in part})
  scores, errors = run(indir / '*', trained_bundle, tmp_path / 'out')
  assert errors == []
  assert sorted(r['id'] for r in scores) == sorted(want)


def test_json_edge_cases_are_scored_or_explained(tmp_path, trained_bundle):
  lines = [
      '\ufeff{"id": "bom", "text": "先頭にBOMがある行"}',   # BOM: first record
      '{"id": "\\ud800", "text": "孤立サロゲートのID"}',
      '{"id": "lone-text", "text": "本文\\udfff"}',
      '{"id": "pair", "text": "絵文字\\ud83d\\ude00"}',      # a valid pair
      '{"id": {"a": 1}, "text": "オブジェクトID"}',
      '{"id": [1], "text": "リストID"}',
      '{"id": true, "text": "真偽値ID"}',
      '{"id": NaN, "text": "NaN"}',
      '{"id": 1e400, "text": "無限大"}',
      '{"id": 12345678901234567890123, "text": "大きすぎる整数"}',
      '{"id": 42, "text": "整数ID"}',
      '{"id": "", "text": "空のID"}',
      '{"text": "IDなし"}',
      '',                                                 # blank: skipped
      '{"id": "crlf", "text": "改行コード"}',
  ]
  path = tmp_path / 'edge.jsonl'
  path.write_bytes('\r\n'.join(lines).encode('utf-8', 'surrogatepass'))
  scores, errors = run(path, trained_bundle, tmp_path / 'out')
  assert sorted(map(str, (r['id'] for r in scores))) == sorted(
      ['bom', 'pair', '42', 'crlf'])
  assert [r['id'] for r in scores if r['id'] == 42] == [42]  # int stays int
  assert len(errors) == len([l for l in lines if l.strip()]) - 4
  by_line = {e['id']: e['reason'] for e in errors}
  assert 'unpaired surrogate' in by_line[f'{path}:2']
  assert 'unpaired surrogate' in errors[[e['id'] for e in errors].index(
      'lone-text')]['reason']
  # NaN is no JSON value (json.loads reads it): the line is invalid JSON.
  for line, kind in ((5, 'dict'), (6, 'list'), (7, 'bool'),
                     (8, 'invalid JSON (NaN is not a JSON value)'),
                     (9, 'float'), (10, 'within 64 bits'), (12, 'empty'),
                     (13, 'missing')):
    assert kind in by_line[f'{path}:{line}'], line


record_strategy = st.one_of(
    st.fixed_dictionaries({
        'id': st.one_of(st.text(max_size=8), st.integers(), st.floats(),
                        st.booleans(), st.none(), st.lists(st.integers(),
                                                           max_size=2)),
        'text': st.one_of(st.text(max_size=40), st.integers(), st.none()),
    }).map(lambda r: json.dumps(r).encode('ascii')),
    st.binary(max_size=40).map(lambda b: b.replace(b'\n', b' ')),
)


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(lines=st.lists(record_strategy, min_size=1, max_size=30),
       split=st.integers(16, 400))
def test_any_lines_through_the_whole_pipeline(tmp_path_factory,
                                              trained_bundle, lines, split):
  tmp = tmp_path_factory.mktemp('fuzz')
  path = tmp / 'fuzz.jsonl'
  path.write_bytes(b'\n'.join(lines) + b'\n')
  scores, errors = run(path, trained_bundle, tmp / 'out', '--split_bytes',
                       str(split))
  non_blank = [l for l in lines if l.decode('utf-8', 'replace').strip()]
  assert len(scores) + len(errors) == len(non_blank)
  sources = [e.get('source') for e in errors] + [None] * len(scores)
  lines_seen = [s for s in sources if s]
  assert len(lines_seen) == len(set(lines_seen))  # no record twice
  for r in scores:
    assert len(r['scores']) == len(trained_bundle.output_names)


def test_non_finite_scores_become_errors(corpus, trained_bundle):
  import apache_beam as beam
  from apache_beam.testing.util import assert_that

  from transforms import ScoreDocuments

  def poisoned(model, padded):
    out = model.predict(padded)
    out[(padded > 0).sum(axis=1) % 2 == 1, 0] = np.nan  # odd lengths
    return out

  docs = [(d['id'], d['text']) for d in corpus[:20]]

  def check(outcomes):
    assert sorted(o[1] for o in outcomes) == sorted(i for i, _ in docs)
    failed = [o for o in outcomes if o[0] == 'error']
    assert failed and len(failed) < len(docs)
    for _, _, stage, reason in failed:
      assert stage == 'inference' and 'non-finite' in reason and 'nan' in reason

  with beam.Pipeline() as p:
    scores, errors = (p | beam.Create(docs)
                      | ScoreDocuments(trained_bundle.path,
                                       inference_fn=poisoned))
    outcomes = (
        (scores | 'Scored' >> beam.Map(lambda r: ('score', r['id'], '', '')),
         errors | 'Failed' >> beam.Map(
             lambda e: ('error', e['id'], e['stage'], e['reason'])))
        | beam.Flatten())
    assert_that(outcomes, check)


def _counters(result, prefix):
  from apache_beam.metrics.metric import MetricsFilter

  from transforms.metrics import NAMESPACE
  found = {}
  for c in result.metrics().query(MetricsFilter().with_namespace(
      NAMESPACE))['counters']:
    if c.key.metric.name.startswith(prefix):
      value = c.committed if c.committed is not None else c.attempted
      found[c.key.metric.name] = found.get(c.key.metric.name, 0) + value
  return found


@pytest.mark.slow
def test_one_file_is_split_over_two_worker_processes(tmp_path, corpus,
                                                     trained_bundle):
  """One input file, two worker processes: both score, same records."""
  path = tmp_path / 'one.jsonl'
  docs = [{'id': f'{i}-{d["id"]}', 'text': d['text']}
          for i in range(3) for d in corpus]
  lines = [json.dumps(d, ensure_ascii=False) for d in docs]
  lines.insert(100, '{"broken": ')
  path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
  whole_scores, whole_errors = run(path, trained_bundle, tmp_path / 'whole',
                                   '--direct_num_workers', '1')
  outdir = tmp_path / 'split'
  result = score.run(['--input', str(path), '--model', trained_bundle.path,
                      '--output', str(outdir), '--split_bytes', '20000',
                      '--direct_running_mode', 'multi_processing',
                      '--direct_num_workers', '2'])
  scores, errors = read_outputs(str(outdir))
  by_id = {r['id']: r for r in whole_scores}
  assert sorted(r['id'] for r in scores) == sorted(by_id)
  for r in scores:
    want = by_id[r['id']]
    assert (r['n_tokens'], r['truncated']) == (want['n_tokens'],
                                               want['truncated'])
    # One TensorFlow thread per worker sums in another order: ~1e-7.
    np.testing.assert_allclose(r['scores'], want['scores'], atol=1e-6)
  assert errors == whole_errors and errors[0]['id'] == f'{path}:101'
  assert _counters(result, 'input_ranges')['input_ranges'] > 4
  workers = _counters(result, 'scored_by_worker:')
  assert len(workers) == 2, workers  # both worker processes scored
  assert sum(workers.values()) == len(docs)
  assert min(workers.values()) > len(docs) // 4  # and shared the work
