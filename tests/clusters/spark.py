"""A Spark standalone cluster on this machine: one master, one worker.

Why this module exists: ``--runner SparkRunner --spark_master_url
spark://HOST:PORT`` sends the job to an existing Spark cluster, and only a
real master and worker, in processes of their own, show what that costs and
whether every core scores. The cluster tests and the benchmark start one
with `standalone_cluster`, which needs no pytest.

Where Spark comes from: PyPI's ``pyspark`` source distribution carries
Spark's jars and ``bin/spark-class``. Its Spark and Scala must be those the
Spark job server (the driver) is built against (`pipeline.job_servers`:
Spark 3.2.2, Scala 2.12), or the driver and the executors cannot talk.
`ensure_spark` unpacks it once into ``~/.cache/ja-doc-scorer/clusters``.

Java 17: Spark 3.2 predates Spark's own Java 17 support (3.3), which adds
`JAVA_MODULE_OPTIONS` to every JVM it launches. Here the master, the worker
and the executors the worker forks get them through ``JDK_JAVA_OPTIONS`` in
their environment, as a cluster's ``spark-env.sh`` would set it; the driver
(Beam's job server) gets Beam's own ``--add-opens`` from SparkRunner.

The executors run Beam's SDK harnesses in an EXTERNAL environment: a Beam
worker pool (``apache_beam.runners.worker.worker_pool_main``) started here
with this interpreter first on PATH starts one Python process per SDK
worker an executor asks for.
"""

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from typing import Iterator, Optional

from pipeline import job_servers
from tests import services
from tests.clusters import launch
from tests.clusters.launch import ClusterError

_LOGGER = logging.getLogger(__name__)

SPARK_VERSION = job_servers.SPARK_VERSION
CACHE = os.path.join('~', '.cache', 'ja-doc-scorer')
DONE_MARK = '.complete'
# What Spark 3.3+ passes to every JVM on Java 17 (its JavaModuleOptions);
# sun.nio.ch is the one Spark 3.2 fails without (StorageUtils).
JAVA_MODULE_OPTIONS = (
    '-XX:+IgnoreUnrecognizedVMOptions',
    *(f'--add-opens=java.base/{package}=ALL-UNNAMED' for package in (
        'java.lang', 'java.lang.invoke', 'java.lang.reflect', 'java.io',
        'java.net', 'java.nio', 'java.util', 'java.util.concurrent',
        'java.util.concurrent.atomic', 'sun.nio.ch', 'sun.nio.cs',
        'sun.security.action', 'sun.util.calendar')),
)
# Only these parts of the distribution are needed to run a cluster.
_PARTS = ('bin', 'sbin', 'jars', 'conf')


def ensure_spark(cache: Optional[str] = None,
                 version: str = SPARK_VERSION) -> str:
  """Returns a ``SPARK_HOME`` holding Spark ``version``, unpacking it once.

  Args:
    cache: the folder that holds ``dist/`` and ``clusters/`` (default:
      ``~/.cache/ja-doc-scorer``).
    version: the Spark (and pyspark) version.

  Raises:
    ClusterError: pip could not download pyspark, or it holds no Spark.
  """
  root = os.path.expanduser(cache or CACHE)
  home = os.path.join(root, 'clusters', f'spark-{version}')
  if os.path.exists(os.path.join(home, DONE_MARK)):
    return home
  os.makedirs(os.path.dirname(home), exist_ok=True)
  with open(home + '.lock', 'w', encoding='utf-8') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.path.exists(os.path.join(home, DONE_MARK)):
      return home  # unpacked by another process meanwhile
    sdist = launch.download_sdist('pyspark', version,
                                  os.path.join(root, 'dist'))
    partial = home + '.partial'
    shutil.rmtree(partial, ignore_errors=True)
    prefix = f'pyspark-{version}/deps/'
    with tarfile.open(sdist) as tar:
      members = []
      for member in tar.getmembers():
        if not member.name.startswith(prefix):
          continue
        name = member.name[len(prefix):]
        if name.split('/', 1)[0] in _PARTS and (member.isfile() or
                                                member.isdir()):
          member.name = name
          members.append(member)
      # Plain files and folders only (the 'data' filter where Python has it).
      extra = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
      tar.extractall(partial, members=members, **extra)
    spark_class = os.path.join(partial, 'bin', 'spark-class')
    core = os.path.join(partial, 'jars', f'spark-core_'
                        f'{job_servers.SCALA_VERSION}-{version}.jar')
    if not (os.path.exists(spark_class) and os.path.exists(core)):
      raise ClusterError(f'expected {sdist} to hold deps/bin/spark-class and '
                         f'deps/jars/{os.path.basename(core)}; it does not.')
    for folder in ('bin', 'sbin'):
      for name in os.listdir(os.path.join(partial, folder)):
        os.chmod(os.path.join(partial, folder, name), 0o755)
    shutil.rmtree(home, ignore_errors=True)
    os.replace(partial, home)
    pathlib.Path(home, DONE_MARK).write_text(version, encoding='utf-8')
  return home


