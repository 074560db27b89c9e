"""Beam's Kafka expansion service, fetched with Maven; a ReadFromKafka for it.

Why this module exists: Beam's ``ReadFromKafka`` and ``WriteToKafka`` are
Java transforms, expanded by a Java expansion service and run by a Java SDK
harness. Beam's Python SDK would download its shaded IO expansion service
(``beam-sdks-java-io-expansion-service``), which the registry here does not
serve; `EXPANSION_SERVICE` assembles one with Maven instead, and
`EXPANSION_OPTIONS` and `job_server_jars` say how to run it beside a Flink
job server (``python -m pipeline.kafka`` fetches it ahead of time).

Version skew: the registry serves Beam Java no newer than
`pipeline.job_servers.PINNED_BEAM_JAVA` (2.62) for the pieces a Flink job
server and a Kafka expansion service need, while the Python SDK is 2.77.
Python 2.77's ``ReadFromKafka`` sends three configuration fields Java 2.62's
``KafkaIO.Read.External.Configuration`` has no setter for
(``dynamic_read_poll_interval_seconds``, ``consumer_factory_fn_class``,
``consumer_factory_fn_params``), and the expansion fails with::

  IllegalArgumentException: The configuration class class
  org.apache.beam.sdk.io.kafka.KafkaIO$Read$External$Configuration is
  missing a setter setDynamicReadPollIntervalSeconds ...

`ReadFromKafka` here is Beam's own transform with those fields left out of
the expansion payload while they are unset, so a Java 2.62 expansion
service reads the rest as Python 2.77 wrote it. ``WriteToKafka``'s payload
is the same in both releases and needs nothing.
"""

import logging
import os
import re
import sys
import uuid
from typing import Any, Optional, Sequence

from apache_beam.coders.row_coder import RowCoder
from apache_beam.io import kafka as beam_kafka
from apache_beam.portability.api import external_transforms_pb2, schema_pb2
from apache_beam.typehints.schemas import named_tuple_from_schema

from pipeline import job_servers
from pipeline.job_servers import JobServerError, PINNED_BEAM_JAVA

_LOGGER = logging.getLogger(__name__)


# The registry does not serve Beam's shaded IO expansion service
# (beam-sdks-java-io-expansion-service), so it is assembled like the job
# servers, at PINNED_BEAM_JAVA: KafkaIO, Beam's generic expansion service,
# a kafka-clients KafkaIO 2.62 runs with, and jamm, which Beam's Java SDK
# harness needs at run time though its pom marks it "provided". KafkaIO's
# Confluent schema-registry dependencies are left out: they come from
# Confluent's own repository, which is not reachable here, and only
# ``withValueDeserializer(ConfluentSchemaRegistry...)`` uses them.
KAFKA_CLIENTS_VERSION = '3.9.1'
JAMM_VERSION = '0.4.0'
EXPANSION_SERVICE = job_servers.JobServerJar(
    'kafka', f'beam-sdks-java-io-kafka-expansion-service-{PINNED_BEAM_JAVA}'
    '-assembled',
    main_class='org.apache.beam.sdk.expansion.service.ExpansionService',
    libraries=(
        f'org.apache.beam:beam-sdks-java-io-kafka:{PINNED_BEAM_JAVA}',
        f'org.apache.beam:beam-sdks-java-expansion-service:{PINNED_BEAM_JAVA}',
        f'org.apache.kafka:kafka-clients:{KAFKA_CLIENTS_VERSION}',
        f'com.github.jbellis:jamm:{JAMM_VERSION}',
        f'org.slf4j:slf4j-simple:{job_servers.SLF4J_VERSION}',
    ),
    exclusions=('io.confluent:*',))
# How the expansion service expands KafkaIO for a Flink job server that has
# KafkaIO on its own classpath (`job_server_jars`):
# * EMBEDDED: the Java transforms run in a Java SDK harness inside the
#   Flink TaskManager's JVM; Beam's default, DOCKER, needs a Docker daemon.
# * use_deprecated_read: KafkaIO reads through its UnboundedSource, which
#   the Flink runner runs as a native Flink source. The default read, a
#   splittable DoFn, read the records (its offsets advanced) but on Flink's
#   portable streaming path never handed them to the Python step after it
#   (measured with Beam Java 2.62 and Flink 1.19; a Java-only pipeline,
#   read then write, did pass them on).
EXPANSION_OPTIONS = ('--defaultEnvironmentType=EMBEDDED',
                     '--experiments=use_deprecated_read')

# Fields of Python 2.77's read configuration that Java 2.62 lacks.
NEWER_READ_FIELDS = ('dynamic_read_poll_interval_seconds',
                     'consumer_factory_fn_class',
                     'consumer_factory_fn_params')


