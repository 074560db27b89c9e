"""Streaming example: score documents from a Kafka topic, write scores to one.

Shows ``ScoreDocuments`` in a streaming pipeline between Beam's
cross-language Kafka transforms: documents arrive as JSON values
``{"id", "text"}`` on an input topic, are windowed and scored with
``max_batch_duration_secs=1`` (no document waits more than about a second
for its batch), and each score record leaves as JSON on the output topic,
keyed by the document's id. Values that are not such a document, and
documents that fail to score, go to the errors topic as ``{"id", "stage",
"reason"}``.

``ReadFromKafka`` and ``WriteToKafka`` are Java transforms: they need a
Kafka expansion service (``python -m pipeline.kafka`` fetches
one; start it with `pipeline.kafka.EXPANSION_OPTIONS`) and a
runner that runs Java, here a Flink job server with KafkaIO on its
classpath (`pipeline.kafka.job_server_jars`;
``tests/clusters/kafka.py`` starts all of it). Run it::

  python examples/kafka_scoring.py --scoring_bundle bundles/example \\
      --kafka_bootstrap_servers localhost:9092 \\
      --kafka_expansion_service localhost:8097 \\
      --runner PortableRunner --job_endpoint localhost:8099 \\
      --environment_type LOOPBACK --streaming

It runs until cancelled.
"""

import json
import logging
import sys
from typing import Any, Iterator, Optional, Sequence

import apache_beam as beam
from apache_beam.io.kafka import WriteToKafka
from apache_beam.options.pipeline_options import (PipelineOptions,
                                                  StandardOptions)
from apache_beam.runners.runner import PipelineResult
from apache_beam.transforms import window

from pipeline.kafka import ReadFromKafka
from transforms import ScoreDocuments

_LOGGER = logging.getLogger(__name__)
PARSE_ERRORS = 'parse_errors'


class KafkaScoringOptions(PipelineOptions):
  """The example's flags; Beam's runner flags go beside them.

  Names carry a prefix so that they clash with no other option class in a
  process (Beam's own ``--bootstrap_servers``, `pipeline.score`'s
  ``--model``). None is ``required`` for argparse: Beam parses every
  option class again wherever it builds options (workers included), with
  none of this example's flags; `run` checks them instead.
  """
  REQUIRED = ('scoring_bundle', 'kafka_bootstrap_servers',
              'kafka_expansion_service')
  @classmethod
  def _add_argparse_args(cls, parser):
    parser.add_argument('--scoring_bundle',
                        help='bundle directory (any Beam filesystem)')
    parser.add_argument('--kafka_bootstrap_servers',
                        help='the brokers, host:port[,host:port...]')
    parser.add_argument('--kafka_expansion_service',
                        help='host:port of a Beam Kafka expansion service')
    parser.add_argument('--kafka_input_topic', default='documents',
                        help='topic of JSON documents {"id", "text"}')
    parser.add_argument('--kafka_output_topic', default='scores',
                        help='topic the score records go to')
    parser.add_argument('--kafka_errors_topic', default='score-errors',
                        help='topic the errors go to')
    parser.add_argument('--kafka_consumer_group', default='ja-doc-scorer',
                        help='consumer group.id of the read')
    parser.add_argument('--scoring_window_secs', type=float, default=10.0,
                        help='fixed windows of this many seconds')


class ParseDocument(beam.DoFn):
  """A Kafka value (JSON bytes) -> ``(id, text)``; else a parse error."""

  def process(self, record: tuple[Optional[bytes], Optional[bytes]]
              ) -> Iterator[Any]:
    _, value = record
    value = value or b''  # a tombstone (null value) is no document either
    try:
      doc = json.loads(value.decode('utf-8'))
      if not isinstance(doc, dict):
        raise ValueError(f'a JSON {type(doc).__name__}, not an object')
      doc_id, text = doc.get('id'), doc.get('text')
      if doc_id is None or not isinstance(text, str):
        raise ValueError('"id" and a string "text" are required')
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError too
      yield beam.pvalue.TaggedOutput(PARSE_ERRORS, {
          'id': None, 'stage': 'parse', 'reason': str(e),
          'record': value.decode('utf-8', errors='replace')})
      return
    yield str(doc_id), text


def _keyed_json(record: dict) -> tuple[bytes, bytes]:
  """A record -> (its id, its JSON) as a Kafka key and value."""
  key = b'' if record.get('id') is None else str(record['id']).encode()
  return key, json.dumps(record, ensure_ascii=False).encode('utf-8')


def build(pipeline: beam.Pipeline, opts: KafkaScoringOptions,
          scorer: ScoreDocuments) -> None:
  """Adds the read, parse, window, score and write steps to ``pipeline``."""
  servers = {'bootstrap.servers': opts.kafka_bootstrap_servers}
  records = (
      pipeline
      | 'ReadDocuments' >> ReadFromKafka(
          consumer_config={**servers, 'auto.offset.reset': 'earliest',
                           'group.id': opts.kafka_consumer_group},
          topics=[opts.kafka_input_topic],
          expansion_service=opts.kafka_expansion_service)
      | 'WindowRecords' >> beam.WindowInto(
          window.FixedWindows(opts.scoring_window_secs)))
  parsed = records | 'ParseDocuments' >> beam.ParDo(
      ParseDocument()).with_outputs(PARSE_ERRORS, main='documents')
  scores, errors = parsed.documents | 'ScoreDocuments' >> scorer

  def write(records: beam.PCollection, name: str, topic: str) -> None:
    _ = (records
         | f'{name}ToKafkaRecords' >> beam.Map(_keyed_json).with_output_types(
             tuple[bytes, bytes])
         | f'Write{name}' >> WriteToKafka(
             producer_config=servers, topic=topic,
             expansion_service=opts.kafka_expansion_service))

  write(scores, 'Scores', opts.kafka_output_topic)
  all_errors = ((parsed[PARSE_ERRORS], errors)
                | 'AllErrors' >> beam.Flatten())
  write(all_errors, 'Errors', opts.kafka_errors_topic)


def run(argv: Optional[Sequence[str]] = None) -> PipelineResult:
  """Builds and starts the streaming pipeline; returns at once.

  The caller waits (``wait_until_finish``) or cancels the result; with
  ``--environment_type LOOPBACK`` this process runs the Python steps, so it
  must outlive the job.

  Raises:
    ValueError: a required flag is missing.
  """
  options = PipelineOptions(argv)
  options.view_as(StandardOptions).streaming = True
  opts = options.view_as(KafkaScoringOptions)
  missing = [f'--{name}' for name in KafkaScoringOptions.REQUIRED
             if not getattr(opts, name)]
  if missing:
    raise ValueError(f'missing {", ".join(missing)}')
  scorer = ScoreDocuments(opts.scoring_bundle, max_batch_duration_secs=1)
  pipeline = beam.Pipeline(options=options)
  build(pipeline, opts, scorer)
  _LOGGER.info('Scoring %s -> %s (errors: %s) on %s',
               opts.kafka_input_topic, opts.kafka_output_topic,
               opts.kafka_errors_topic, opts.kafka_bootstrap_servers)
  return pipeline.run()


if __name__ == '__main__':
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
  run(sys.argv[1:]).wait_until_finish()
