"""`ScoreDocuments` in a streaming pipeline: TestStream on the DirectRunner.

Every score and error record keeps its document's window and timestamp
(batching stamps a batch with its window's end; the records get their own
back). Late documents, empty windows and bursts are all scored; nothing is
lost, with RunInference's batching or with a wait bound
(``max_batch_duration_secs``: `transforms.batching.CutBatches`).
"""

import contextlib
import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (PipelineOptions,
                                                  StandardOptions)
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from transforms import ScoreDocuments

WINDOW_SECS = 60


class _WithWindow(beam.DoFn):
  """(id, window start, window end, timestamp) of a score or error record."""
  def process(self, record, w=beam.DoFn.WindowParam,
              t=beam.DoFn.TimestampParam):
    yield (record['id'], float(w.start), float(w.end), float(t))


def _stream(events):
  """A TestStream from ``[('docs', [(id, text, ts), ...]) | ('watermark',
  secs) | ('time', secs)]``."""
  stream = TestStream().advance_watermark_to(0)
  for kind, value in events:
    if kind == 'docs':
      stream = stream.add_elements(
          [window.TimestampedValue((doc_id, text), ts)
           for doc_id, text, ts in value])
    elif kind == 'watermark':
      stream = stream.advance_watermark_to(value)
    else:
      stream = stream.advance_processing_time(value)
  return stream.advance_watermark_to_infinity()


@contextlib.contextmanager
def _streaming(bundle_path, events, **score_args):
  """The scores and errors of ``events`` in fixed windows; the pipeline
  runs as the block ends."""
  options = PipelineOptions()
  options.view_as(StandardOptions).streaming = True
  with beam.Pipeline(options=options) as p:
    yield p | 'Stream' >> _stream(events) | 'Window' >> beam.WindowInto(
        window.FixedWindows(WINDOW_SECS)) | 'Score' >> ScoreDocuments(
            bundle_path, **score_args)


def _expected(docs):
  return [(doc_id, ts // WINDOW_SECS * WINDOW_SECS,
           ts // WINDOW_SECS * WINDOW_SECS + WINDOW_SECS, float(ts))
          for doc_id, _, ts in docs]


@pytest.fixture(scope='module')
def texts(corpus):
  return [d['text'] for d in corpus]


# RunInference's batching, and batches cut with a wait bound.
WAIT_BOUNDS = [None, 0.5]


@pytest.mark.parametrize('wait', [
    None, pytest.param(0.5, marks=pytest.mark.slow)])
def test_every_record_keeps_its_window_and_timestamp(trained_bundle, texts,
                                                     wait):
  """On time, late (after the watermark passed its window), after an empty
  window, and a burst of many documents at one instant."""
  on_time = [(f'on-time-{i}', texts[i], 5 + 7 * i) for i in range(6)]
  late = [(f'late-{i}', texts[i], 30 + i) for i in range(2)]
  # No document in [60, 120) or [120, 180): two empty windows.
  burst = [(f'burst-{i}', texts[i % len(texts)], 200) for i in range(150)]
  bad = [('not-text', None, 40), ('number', 17, 230)]
  events = [('docs', on_time + bad[:1]), ('time', 5),
            ('watermark', 61), ('docs', late), ('watermark', 199),
            ('docs', burst + bad[1:])]
  with _streaming(trained_bundle.path, events,
                  max_batch_duration_secs=wait) as (scores, errors):
    assert_that(scores | 'ScoreWindows' >> beam.ParDo(_WithWindow()),
                equal_to(_expected(on_time + late + burst)),
                label='ScoresKeepWindows')
    assert_that(errors | 'ErrorWindows' >> beam.ParDo(_WithWindow()),
                equal_to(_expected(bad)), label='ErrorsKeepWindows')


class _FailingAtWidth:
  """Fails every batch padded to ``width`` tokens or more."""
  def __init__(self, width):
    self.width = width

  def __call__(self, model, padded):
    if padded.shape[1] >= self.width:
      raise RuntimeError('injected failure')
    return model.predict(padded)


@pytest.mark.slow
@pytest.mark.parametrize('wait', WAIT_BOUNDS)
def test_inference_errors_keep_their_timestamps(trained_bundle, texts, wait):
  """A failed batch's documents go to the errors, each with its own
  timestamp and window, not the batch's."""
  long_text = ''.join(texts)  # beyond maxlen: padded to maxlen
  docs = [('ok', '猫が日なたで眠る。', 3), ('fails', long_text, 70)]
  with _streaming(trained_bundle.path, [('docs', docs)],
                  inference_fn=_FailingAtWidth(trained_bundle.maxlen),
                  max_batch_duration_secs=wait) as (
                      scores, errors):
    assert_that(scores | 'ScoreWindows' >> beam.ParDo(_WithWindow()),
                equal_to(_expected(docs[:1])), label='Scores')
    assert_that(
        errors | 'ErrorWindows' >> beam.Map(
            lambda r, t=beam.DoFn.TimestampParam: (r['id'], r['stage'],
                                                  float(t))),
        equal_to([('fails', 'inference', 70.0)]), label='Errors')


@pytest.mark.slow
@pytest.mark.parametrize('wait', WAIT_BOUNDS)
def test_streaming_scores_equal_batch_scores(trained_bundle, texts,
                                            tmp_path, wait):
  """A streaming run gives the scores a batch run gives."""
  docs = [(f'd{i}', text, i) for i, text in enumerate(texts)]
  out = tmp_path / 'batch'
  with beam.Pipeline() as p:
    scores, _ = (p | beam.Create([(d, t) for d, t, _ in docs])
                 | ScoreDocuments(trained_bundle.path))
    _ = (scores | beam.Map(lambda r: json.dumps([r['id'], r['scores']]))
         | beam.io.WriteToText(str(out), shard_name_template=''))
  expected = dict(json.loads(line) for line in out.read_text().splitlines())
  assert len(expected) == len(docs)

  def match(records):
    got = dict(records)
    assert got.keys() == expected.keys()
    for doc_id, row in got.items():
      assert row == pytest.approx(expected[doc_id], abs=1e-6), doc_id

  with _streaming(trained_bundle.path, [('docs', docs)],
                  max_batch_duration_secs=wait) as (scores, _):
    assert_that(scores | beam.Map(lambda r: (r['id'], list(r['scores']))),
                match)