def without_fields(payload: bytes, names: tuple[str, ...]) -> bytes:
  """An ``ExternalConfigurationPayload`` with the fields ``names`` removed.

  Args:
    payload: a serialized ``ExternalConfigurationPayload`` (a schema and one
      row encoded with it).
    names: the fields to drop; each must be unset (None) in the row.

  Returns:
    The payload re-encoded under a schema without those fields.

  Raises:
    ValueError: a field to drop has a value, which the receiving side
      could not honour.
  """
  config = external_transforms_pb2.ExternalConfigurationPayload.FromString(
      payload)
  row = RowCoder(config.schema).decode(config.payload)
  for name in names:
    if getattr(row, name, None) is not None:
      raise ValueError(
          f'{name} is set, and the Beam Java 2.62 KafkaIO expansion here '
          f'has no such option; leave it unset.')
  kept = [f for f in config.schema.fields if f.name not in names]
  schema = schema_pb2.Schema(fields=kept, id=str(uuid.uuid4()))
  values = named_tuple_from_schema(schema)(
      **{f.name: getattr(row, f.name) for f in kept})
  return external_transforms_pb2.ExternalConfigurationPayload(
      schema=schema,
      payload=RowCoder(schema).encode(values)).SerializeToString()


class ReadFromKafka(beam_kafka.ReadFromKafka):
  """Beam's ``ReadFromKafka`` for a Beam Java 2.62 expansion service.

  Takes Beam's arguments; ``dynamic_read_poll_interval_seconds``,
  ``consumer_factory_fn_class`` and ``consumer_factory_fn_params`` must be
  left unset (Java 2.62 has no such options).

  Raises:
    ValueError: one of those is set.
  """
  def __init__(self, *args: Any, **kwargs: Any):
    super().__init__(*args, **kwargs)
    self._payload = without_fields(self._payload, NEWER_READ_FIELDS)


def _artifact_name(jar_file: str) -> str:
  """``kafka-clients-3.9.1.jar`` -> ``kafka-clients`` (Maven's file names)."""
  return re.sub(r'-\d[^/]*\.jar$', '', jar_file)


def job_server_jars(expansion_jar: Optional[str] = None,
                    job_server_jar: Optional[str] = None, *,
                    cache: Optional[str] = None) -> list[str]:
  """The jars a Flink job server needs to run KafkaIO in EMBEDDED mode.

  With ``--defaultEnvironmentType=EMBEDDED`` (`EXPANSION_OPTIONS`),
  KafkaIO runs inside the job server's JVM, so its classes must be on the
  job server's classpath: start it as ``java -cp JOB_SERVER_JAR:JARS...
  org.apache.beam.runners.flink.FlinkJobServerDriver`` instead of ``-jar``.

  Args:
    expansion_jar: the assembled Kafka expansion service (default:
      `EXPANSION_SERVICE`, fetched if needed).
    job_server_jar: an assembled Flink job server (default: the one
      ``--runner FlinkRunner`` uses, fetched if needed).
    cache: the jar cache directory (default:
      `pipeline.job_servers.cache_dir`).

  Returns:
    The expansion service's jars whose artifact the job server lacks,
    sorted; where both have an artifact, the job server's version stays.

  Raises:
    JobServerError: a jar cannot be fetched, or the job server is a shaded
      jar (no folder of libraries to compare with).
  """
  expansion_jar = expansion_jar or job_servers.ensure_assembled(
      EXPANSION_SERVICE, cache=cache)
  job_server_jar = job_server_jar or job_servers.ensure_job_server(
      'flink', cache=cache)
  server_folder = os.path.splitext(job_server_jar)[0]
  if not os.path.isdir(server_folder):
    raise JobServerError(
        f'{job_server_jar} is a shaded job server; KafkaIO in EMBEDDED mode '
        f'needs an assembled one (its libraries in a folder beside it).')
  present = {_artifact_name(n) for n in os.listdir(server_folder)}
  folder = os.path.splitext(expansion_jar)[0]
  jars = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                if name.endswith('.jar') and
                _artifact_name(name) not in present)
  _LOGGER.info('%d jars of %s to add to the Flink job server\'s classpath',
               len(jars), folder)
  return jars


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``python -m pipeline.kafka``: fetches the expansion service ahead of
  time; prints its launcher and the jars a Flink job server needs."""
  del argv
  try:
    path = job_servers.ensure_assembled(EXPANSION_SERVICE)
    print(f'kafka expansion service: {path}')
    print(f'flink job server classpath additions: '
          f'{len(job_server_jars(path))} jars')
  except JobServerError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
