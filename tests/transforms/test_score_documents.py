"""ScoreDocuments and its steps, run with TestPipeline and assert_that."""

import os
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import mixed_length_texts
from transforms import (BundleModelHandler, CoreShare, LookUpTokenIds,
                        ScoreDocuments, SegmentText, TruncateTokenIds)
from transforms.handler import LSTM_BATCH_ROWS, SIGNATURE_BATCH_TOKENS


def _check(pcoll_check):
  def check(actual):
    pcoll_check(list(actual))
  return check


def test_segment_lookup_truncate(trained_bundle, wakati):
  bundle = trained_bundle
  text = '猫が日なたで丸くなって、気持ちよさそうに眠っている。' * 30
  expected_ids, _ = bundle.vocabulary.lookup(bundle.tokenizer.words(wakati(text)))
  with TestPipeline() as p:
    out = (p | beam.Create([('a', text)])
           | 'Segment' >> beam.ParDo(SegmentText(bundle.mecab_args))
           | 'Lookup' >> beam.ParDo(LookUpTokenIds(bundle.path))
           | 'Truncate' >> beam.ParDo(TruncateTokenIds(bundle.maxlen, 'pre')))

    def check(items):
      [(doc_id, doc)] = items
      assert doc_id == 'a'
      assert doc.n_tokens == len(expected_ids) > bundle.maxlen
      assert doc.truncated
      assert doc.ids.tolist() == expected_ids[-bundle.maxlen:].tolist()
    assert_that(out, _check(check))


@pytest.mark.slow
@pytest.mark.parametrize('scoring_function', ['auto', 'signature'])
def test_scores_equal_the_classic_keras_pipeline(imported_bundle, classic,
                                                 corpus, scoring_function):
  """Whatever batch a document lands in, its scores are the classic ones."""
  texts = mixed_length_texts(corpus)
  expected = classic.predict(texts)
  maxlen = classic.maxlen
  for batch_tokens in (maxlen, 4 * maxlen, 1 << 17):
    with TestPipeline() as p:
      scores, errors = (
          p | f'Create{batch_tokens}' >> beam.Create(list(enumerate(texts)))
          | f'Score{batch_tokens}' >> ScoreDocuments(
              imported_bundle.path, batch_tokens=batch_tokens,
              sort_buffer_tokens=150, scoring_function=scoring_function))

      def check(records, expected=expected):
        assert len(records) == len(texts)
        for r in records:
          np.testing.assert_allclose(r['scores'], expected[r['id']],
                                     atol=1e-5)
        longest = max(records, key=lambda r: r['n_tokens'])
        assert longest['truncated'] and longest['n_tokens'] > maxlen
      assert_that(scores, _check(check), label='CheckScores')
      assert_that(errors, equal_to([]), label='CheckNoErrors')


def test_fixed_length_bundle_matches_keras(tmp_path, classic_unmasked, corpus):
  from model.import_keras import import_keras_model
  bundle = import_keras_model(classic_unmasked.keras_path,
                              classic_unmasked.tokenizer_path,
                              str(tmp_path / 'b'),
                              maxlen=classic_unmasked.maxlen)
  texts = mixed_length_texts(corpus) + ['']
  expected = classic_unmasked.predict(texts)
  with TestPipeline() as p:
    scores, _ = (p | beam.Create(list(enumerate(texts)))
                 | ScoreDocuments(bundle.path))

    def check(records):
      assert len(records) == len(texts)
      for r in records:
        np.testing.assert_allclose(r['scores'], expected[r['id']], atol=1e-5)
    assert_that(scores, _check(check))


BAD = [
    ('nul', '前半\x00後半', 'segment', 'NUL character'),
    ('none', None, 'segment', 'received NoneType'),
    ('number', 12, 'segment', 'received int'),
]


def test_bad_records_go_to_errors_and_empty_ones_are_scored(trained_bundle):
  good = [('g1', '猫が好きです。'), ('g2', 'ピアノを弾く。' * 50)]
  empty = [('empty', ''), ('blank', '  \n\t'), ('unknown', 'ｚｚｚ ｑｑｑ')]
  inputs = good + empty + [(i, t) for i, t, _, _ in BAD]
  with TestPipeline() as p:
    scores, errors = (p | beam.Create(inputs)
                      | ScoreDocuments(trained_bundle.path))

    empty_scores = trained_bundle.empty_document_scores

    def check_scores(records):
      by_id = {r['id']: r for r in records}
      assert set(by_id) == {i for i, _ in good + empty}
      for i, _ in empty:
        if by_id[i]['n_tokens'] == 0:
          np.testing.assert_allclose(by_id[i]['scores'], empty_scores)
      assert by_id['empty']['n_tokens'] == 0
      assert by_id['blank']['n_tokens'] == 0

    def check_errors(records):
      assert sorted((r['id'], r['stage']) for r in records) == sorted(
          (i, s) for i, _, s, _ in BAD)
      reasons = {r['id']: r['reason'] for r in records}
      for i, _, _, fragment in BAD:
        assert fragment in reasons[i]
    assert_that(scores, _check(check_scores), label='Scores')
    assert_that(errors, _check(check_errors), label='Errors')


