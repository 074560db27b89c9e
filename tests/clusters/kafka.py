"""A Kafka broker, Beam's Kafka expansion service and a Flink job server.

Why this module exists: ``examples/kafka_scoring.py`` reads from and writes
to Kafka with Beam's cross-language ``ReadFromKafka``/``WriteToKafka``, and
only a real broker and Beam's Java side show that it works. `kafka_flink`
starts all three, which needs no pytest:

* **The broker:** Maven's ``org.apache.kafka:kafka_2.13`` (`KAFKA_VERSION`)
  with its dependencies, assembled by `pipeline.job_servers.ensure_assembled`
  into the jar cache, run as one KRaft node (broker and controller in one
  process) after ``kafka.tools.StorageTool format``. ``kafka-tools`` rides
  along for its console producer and consumer; its Kafka Connect
  dependencies are left out (not served, and the console tools do not use
  them).
* **The expansion service:** `pipeline.kafka.EXPANSION_SERVICE`,
  started with `pipeline.kafka.EXPANSION_OPTIONS` (KafkaIO runs
  EMBEDDED in the job server's JVM, and reads through its UnboundedSource).
* **The Flink job server:** the assembled one ``--runner FlinkRunner``
  uses, started as its main class with KafkaIO's jars added to its
  classpath (`pipeline.kafka.job_server_jars`), an embedded
  Flink (``--flink-master [local]``).

Each process logs to a file in the work folder, which is kept.
"""

import base64
import contextlib
import dataclasses
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import uuid
from typing import Iterator, Optional, Sequence

from pipeline import job_servers
from pipeline import kafka as kafka_xlang
from tests import services
from tests.clusters import launch
from tests.clusters.launch import ClusterError

_LOGGER = logging.getLogger(__name__)

KAFKA_VERSION = '4.0.1'
# Kafka Connect, which kafka-tools depends on: not served at 4.0.1, and
# unused by the console producer and consumer.
_CONNECT = tuple(f'org.apache.kafka:connect-{m}'
                 for m in ('api', 'json', 'transforms'))
BROKER = job_servers.JobServerJar(
    'kafka-broker', f'kafka_2.13-{KAFKA_VERSION}-assembled',
    main_class='kafka.Kafka',
    libraries=(f'org.apache.kafka:kafka_2.13:{KAFKA_VERSION}',
               f'org.apache.kafka:kafka-tools:{KAFKA_VERSION}',
               f'org.slf4j:slf4j-simple:{job_servers.SLF4J_VERSION}'),
    exclusions=_CONNECT)
