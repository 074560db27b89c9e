"""Documents from a real Kafka broker, scores back to it, on Flink streaming.

Runs ``examples/kafka_scoring.py`` as a streaming job on a Flink job server
(embedded Flink, LOOPBACK SDK workers in this process) against a KRaft
broker, all started by `tests.clusters.kafka`: Beam's cross-language
``ReadFromKafka`` reads the documents the test produced, ``WriteToKafka``
writes the scores and the errors. The job never ends by itself: the test
reads the output topic until every document's record is there (or a
deadline passes), then cancels the job. Every id must be scored exactly
once, with the DirectRunner's batch scores (within 1e-6), and the one value
that is not a document must reach the errors topic.
"""

import json
import pathlib
import time

import apache_beam as beam
import numpy as np
import pytest

from examples import kafka_scoring
from tests.clusters import kafka
from transforms import ScoreDocuments

N_DOCS = 20
DEADLINE_SECS = 150

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(kafka.skip_reason() is not None,
                       reason=str(kafka.skip_reason())),
]


@pytest.fixture(scope='module')
def kafka_flink(tmp_path_factory):
  """A broker, the Kafka expansion service and a Flink job server."""
  with kafka.kafka_flink(tmp_path_factory.mktemp('kafka')) as running:
    yield running


def _direct_scores(bundle_path: str, docs: list[tuple[str, str]],
                   out: pathlib.Path) -> dict:
  """The DirectRunner's batch records for ``docs``, by id."""
  with beam.Pipeline() as p:
    scores, _ = (p | 'Docs' >> beam.Create(docs)
                 | 'Score' >> ScoreDocuments(bundle_path))
    _ = (scores | 'ToJson' >> beam.Map(json.dumps)
         | 'Write' >> beam.io.WriteToText(str(out), shard_name_template=''))
  records = [json.loads(line) for line in out.read_text().splitlines()]
  return {r['id']: r for r in records}


def test_kafka_scoring_on_flink_streaming(kafka_flink, trained_bundle,
                                          corpus, tmp_path):
  docs = [(f'k{i}', corpus[i % len(corpus)]['text']) for i in range(N_DOCS)]
  kafka_flink.produce('documents', [
      json.dumps({'id': i, 'text': t}, ensure_ascii=False).encode('utf-8')
      for i, t in docs] + [b'not json'])
  started = time.time()
  result = kafka_scoring.run([
      '--scoring_bundle', trained_bundle.path,
      '--kafka_bootstrap_servers', kafka_flink.bootstrap_servers,
      '--kafka_expansion_service', kafka_flink.expansion_service,
      '--kafka_consumer_group', 'test-kafka-scoring',
      '--scoring_window_secs', '5',
      '--runner', 'PortableRunner', '--job_endpoint', kafka_flink.job_endpoint,
      '--environment_type', 'LOOPBACK', '--parallelism', '1'])
  try:
    records = []
    while len(records) < N_DOCS and time.time() - started < DEADLINE_SECS:
      records = kafka_flink.consume('scores', N_DOCS + 1, timeout=20)
    errors = kafka_flink.consume('score-errors', 2, timeout=10)
    # Read once more, later: a record written twice would show up now.
    records = kafka_flink.consume('scores', N_DOCS + 1, timeout=5)
  finally:
    result.cancel()
  got = [json.loads(r) for r in records]
  assert len(got) == N_DOCS, (len(got), str(kafka_flink.logs))
  assert sorted(r['id'] for r in got) == sorted(i for i, _ in docs)
  want = _direct_scores(trained_bundle.path, docs, tmp_path / 'direct.jsonl')
  for record in got:
    expected = want[record['id']]
    assert (record['n_tokens'], record['truncated']) == (
        expected['n_tokens'], expected['truncated']), record['id']
    np.testing.assert_allclose(record['scores'], expected['scores'],
                               rtol=0, atol=1e-6, err_msg=record['id'])
  assert [json.loads(e)['stage'] for e in errors] == ['parse']
  assert json.loads(errors[0])['record'] == 'not json'