@dataclasses.dataclass
class SparkCluster:
  """A running standalone cluster and the Beam worker pool beside it.

  Attributes:
    master_url: what ``--spark_master_url`` takes (``spark://HOST:PORT``).
    environment_config: what ``--environment_config`` takes with
      ``--environment_type EXTERNAL`` (the worker pool, ``localhost:PORT``).
    logs: the folder with the master's, the worker's, the pool's and the
      executors' logs (``work/APP/EXECUTOR/stderr``).
    web_ui: the master's web UI (``/json/`` lists workers and applications).
    cores: the worker's cores.
    processes: the processes started, by name (``master``, ``worker``,
      ``pool``), for their ids.
  """
  master_url: str
  environment_config: str
  logs: pathlib.Path
  web_ui: str
  cores: int
  processes: dict[str, subprocess.Popen]

  def beam_flags(self) -> list[str]:
    """The flags that send a job to this cluster, as a user types them."""
    return ['--runner', 'SparkRunner', '--spark_master_url', self.master_url,
            '--environment_type', 'EXTERNAL', '--environment_config',
            self.environment_config,
            # One SDK process per core: the submitter cannot see the cores.
            '--sdk_worker_parallelism', str(self.cores)]

  def state(self) -> dict:
    """The master's view (its web UI's ``/json/``)."""
    with urllib.request.urlopen(f'{self.web_ui}/json/', timeout=10) as r:
      return json.load(r)


def spark_env(home: str, logs: pathlib.Path) -> dict[str, str]:
  """The environment of the master, the worker and (inherited) executors."""
  env = services.env()
  java = shutil.which('java')
  env.update(
      SPARK_HOME=home, SPARK_LOG_DIR=str(logs), SPARK_LOCAL_IP='127.0.0.1',
      SPARK_CONF_DIR=str(logs / 'conf'), SPARK_NO_DAEMONIZE='1',
      JDK_JAVA_OPTIONS=' '.join(JAVA_MODULE_OPTIONS))
  if java and 'JAVA_HOME' not in env:
    env['JAVA_HOME'] = os.path.dirname(os.path.dirname(os.path.realpath(java)))
  return env


@contextlib.contextmanager
def standalone_cluster(workdir, *, cores: int = 2, memory: str = '3g',
                       pool: bool = True, timeout: float = 120.0,
                       home: Optional[str] = None) -> Iterator[SparkCluster]:
  """Runs a Spark master, one worker and a Beam worker pool for the block.

  Args:
    workdir: a folder for the logs, the worker's work dir (executor logs)
      and Spark's scratch space; it is kept afterwards.
    cores: the worker's cores (executors take them all: one task a core).
    memory: the memory the worker offers executors.
    pool: also start a Beam worker pool for ``--environment_type EXTERNAL``.
    timeout: seconds to wait for the worker to register.
    home: a ``SPARK_HOME`` (default: `ensure_spark`).

  Yields:
    The `SparkCluster`.

  Raises:
    ClusterError: a process exited or the worker did not register; the
      message names the log.
  """
  home = home or ensure_spark()
  logs = pathlib.Path(workdir).resolve()
  (logs / 'conf').mkdir(parents=True, exist_ok=True)
  (logs / 'work').mkdir(exist_ok=True)
  (logs / 'local').mkdir(exist_ok=True)
  # log4j 1 (Spark 3.2): warnings to the processes' own logs.
  (logs / 'conf' / 'log4j.properties').write_text(
      'log4j.rootCategory=WARN, console\n'
      'log4j.appender.console=org.apache.log4j.ConsoleAppender\n'
      'log4j.appender.console.target=System.err\n'
      'log4j.appender.console.layout=org.apache.log4j.PatternLayout\n'
      'log4j.appender.console.layout.ConversionPattern='
      '%d{HH:mm:ss.SSS} %p %c{1}: %m%n\n'
      'log4j.logger.org.apache.spark.deploy=INFO\n', encoding='utf-8')
  env = spark_env(home, logs)
  env['SPARK_LOCAL_DIRS'] = str(logs / 'local')
  spark_class = os.path.join(home, 'bin', 'spark-class')
  port, web_port = services.free_port(), services.free_port()
  master_url = f'spark://127.0.0.1:{port}'
  web_ui = f'http://127.0.0.1:{web_port}'
  processes: dict[str, subprocess.Popen] = {}
  try:
    processes['master'] = launch.start_logged('master', [
        spark_class, 'org.apache.spark.deploy.master.Master', '--host',
        '127.0.0.1', '--port', str(port), '--webui-port', str(web_port)],
        env, logs)
    services.wait_for_port(port, processes['master'], logs / 'master.log',
                           timeout)
    processes['worker'] = launch.start_logged('worker', [
        spark_class, 'org.apache.spark.deploy.worker.Worker', master_url,
        '--host', '127.0.0.1', '--cores', str(cores), '--memory', memory,
        '--webui-port', str(services.free_port()),
        '--work-dir', str(logs / 'work')], env, logs)
    ready, seen = launch.wait_until_ready(
        f'{web_ui}/json/', lambda state: any(
            w.get('state') == 'ALIVE' and w.get('cores') == cores
            for w in state.get('workers', [])),
        engine='Spark', processes=processes, logs=logs, timeout=timeout)
    if not ready:
      raise ClusterError(f'expected the master to list an ALIVE worker with '
                         f'{cores} cores within {timeout:.0f} s; it listed '
                         f'{(seen or {}).get("workers")}; see {logs}')
    config = ''
    if pool:
      pool_port = services.free_port()
      processes['pool'] = launch.start_logged('pool', [
          sys.executable, '-m', 'apache_beam.runners.worker.worker_pool_main',
          '--service_port', str(pool_port)], env, logs)
      services.wait_for_port(pool_port, processes['pool'], logs / 'pool.log',
                             timeout)
      config = f'localhost:{pool_port}'
    _LOGGER.info('Spark %s at %s (web UI %s), worker pool %s; logs in %s',
                 SPARK_VERSION, master_url, web_ui, config or 'none', logs)
    yield SparkCluster(master_url, config, logs, web_ui, cores, processes)
  finally:
    # The worker first (it stops its executors), then the master, the pool.
    services.stop([processes[name] for name in ('worker', 'master', 'pool')
                   if name in processes])
