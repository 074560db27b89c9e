"""The Kafka read's expansion payload for Beam Java 2.62, without Java.

`pipeline.kafka.ReadFromKafka` must send Java 2.62 only the fields its
``KafkaIO.Read.External.Configuration`` has setters for, with Python 2.77's
values unchanged; the end-to-end run is ``tests/pipeline/test_kafka.py``.
"""

import pytest
from apache_beam.coders.row_coder import RowCoder
from apache_beam.portability.api import external_transforms_pb2

from pipeline import kafka

# The setters of Java 2.62's KafkaIO.Read.External.Configuration, in
# Python's field names (javap on beam-sdks-java-io-kafka-2.62.0.jar).
JAVA_262_READ_FIELDS = {
    'consumer_config', 'topics', 'key_deserializer', 'value_deserializer',
    'start_read_time', 'stop_read_time', 'max_num_records', 'max_read_time',
    'commit_offset_in_finalize', 'timestamp_policy',
    'consumer_polling_timeout', 'redistribute_num_keys', 'redistribute',
    'allow_duplicates'}


def _decoded(payload: bytes):
  config = external_transforms_pb2.ExternalConfigurationPayload.FromString(
      payload)
  return ([f.name for f in config.schema.fields],
          RowCoder(config.schema).decode(config.payload))


def test_read_payload_has_only_fields_java_262_knows():
  read = kafka.ReadFromKafka(
      consumer_config={'bootstrap.servers': 'localhost:9092'},
      topics=['documents'], max_num_records=7,
      expansion_service='localhost:1')
  names, row = _decoded(read._payload)
  assert set(names) <= JAVA_262_READ_FIELDS
  assert not set(names) & set(kafka.NEWER_READ_FIELDS)
  assert row.topics == ['documents']
  assert row.consumer_config == {'bootstrap.servers': 'localhost:9092'}
  assert row.max_num_records == 7
  assert row.timestamp_policy == 'ProcessingTime'


def test_read_refuses_an_option_java_262_lacks():
  with pytest.raises(ValueError, match='consumer_factory_fn_class'):
    kafka.ReadFromKafka(
        consumer_config={'bootstrap.servers': 'localhost:9092'},
        topics=['documents'], consumer_factory_fn_class='x.Y',
        consumer_factory_fn_params={'a': 'b'},
        expansion_service='localhost:1')


@pytest.mark.parametrize('name,artifact', [
    ('kafka-clients-3.9.1.jar', 'kafka-clients'),
    ('guava-32.1.3-jre.jar', 'guava'),
    ('beam-vendor-grpc-1_60_1-0.3.jar', 'beam-vendor-grpc'),
    ('kotlin-stdlib-jdk8-1.9.10.jar', 'kotlin-stdlib-jdk8'),
    ('proto-google-cloud-storage-v2-2.32.1-alpha.jar',
     'proto-google-cloud-storage-v2'),
])
def test_artifact_names_from_maven_file_names(name, artifact):
  assert kafka._artifact_name(name) == artifact
