"""Model refresh: ``ScoreDocuments(..., model_updates=...)`` and
`transforms.refresh`.

Streaming runs use TestStream on the DirectRunner: documents before and
after a bundle path arrives on ``model_updates``, with processing time and
the watermark advanced between them so that each event is processed before
the next.
"""

import json
import logging
import shutil
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (PipelineOptions,
                                                  StandardOptions)
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window
from apache_beam.typehints import schemas
from apache_beam.utils.timestamp import Timestamp

from model.bundle import MANIFEST, BundleError
from transforms import ScoreDocuments
from transforms.records import (score_field_names, score_field_types,
                                scored_record)
from transforms.handler import ScoringModels
from transforms.refresh import WatchBundles, check_bundle_update

WINDOW_SECS = 60


@pytest.fixture(scope='module')
def texts(corpus):
  return [d['text'] for d in corpus]


def _stream(events):
  """A TestStream with outputs ``docs`` and ``updates`` from ``[('docs',
  [(id, text, ts), ...]) | ('update', path) | ('advance', secs)]``;
  ``advance`` moves processing time and the watermark on by ``secs``."""
  stream = TestStream().advance_watermark_to(0)
  now = 0
  for kind, value in events:
    if kind == 'docs':
      stream = stream.add_elements(
          [window.TimestampedValue((doc_id, text), ts)
           for doc_id, text, ts in value], tag='docs')
    elif kind == 'update':
      stream = stream.add_elements(
          [window.TimestampedValue(value, now)], tag='updates')
    else:
      now += value
      stream = stream.advance_processing_time(value).advance_watermark_to(
          now, tag='docs').advance_watermark_to(now, tag='updates')
  return stream.advance_watermark_to_infinity()


def _run_streaming(bundle_path, events, check_scores, check_errors,
                   **score_args):
  """Runs the pipeline; returns its result (for its metrics)."""
  options = PipelineOptions()
  options.view_as(StandardOptions).streaming = True
  p = beam.Pipeline(options=options)
  streams = p | 'Stream' >> _stream(events)
  docs = streams['docs'] | 'Window' >> beam.WindowInto(
      window.FixedWindows(WINDOW_SECS))
  scores, errors = docs | 'Score' >> ScoreDocuments(
      bundle_path, model_updates=streams['updates'], **score_args)
  assert_that(
      scores | 'WithWindow' >> beam.Map(
          lambda r, w=beam.DoFn.WindowParam, t=beam.DoFn.TimestampParam:
          (r, float(w.start), float(t))),
      check_scores, label='CheckScores')
  assert_that(errors, check_errors, label='CheckErrors')
  result = p.run()
  result.wait_until_finish()
  return result


class _Records(logging.Handler):
  """Keeps the records of the logger it is added to (this test's own
  handler, on ``transforms.refresh`` itself, whatever the root has)."""
  def __init__(self):
    super().__init__(logging.DEBUG)
    self.messages = []

  def emit(self, record):
    self.messages.append((record.levelno, record.getMessage()))


def _batch_scores(bundle_path, docs, out):
  """``{id: scores}`` of a plain batch run with one bundle; each bundle's
  ``n_tokens`` and ``truncated`` under ``(id, 'counts')``."""
  with beam.Pipeline() as p:
    scores, _ = (p | beam.Create([(d, t) for d, t, _ in docs])
                 | ScoreDocuments(bundle_path))
    _ = (scores | beam.Map(lambda r: json.dumps(
        [r['id'], r['scores'], [r['n_tokens'], r['truncated']]]))
         | beam.io.WriteToText(str(out), shard_name_template=''))
  found = {}
  for line in out.read_text().splitlines():
    doc_id, scores, counts = json.loads(line)
    found[doc_id] = scores
    found[doc_id, 'counts'] = counts
  return found


def _docs(prefix, texts, start):
  return [(f'{prefix}-{i}', text, start + i) for i, text in enumerate(texts)]