PRODUCER = 'org.apache.kafka.tools.ConsoleProducer'
CONSUMER = 'org.apache.kafka.tools.consumer.ConsoleConsumer'
_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:{controller}
listeners=PLAINTEXT://localhost:{port},CONTROLLER://localhost:{controller}
advertised.listeners=PLAINTEXT://localhost:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
"""


def skip_reason() -> Optional[str]:
  """Why the Kafka services cannot run here, or None."""
  if shutil.which('java') is None:
    return 'Kafka and Beam\'s Java side run on Java, which is not installed'
  cached = all(os.path.exists(os.path.join(job_servers.cache_dir(),
                                           jar.name + '.jar'))
               for jar in (BROKER, kafka_xlang.EXPANSION_SERVICE))
  if not cached and shutil.which('mvn') is None:
    return 'Kafka\'s jars are not cached and Maven (mvn) is not installed'
  return None


@dataclasses.dataclass
class KafkaFlink:
  """The running services.

  Attributes:
    bootstrap_servers: the broker's ``host:port``.
    expansion_service: the Kafka expansion service's ``host:port``.
    job_endpoint: the Flink job server's ``host:port``.
    logs: the work folder: each process's log, the broker's data.
    broker_jar: the broker's launcher jar (its classpath).
  """
  bootstrap_servers: str
  expansion_service: str
  job_endpoint: str
  logs: pathlib.Path
  broker_jar: str

  def _tool(self, main_class: str, args: Sequence[str], **kwargs
            ) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which('java') or 'java', '-cp', self.broker_jar, main_class,
         '--bootstrap-server', self.bootstrap_servers, *args],
        capture_output=True, check=False, **kwargs)

  def produce(self, topic: str, values: Sequence[bytes]) -> None:
    """Writes ``values`` to ``topic``, one record each, through Kafka's
    console producer (which creates the topic)."""
    if any(b'\n' in v for v in values):
      raise ValueError('the console producer takes one record a line')
    done = self._tool(PRODUCER, ['--topic', topic],
                      input=b''.join(v + b'\n' for v in values), timeout=120)
    if done.returncode:
      raise ClusterError(f'the console producer failed: '
                         f'{done.stderr.decode(errors="replace")[-2000:]}')

  def consume(self, topic: str, count: int, timeout: float) -> list[bytes]:
    """Up to ``count`` values of ``topic`` from its start: fewer when none
    arrives for ``timeout`` seconds."""
    done = self._tool(CONSUMER, [
        '--topic', topic, '--from-beginning', '--max-messages', str(count),
        '--timeout-ms', str(int(timeout * 1000)),
        '--group', f'test-{uuid.uuid4().hex}'], timeout=timeout + 60)
    return [line for line in done.stdout.split(b'\n') if line]


def _cluster_id() -> str:
  """A random cluster id as Kafka writes them (URL-safe base64, 22 chars)."""
  return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip('=')


def _java() -> str:
  return shutil.which('java') or 'java'


@contextlib.contextmanager
def kafka_flink(workdir) -> Iterator[KafkaFlink]:
  """Runs a broker, the expansion service and a job server for the block.

  Args:
    workdir: a folder for the logs and the broker's data; kept afterwards.

  Yields:
    The `KafkaFlink`.

  Raises:
    ClusterError: a process exited or did not listen; the message names
      its log.
    pipeline.job_servers.JobServerError: a jar could not be fetched.
  """
  logs = pathlib.Path(workdir).resolve()
  logs.mkdir(parents=True, exist_ok=True)
  broker_jar = job_servers.ensure_assembled(BROKER)
  expansion_jar = job_servers.ensure_assembled(
      kafka_xlang.EXPANSION_SERVICE)
  flink_jar = job_servers.ensure_job_server('flink')
  kafka_jars = kafka_xlang.job_server_jars(expansion_jar, flink_jar)
  ports = {name: services.free_port() for name in (
      'broker', 'controller', 'expansion', 'job')}
  properties = logs / 'server.properties'
  properties.write_text(_SERVER_PROPERTIES.format(
      port=ports['broker'], controller=ports['controller'],
      data=logs / 'data'), encoding='utf-8')
  env = services.env()
  formatted = subprocess.run(
      [_java(), '-cp', broker_jar, 'kafka.tools.StorageTool', 'format',
       '-t', _cluster_id(), '-c', str(properties)],
      capture_output=True, text=True, check=False, timeout=120)
  if formatted.returncode:
    raise ClusterError(f'formatting the broker\'s storage failed: '
                       f'{formatted.stdout[-1000:]}{formatted.stderr[-1000:]}')
  commands = {
      'broker': [_java(), '-Xmx512m', '-cp', broker_jar, 'kafka.Kafka',
                 str(properties)],
      'expansion': [_java(), '-Xmx512m', '-jar', expansion_jar,
                    str(ports['expansion']),
                    *kafka_xlang.EXPANSION_OPTIONS],
      'job': [_java(), *job_servers.FLINK_JVM_PROPERTIES,
              f'-Djava.io.tmpdir={logs}', '-cp',
              os.pathsep.join([flink_jar, *kafka_jars]),
              'org.apache.beam.runners.flink.FlinkJobServerDriver',
              '--flink-master', '[local]', '--job-port', str(ports['job']),
              '--artifact-port', '0', '--expansion-port', '0'],
  }
  processes: dict[str, subprocess.Popen] = {}
  try:
    for name, command in commands.items():
      processes[name] = launch.start_logged(name, command, env, logs)
    for name in commands:
      try:
        services.wait_for_port(ports[name], processes[name],
                               logs / f'{name}.log')
      except (RuntimeError, TimeoutError) as e:
        raise ClusterError(str(e)) from e
    _LOGGER.info('Kafka %s on localhost:%d, expansion service on '
                 'localhost:%d, Flink job server on localhost:%d; logs in %s',
                 KAFKA_VERSION, ports['broker'], ports['expansion'],
                 ports['job'], logs)
    yield KafkaFlink(f'localhost:{ports["broker"]}',
                     f'localhost:{ports["expansion"]}',
                     f'localhost:{ports["job"]}', logs, broker_jar)
  finally:
    services.stop([processes[n] for n in ('job', 'expansion', 'broker')
                   if n in processes])


def main(argv: list[str]) -> int:
  """``python -m tests.clusters.kafka``: fetches the jars ahead of time."""
  del argv
  print(f'kafka broker: {job_servers.ensure_assembled(BROKER)}')
  print(f'kafka expansion service: '
        f'{job_servers.ensure_assembled(kafka_xlang.EXPANSION_SERVICE)}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