def _fail_on_marker(marker_id):
  def inference_fn(model, padded):
    if (padded == marker_id).any():
      raise RuntimeError('injected inference failure')
    return model.predict(padded)
  return inference_fn


def test_failed_batch_goes_to_dead_letter(trained_bundle, corpus, wakati):
  bundle = trained_bundle
  marker_word = bundle.vocabulary.tokens[-1]
  marker_id = bundle.vocabulary.size
  docs = [(d['id'], d['text']) for d in corpus[:30]]
  docs.append(('poison', marker_word))
  with TestPipeline() as p:
    scores, errors = (
        p | beam.Create(docs)
        | ScoreDocuments(bundle.path, batch_tokens=bundle.maxlen,
                         inference_fn=_fail_on_marker(marker_id)))

    def check_errors(records):
      ids = {r['id'] for r in records}
      assert 'poison' in ids
      assert all(r['stage'] == 'inference' for r in records)
      assert all('injected inference failure' in r['reason'] for r in records)

    scored_ids = scores | 'ScoredIds' >> beam.Map(lambda r: r['id'])
    error_ids = errors | 'ErrorIds' >> beam.Map(lambda r: r['id'])
    everything = ((scored_ids, error_ids) | beam.Flatten()
                  | beam.combiners.ToList()
                  | beam.Map(lambda ids: (sorted(map(str, ids)), len(ids))))
    assert_that(errors, _check(check_errors), label='Errors')
    assert_that(everything, equal_to([(sorted(i for i, _ in docs), len(docs))]),
                label='Everything')
    # Most of the corpus is still scored.
    assert_that(scores | beam.combiners.Count.Globally(),
                _check(lambda n: n[0] >= len(docs) // 2), label='MostScored')


def test_handler_batches_within_token_budget(trained_bundle, rng):
  handler = BundleModelHandler(trained_bundle.path, batch_tokens=1000)
  model = handler.load_model()
  seen = []

  def spy(model, padded):
    seen.append(padded.shape)
    return model.predict(padded)
  handler._inference_fn = spy
  batch = [rng.integers(1, 50, n).astype(np.int32)
           for n in (3, 290, 5, 280, 0, 7, 300)]
  results = handler.run_inference(batch, model)
  assert [r.example is e for r, e in zip(results, batch)] == [True] * 7
  assert all(rows * width <= 1000 for rows, width in seen)
  assert sum(rows for rows, _ in seen) == 6  # the empty one skips the model
  np.testing.assert_allclose(results[4].inference,
                             trained_bundle.empty_document_scores)
  direct = model.predict(trained_bundle.pad([batch[1]]))[0]
  np.testing.assert_allclose(results[1].inference, direct, atol=1e-6)


@pytest.mark.parametrize('scoring_function,kind,chunks', [
    ('auto', 'lstm', 4), ('signature', 'signature', 2)])
def test_signature_batches_are_split_further(trained_bundle, rng,
                                             scoring_function, kind, chunks):
  """The signature holds ~100 floats per token; the fast loop caps rows."""
  handler = BundleModelHandler(trained_bundle.path, batch_tokens=1 << 21,
                               scoring_function=scoring_function)
  model = handler.load_model()
  assert model.predict.kind == kind
  seen = []

  def spy(model, padded):
    seen.append(padded.shape)
    return np.zeros((len(padded), 8), np.float32)
  handler._inference_fn = spy
  width = trained_bundle.maxlen
  rows = SIGNATURE_BATCH_TOKENS // width + 10
  handler.run_inference([rng.integers(1, 50, width).astype(np.int32)
                         for _ in range(rows)], model)
  assert len(seen) == chunks and sum(r for r, _ in seen) == rows
  if kind == 'signature':
    assert all(r * w <= SIGNATURE_BATCH_TOKENS for r, w in seen)
  else:
    assert all(r <= LSTM_BATCH_ROWS for r, _ in seen)


def test_unknown_scoring_function_is_refused(trained_bundle):
  with pytest.raises(ValueError, match="scoring_function must be one of"):
    BundleModelHandler(trained_bundle.path, scoring_function='fast')


@pytest.mark.parametrize('wait', [0, -2.5, '1', True, float('inf') * 0])
def test_a_wait_bound_must_be_a_positive_number(trained_bundle, wait):
  with pytest.raises(ValueError, match='max_batch_duration_secs must be a '
                     'positive number'):
    ScoreDocuments(trained_bundle.path, max_batch_duration_secs=wait,
                   validate=False)


def test_bad_bundle_fails_at_construction(tmp_path):
  from model.bundle import BundleError
  with pytest.raises(BundleError, match='manifest.json'):
    ScoreDocuments(str(tmp_path / 'missing'))


@pytest.mark.parametrize('corruption,fragment', [
    ('truncate_variables', 'checksum differs'),
    ('newer_version', 'newer than this package'),
    ('fewer_outputs', 'manifest names 7 outputs'),
])
def test_bad_bundles_fail_before_the_pipeline_runs(trained_bundle, tmp_path,
                                                   corruption, fragment):
  import json
  import os
  import shutil
  from model.bundle import BundleError
  path = str(tmp_path / 'b')
  shutil.copytree(trained_bundle.path, path)
  manifest_path = os.path.join(path, 'manifest.json')
  with open(manifest_path, encoding='utf-8') as f:
    manifest = json.load(f)
  if corruption == 'truncate_variables':
    variables = os.path.join(path, 'saved_model', 'variables')
    name = next(n for n in os.listdir(variables) if n.startswith('variables.data'))
    with open(os.path.join(variables, name), 'r+b') as f:
      f.truncate(10)
  elif corruption == 'newer_version':
    manifest['format_version'] = 99
  else:
    manifest['outputs'] = manifest['outputs'][:7]
    manifest['empty_document_scores'] = manifest['empty_document_scores'][:7]
  with open(manifest_path, 'w', encoding='utf-8') as f:
    json.dump(manifest, f)
  p = TestPipeline()
  docs = p | beam.Create([('a', '猫')])
  with pytest.raises(BundleError, match=fragment):
    _ = docs | ScoreDocuments(path)


def test_scores_with_a_bundle_on_a_remote_filesystem(trained_bundle):
  import tests.memfs as memfs
  remote = 'memfs://bucket/score/bundle'
  memfs.upload_tree(trained_bundle.path, remote)
  docs = [('a', '猫が好きです。'), ('b', '')]
  with TestPipeline() as p:
    local, _ = (p | 'CreateLocal' >> beam.Create(docs)
                | 'Local' >> ScoreDocuments(trained_bundle.path))
    remote_scores, _ = (p | 'CreateRemote' >> beam.Create(docs)
                        | 'Remote' >> ScoreDocuments(remote))
    key = lambda r: (r['id'], tuple(r['scores']), r['n_tokens'])
    # Each record appears twice: once from each bundle, identical.
    both = ((local | 'KL' >> beam.Map(key), remote_scores | 'KR' >> beam.Map(key))
            | beam.Flatten() | beam.combiners.Count.PerElement()
            | beam.Map(lambda kv: kv[1]))
    assert_that(both, equal_to([2, 2]), label='SameRecords')


@pytest.mark.slow
def test_tf_threads_are_sized_before_the_probe_starts_tensorflow(
    trained_bundle):
  """An in-process job probes the model as it is built: the threads asked
  for must be set first, or TensorFlow keeps its default (every core)."""
  script = (
      'import sys\n'
      'from transforms import ScoreDocuments\n'
      'ScoreDocuments(sys.argv[1], tf_threads=3)\n'
      'import tensorflow as tf\n'
      'print(tf.config.threading.get_intra_op_parallelism_threads(),\n'
      '      tf.config.threading.get_inter_op_parallelism_threads())\n')
  done = subprocess.run([sys.executable, '-c', script, trained_bundle.path],
                        capture_output=True, text=True, timeout=120,
                        check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split() == ['3', '3']


@pytest.mark.parametrize('processes', [0, -1, 1.5, True, '2'])
def test_a_core_share_needs_a_positive_count(processes):
  with pytest.raises(ValueError, match='positive number of processes'):
    CoreShare(processes)


@pytest.mark.parametrize('cores, processes, threads', [
    (1, 1, 1), (1, 2, 1), (2, 2, 1), (2, 1, 2), (8, 3, 2), (64, 16, 4)])
def test_a_core_share_divides_the_cores_and_keeps_one(cores, processes,
                                                       threads):
  assert CoreShare(processes).threads(cores=cores) == threads


@pytest.mark.slow
@pytest.mark.parametrize('cpus, processes', [([0], 1), ([0], 2), ([0, 1], 2),
                                             ([0, 1], 1)])
def test_a_core_share_is_counted_where_the_model_loads(trained_bundle, cpus,
                                                        processes):
  """A cluster worker sizes TensorFlow by its own cores: here a process
  pinned to ``cpus`` loads the model through a pickled handler."""
  if len(cpus) > len(os.sched_getaffinity(0)):
    pytest.skip(f'needs {len(cpus)} cores')
  script = (
      'import os, pickle, sys\n'
      'from transforms import BundleModelHandler, CoreShare\n'
      'handler = pickle.dumps(BundleModelHandler(\n'
      '    sys.argv[1], tf_threads=CoreShare(int(sys.argv[2]))))\n'
      'os.sched_setaffinity(0, [int(c) for c in sys.argv[3:]])\n'
      'pickle.loads(handler).load_model()\n'
      'import tensorflow as tf\n'
      'print(tf.config.threading.get_intra_op_parallelism_threads(),\n'
      '      tf.config.threading.get_inter_op_parallelism_threads())\n')
  done = subprocess.run(
      [sys.executable, '-c', script, trained_bundle.path, str(processes),
       *map(str, cpus)], capture_output=True, text=True, timeout=120,
      check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  expected = str(max(1, len(cpus) // processes))
  assert done.stdout.split() == [expected, expected]