@pytest.mark.slow
@pytest.mark.parametrize('wait', [None, 0.5])
def test_documents_after_an_update_are_scored_by_the_new_bundle(
    trained_bundle, second_bundle, texts, tmp_path, wait):
  """With RunInference's batching, and with batches cut under a wait
  bound."""
  before = _docs('before', texts[:12], 1)
  # The long one is cut to each bundle's own maxlen (300, then 120).
  after = _docs('after', texts[:12] + texts[12:18] + [''.join(texts[:10])],
                70)
  first = _batch_scores(trained_bundle.path, before + after,
                        tmp_path / 'first')
  second = _batch_scores(second_bundle.path, before + after,
                         tmp_path / 'second')
  # The bundles differ: another vocabulary, another model.
  assert any(abs(a - b) > 1e-3 for d, _, _ in before + after
             for a, b in zip(first[d], second[d]))
  assert first['after-18', 'counts'][1] and second['after-18', 'counts'][1]
  expected = {**{d: (trained_bundle.path, first) for d, _, _ in before},
              **{d: (second_bundle.path, second) for d, _, _ in after}}
  stamps = {d: (ts // WINDOW_SECS * WINDOW_SECS, ts)
            for d, _, ts in before + after}

  def check_scores(rows):
    ids = [r['id'] for r, _, _ in rows]
    assert sorted(ids) == sorted(expected), 'each document exactly once'
    for record, start, ts in rows:
      doc_id = record['id']
      model_id, batch = expected[doc_id]
      assert list(record) == ['id', 'scores', 'n_tokens', 'truncated',
                              'model_id']
      assert record['model_id'] == model_id, doc_id
      assert record['scores'] == pytest.approx(batch[doc_id], abs=1e-6), (
          doc_id)
      assert [record['n_tokens'], record['truncated']] == batch[
          doc_id, 'counts'], doc_id
      assert (start, ts) == stamps[record['id']]

  events = [('docs', before), ('advance', 30),
            ('update', second_bundle.path), ('advance', 30),
            ('docs', after)]
  _run_streaming(trained_bundle.path, events, check_scores, equal_to([]),
                 max_batch_duration_secs=wait)


def _corrupt_copy(bundle, root):
  copy = root / 'corrupt'
  shutil.copytree(bundle.path, copy)
  with open(copy / 'vocabulary.txt', 'a', encoding='utf-8') as f:
    f.write('余計な単語\n')
  return str(copy)


def _incompatible_copy(bundle, root):
  """Sound on its own, but its outputs are named otherwise."""
  copy = root / 'incompatible'
  shutil.copytree(bundle.path, copy)
  manifest = json.loads((copy / MANIFEST).read_text(encoding='utf-8'))
  manifest['outputs'] = [f'renamed_{name}' for name in manifest['outputs']]
  (copy / MANIFEST).write_text(json.dumps(manifest), encoding='utf-8')
  return str(copy)


def test_check_bundle_update_refuses_bad_and_incompatible_bundles(
    trained_bundle, tmp_path):
  checks = {'output_names': trained_bundle.output_names,
            'mecab_args': trained_bundle.mecab_args, 'batch_tokens': 4096}
  check_bundle_update(trained_bundle.path, **checks)
  with pytest.raises(BundleError, match='checksum differs'):
    check_bundle_update(_corrupt_copy(trained_bundle, tmp_path), **checks)
  with pytest.raises(BundleError, match='expected the outputs'):
    check_bundle_update(_incompatible_copy(trained_bundle, tmp_path),
                        **checks)
  with pytest.raises(BundleError, match='MeCab arguments'):
    check_bundle_update(trained_bundle.path,
                        **{**checks, 'mecab_args': '-r /dev/null'})
  with pytest.raises(BundleError, match='cannot read the manifest'):
    check_bundle_update(str(tmp_path / 'nothing'), **checks)


@pytest.mark.slow
def test_a_refused_bundle_leaves_the_previous_one_scoring(
    trained_bundle, texts, tmp_path):
  corrupt = _corrupt_copy(trained_bundle, tmp_path)
  incompatible = _incompatible_copy(trained_bundle, tmp_path)
  docs = [_docs(f'part{i}', texts[6 * i:6 * i + 6], 1 + 40 * i)
          for i in range(3)]
  first = _batch_scores(trained_bundle.path, sum(docs, []),
                        tmp_path / 'first')

  def check_scores(rows):
    assert sorted(r['id'] for r, _, _ in rows) == sorted(
        d for d in first if isinstance(d, str))
    for record, _, _ in rows:
      assert record['model_id'] == trained_bundle.path
      assert record['scores'] == pytest.approx(first[record['id']],
                                               abs=1e-6)

  events = [('docs', docs[0]), ('advance', 30), ('update', corrupt),
            ('advance', 30), ('docs', docs[1]), ('advance', 30),
            ('update', incompatible), ('advance', 30), ('docs', docs[2])]
  logger, records = logging.getLogger('transforms.refresh'), _Records()
  logger.addHandler(records)
  level, logger.level = logger.level, logging.INFO
  try:
    _run_streaming(trained_bundle.path, events, check_scores, equal_to([]))
  finally:
    logger.removeHandler(records)
    logger.setLevel(level)
  refusals = [m for levelno, m in records.messages
              if levelno == logging.WARNING]
  assert any(corrupt in m and 'checksum differs' in m for m in refusals), (
      refusals)
  assert any(incompatible in m and 'expected the outputs' in m
             for m in refusals), refusals


def test_model_id_is_a_score_field_only_with_updates():
  assert score_field_names(['a'], 'list') == ['scores', 'n_tokens',
                                              'truncated']
  assert score_field_names(['a'], 'columns', model_id=True) == [
      'a', 'n_tokens', 'truncated', 'model_id']
  assert score_field_types(['a'], 'list', model_id=True)[-1] == (
      'model_id', str)
  assert list(scored_record('x', [0.5], 3, False, output_names=['a'],
                            scores_as='list', model_id='/b/1')) == [
      'id', 'scores', 'n_tokens', 'truncated', 'model_id']
  assert 'model_id' not in scored_record('x', [0.5], 3, False,
                                         output_names=['a'],
                                         scores_as='list')


def test_model_updates_must_be_a_pcollection(trained_bundle):
  with pytest.raises(TypeError, match='PCollection of bundle paths'):
    ScoreDocuments(trained_bundle.path, model_updates=['/a/bundle'],
                   validate=False)


@pytest.mark.slow
def test_watch_bundles_emits_each_new_complete_bundle_once(tmp_path):
  def make(name, manifest=True):
    directory = tmp_path / name
    directory.mkdir()
    (directory / 'vocabulary.txt').write_text('猫\n', encoding='utf-8')
    if manifest:
      (directory / MANIFEST).write_text('{}', encoding='utf-8')
    return str(directory)

  present = make('v1')
  make('partial', manifest=False)  # No manifest yet: not a bundle.
  later = str(tmp_path / 'v2')
  timer = threading.Timer(1.0, make, ('v2',))
  options = PipelineOptions()
  options.view_as(StandardOptions).streaming = True
  timer.start()
  try:
    with beam.Pipeline(options=options) as p:
      stop = Timestamp.of(time.time() + 3)
      new = p | 'New' >> WatchBundles(str(tmp_path / '*'), interval=0.5,
                                      stop_timestamp=stop)
      every = p | 'Every' >> WatchBundles(
          str(tmp_path / '*'), interval=0.5, include_existing=True,
          stop_timestamp=stop)
      assert_that(new, equal_to([later]), label='CheckNew')
      assert_that(every, equal_to([present, later]), label='CheckEvery')
  finally:
    timer.cancel()


@pytest.mark.slow
def test_rows_get_a_model_id_field_in_their_schema(trained_bundle, texts):
  """Schema'd rows: ``model_id: str`` after the score fields; here in a
  batch pipeline whose updates are empty, so the first bundle scores."""
  rows = [beam.Row(id=f'r{i}', text=text, n=i)
          for i, text in enumerate(texts[:5])]
  with beam.Pipeline() as p:
    updates = p | 'NoUpdates' >> beam.Create([]).with_output_types(str)
    scored, errors = (p | beam.Create(rows)
                      | ScoreDocuments(trained_bundle.path, id_field='id',
                                       model_updates=updates))
    assert_that(
        scored | beam.Map(lambda r: (r.id, r.n, r.model_id)),
        equal_to([(r.id, r.n, trained_bundle.path) for r in rows]),
        label='CheckRows')
    assert_that(errors, equal_to([]), label='CheckNoErrors')
  fields = [name for name, _ in schemas.named_fields_from_element_type(
      scored.element_type)]
  assert fields == ['id', 'text', 'n', 'scores', 'n_tokens', 'truncated',
                    'model_id']


def test_scoring_models_load_each_bundle_once_and_keep_the_latest():
  loads = []

  def load(path):
    loads.append(path)
    return f'model of {path}'

  models = ScoringModels(load)
  assert models.get('/b/1') == 'model of /b/1'
  assert models.get('/b/1') == 'model of /b/1'
  for i in range(2, 2 + ScoringModels.MODELS_KEPT):
    models.get(f'/b/{i}')
  models.get('/b/1')  # Evicted by then: loaded again.
  assert loads == ['/b/1'] + [f'/b/{i}' for i in
                              range(2, 2 + ScoringModels.MODELS_KEPT)] + [
                                  '/b/1']
