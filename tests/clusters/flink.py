"""A Flink 1.19 session cluster on this machine: a JobManager, TaskManagers.

Why this module exists: ``--runner FlinkRunner --flink_master HOST:PORT``
sends the job to an existing Flink cluster, and only a real one, in
processes of its own, shows what that costs and whether every task slot
scores. The cluster tests and the benchmark start one with
`session_cluster`, which needs no pytest.

Where Flink comes from: PyPI's ``apache-flink-libraries`` source
distribution (the jars PyFlink ships) holds ``flink-dist`` and the log4j
jars under ``deps/lib``, though not Flink's ``bin/`` scripts. `ensure_flink`
unpacks them once into ``~/.cache/ja-doc-scorer/clusters``; the JobManager
and each TaskManager are then Flink's own entry-point classes
(``StandaloneSessionClusterEntrypoint``, ``TaskManagerRunner``) run with
``java -cp 'lib/*'``, as Flink's scripts run them. What the scripts would
compute is written out here: the memory sizes (a TaskManager refuses to
start without them) and, for Java 17, the module flags Flink's
``env.java.opts.all`` default passes.

One Beam worker pool per TaskManager, as on a cluster where every
TaskManager host runs a pool on ``localhost:PORT``: each TaskManager's JVM
resolves ``localhost`` through a hosts file of its own
(``-Djdk.net.hosts.file``) to a loopback address of its own (127.0.0.2,
127.0.0.3...), where its pool listens (`tests.clusters.worker_pool`). So the
job's ``--environment_config localhost:PORT`` is the README's, and each
TaskManager's SDK workers are Python processes of its own pool. Flink's own
addresses are numeric (127.0.0.1), so nothing else resolves a name.

Each TaskManager stands for a host with its share of this machine's cores
(`host_share_env`): its pool's environment sets TensorFlow's own thread-pool
variables (``TF_NUM_INTRAOP_THREADS``, ``TF_NUM_INTEROP_THREADS``) to that
share, as a host's own core count would. Left at TensorFlow's default, each
of the two SDK processes on the project's 2-core machine ran two threads
per pool on the same 2 cores. Measured on 8,000 documents: the two SDK
processes took 46.5 to 48.0 CPU-s with TensorFlow's default (three runs)
and 41.3 to 43.1 CPU-s with one thread each (three runs); the command's
median wall time went from 51.4 s (four runs) to 48.5 s (nine runs).

Beam's Flink runner is on each TaskManager's own classpath, loaded
parent-first (`pipeline.job_servers.taskmanager_jars`,
``classloader.resolve-order: parent-first``): the runner keeps a
TaskManager's SDK workers for the job (``--environment_cache_millis``) only
where its classes come from Flink's own class loader
(``FlinkExecutableStageContextFactory`` releases them at once otherwise).
Loaded from the job's staged jars, as Flink does by default, every stage of
the job started new Python workers on every TaskManager (five each, each
importing Beam and TensorFlow, one loading the model); measured here, a job
of 8 documents took 47 s of job and 25 CPU-s of SDK workers that way, 22 s
and 12 CPU-s with the runner on the classpath (one worker per TaskManager).
Beam's classes alone parent-first (``classloader.parent-first-patterns.
additional: org.apache.beam.``) fails: the job jar's own joda-time then
meets the TaskManager's in Beam's WindowingStrategy.
"""

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tarfile
import urllib.request
from typing import Iterator, Optional

from pipeline import job_servers
from runtime.cores import core_share
from tests import procs, services
from tests.clusters import launch
from tests.clusters.launch import ClusterError

_LOGGER = logging.getLogger(__name__)

FLINK_VERSION = '1.19.3'
CACHE = os.path.join('~', '.cache', 'ja-doc-scorer')
DONE_MARK = '.complete'
# What Flink 1.19's scripts pass every JVM on Java 17 (env.java.opts.all).
JAVA_MODULE_OPTIONS = (
    '--add-exports=java.base/sun.net.util=ALL-UNNAMED',
    '--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED',
    '--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED',
    *(f'--add-opens=java.base/{package}=ALL-UNNAMED' for package in (
        'java.lang', 'java.net', 'java.io', 'java.nio', 'sun.nio.ch',
        'java.lang.reflect', 'java.text', 'java.time', 'java.util',
        'java.util.concurrent', 'java.util.concurrent.atomic',
        'java.util.concurrent.locks')),
)
# A TaskManager's memory, spelled out as Flink's scripts would compute it;
# network buffers: a Beam job holds many exchanges at once.
TASKMANAGER_MEMORY = {
    'taskmanager.memory.framework.heap.size': '128m',
    'taskmanager.memory.task.heap.size': '384m',
    'taskmanager.memory.managed.size': '128m',
    'taskmanager.memory.framework.off-heap.size': '128m',
    'taskmanager.memory.task.off-heap.size': '0m',
    'taskmanager.memory.network.min': '256m',
    'taskmanager.memory.network.max': '256m',
    'taskmanager.memory.jvm-metaspace.size': '256m',
    'taskmanager.memory.jvm-overhead.min': '192m',
    'taskmanager.memory.jvm-overhead.max': '192m',
}
TASKMANAGER_JVM = ('-Xmx512m', '-Xms512m', '-XX:MaxDirectMemorySize=384m',
                   '-XX:MaxMetaspaceSize=256m')
JOBMANAGER_JVM = ('-Xmx512m',)
# TensorFlow's own variables for the size of its two thread pools.
TF_THREAD_VARIABLES = ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS')


def host_share_env(taskmanagers: int, cores: int = 0) -> dict[str, str]:
  """The pool environment that gives TensorFlow, in the SDK workers of one
  of ``taskmanagers`` TaskManagers, its share of ``cores`` (default: this
  process's) as its thread count."""
  threads = str(core_share(taskmanagers, cores))
  return {name: threads for name in TF_THREAD_VARIABLES}


def ensure_flink(cache: Optional[str] = None,
                 version: str = FLINK_VERSION) -> str:
  """Returns a folder whose ``lib/`` holds Flink ``version``'s jars.

  Unpacks ``deps/lib`` of ``apache-flink-libraries==version`` once, under a
  lock, and marks the folder complete last.

  Args:
    cache: the folder that holds ``dist/`` and ``clusters/`` (default:
      ``~/.cache/ja-doc-scorer``).
    version: the Flink version.

  Raises:
    ClusterError: pip could not download it, or it holds no flink-dist.
  """
  root = os.path.expanduser(cache or CACHE)
  home = os.path.join(root, 'clusters', f'flink-{version}')
  if os.path.exists(os.path.join(home, DONE_MARK)):
    return home
  os.makedirs(os.path.dirname(home), exist_ok=True)
  with open(home + '.lock', 'w', encoding='utf-8') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.path.exists(os.path.join(home, DONE_MARK)):
      return home
    sdist = launch.download_sdist('apache-flink-libraries', version,
                           os.path.join(root, 'dist'))
    partial = home + '.partial'
    shutil.rmtree(partial, ignore_errors=True)
    prefix = f'apache-flink-libraries-{version}/deps/lib/'
    with tarfile.open(sdist) as tar:
      members = []
      for member in tar.getmembers():
        if member.isfile() and member.name.startswith(prefix):
          member.name = 'lib/' + member.name[len(prefix):]
          members.append(member)
      extra = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
      tar.extractall(partial, members=members, **extra)
    dist = os.path.join(partial, 'lib', f'flink-dist-{version}.jar')
    if not os.path.exists(dist):
      raise ClusterError(f'expected {sdist} to hold deps/lib/'
                         f'{os.path.basename(dist)}; it does not.')
    shutil.rmtree(home, ignore_errors=True)
    os.replace(partial, home)
    pathlib.Path(home, DONE_MARK).write_text(version, encoding='utf-8')
  return home


@dataclasses.dataclass
class FlinkCluster:
  """A running session cluster and the worker pools of its TaskManagers.

  Attributes:
    flink_master: what ``--flink_master`` takes (the REST endpoint,
      ``localhost:PORT``).
    environment_config: what ``--environment_config`` takes with
      ``--environment_type EXTERNAL`` (``localhost:PORT``: each TaskManager
      reaches its own pool there).
    slots: task slots in all.
    logs: the folder with every process's log.
    processes: the processes started, by name (``jobmanager``,
      ``taskmanager-N``, ``pool-N``).
  """
  flink_master: str
  environment_config: str
  slots: int
  logs: pathlib.Path
  processes: dict[str, subprocess.Popen]

  def beam_flags(self) -> list[str]:
    """The flags that send a job to this cluster, as a user types them."""
    return ['--runner', 'FlinkRunner', '--flink_master', self.flink_master,
            '--parallelism', str(self.slots), '--environment_type',
            'EXTERNAL', '--environment_config', self.environment_config]

  def workers_started(self) -> dict[str, int]:
    """SDK worker processes each TaskManager's pool has started so far, by
    pool (``pool-N``), from the pools' logs."""
    started = {}
    for name in self.processes:
      if name.startswith('pool-'):
        text = (self.logs / f'{name}.log').read_text(encoding='utf-8',
                                                      errors='replace')
        started[name] = text.count('Starting worker with command')
    return started

  def sdk_workers(self) -> set[int]:
    """The pids of the SDK worker processes the pools run now."""
    return {pid for name, process in self.processes.items()
            if name.startswith('pool-')
            for pid, _, _ in procs.tree(process.pid) if procs.alive(pid)}

  def overview(self) -> dict:
    """The JobManager's ``/overview`` (TaskManagers, slots, jobs)."""
    with urllib.request.urlopen(f'http://{self.flink_master}/overview',
                                timeout=10) as r:
      return json.load(r)


def _conf(ports: dict[str, int], slots: int, logs: pathlib.Path,
          parent_first: bool = False) -> str:
  settings = {
      'jobmanager.rpc.address': '127.0.0.1',
      'jobmanager.rpc.port': ports['rpc'],
      'jobmanager.bind-host': '127.0.0.1',
      'jobmanager.memory.process.size': '1024m',
      'rest.address': '127.0.0.1', 'rest.bind-address': '127.0.0.1',
      'rest.port': ports['rest'], 'blob.server.port': ports['blob'],
      'taskmanager.host': '127.0.0.1', 'taskmanager.bind-host': '127.0.0.1',
      'taskmanager.rpc.port': 0, 'taskmanager.data.port': 0,
      'taskmanager.numberOfTaskSlots': slots,
      'taskmanager.cpu.cores': float(slots),
      **TASKMANAGER_MEMORY,
      'io.tmp.dirs': logs / 'tmp', 'web.tmpdir': logs / 'web',
  }
  if parent_first:
    # Beam's runner from the TaskManager's classpath, not the job's jars.
    settings['classloader.resolve-order'] = 'parent-first'
  return ''.join(f'{key}: {value}\n' for key, value in settings.items())


_LOG4J = """rootLogger.level = INFO
rootLogger.appenderRef.file.ref = Console
appender.console.name = Console
appender.console.type = CONSOLE
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss,SSS} %-5p %c{1} - %m%n
"""


@contextlib.contextmanager
def session_cluster(workdir, *, taskmanagers: int = 2,
                    slots_per_taskmanager: int = 1, timeout: float = 120.0,
                    home: Optional[str] = None,
                    pool_env: Optional[dict[str, str]] = None,
                    beam_jars: Optional[list[str]] = None
                    ) -> Iterator[FlinkCluster]:
  """Runs a JobManager, TaskManagers and their worker pools for the block.

  Args:
    workdir: a folder for the configuration, the logs and Flink's temporary
      files; it is kept afterwards.
    taskmanagers: TaskManager processes (at most 200).
    slots_per_taskmanager: task slots of each.
    timeout: seconds to wait for every slot to register.
    home: a folder with Flink's ``lib/`` (default: `ensure_flink`).
    pool_env: variables added to the worker pools' environment (what their
      SDK workers need, e.g. a GCS emulator's, `tests.clusters.gcs`); they
      win over `host_share_env`'s.
    beam_jars: jars put on each TaskManager's classpath, loaded parent-first
      (default: `pipeline.job_servers.taskmanager_jars`, Beam's Flink
      runner; ``[]``: none, the runner then comes from each job's jars, and
      its SDK workers are started again for every stage).

  Yields:
    The `FlinkCluster`.

  Raises:
    ClusterError: a process exited or the slots did not register; the
      message names the log.
  """
  home = home or ensure_flink()
  if beam_jars is None:
    beam_jars = job_servers.taskmanager_jars()
  beam_jars = list(beam_jars)
  logs = pathlib.Path(workdir).resolve()
  for folder in ('conf', 'tmp', 'web'):
    (logs / folder).mkdir(parents=True, exist_ok=True)
  ports = {name: services.free_port() for name in ('rpc', 'rest', 'blob',
                                                     'pool')}
  conf = logs / 'conf'
  (conf / 'flink-conf.yaml').write_text(
      _conf(ports, slots_per_taskmanager, logs, parent_first=bool(beam_jars)),
      encoding='utf-8')
  (conf / 'log4j.properties').write_text(_LOG4J, encoding='utf-8')
  java = [shutil.which('java') or 'java', *JAVA_MODULE_OPTIONS,
          f'-Dlog4j.configurationFile=file:{conf / "log4j.properties"}',
          '-cp', os.path.join(home, 'lib', '*')]
  # Flink's own jars first: they win over a library both carry.
  taskmanager_java = java[:-1] + [os.pathsep.join([java[-1], *beam_jars])]
  env = services.env()
  pool_environment = {**env, **host_share_env(taskmanagers),
                      **(pool_env or {})}
  rest = f'localhost:{ports["rest"]}'
  processes: dict[str, subprocess.Popen] = {}
  try:
    processes['jobmanager'] = launch.start_logged('jobmanager', [
        *java, *JOBMANAGER_JVM,
        'org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint',
        '--configDir', str(conf)], env, logs)
    for n in range(1, taskmanagers + 1):
      address = f'127.0.0.{n + 1}'
      hosts = conf / f'hosts-taskmanager-{n}'
      hosts.write_text(f'{address} localhost\n127.0.0.1 '
                       f'{socket.gethostname()}\n', encoding='utf-8')
      processes[f'pool-{n}'] = launch.start_logged(f'pool-{n}', [
          sys.executable, '-m', 'tests.clusters.worker_pool',
          f'{address}:{ports["pool"]}'], pool_environment, logs)
      processes[f'taskmanager-{n}'] = launch.start_logged(f'taskmanager-{n}', [
          *taskmanager_java, *TASKMANAGER_JVM,
          f'-Djdk.net.hosts.file={hosts}',
          'org.apache.flink.runtime.taskexecutor.TaskManagerRunner',
          '--configDir', str(conf)], env, logs)
    slots = taskmanagers * slots_per_taskmanager
    ready, seen = launch.wait_until_ready(
        f'http://{rest}/overview', lambda o: o.get('slots-total') == slots,
        engine='Flink', processes=processes, logs=logs, timeout=timeout)
    if not ready:
      raise ClusterError(f'expected the JobManager to report {slots} slots '
                         f'within {timeout:.0f} s; it reported {seen}; see '
                         f'{logs}')
    _LOGGER.info('Flink %s at %s: %d TaskManagers, %d slots, worker pools on '
                 'localhost:%d, %d Beam runner jars on the TaskManagers\' '
                 'classpath; logs in %s', FLINK_VERSION, rest, taskmanagers,
                 slots, ports['pool'], len(beam_jars), logs)
    yield FlinkCluster(rest, f'localhost:{ports["pool"]}', slots, logs,
                       processes)
  finally:
    order = ([p for name, p in processes.items() if name.startswith('task')] +
             [processes[n] for n in ('jobmanager',) if n in processes] +
             [p for name, p in processes.items() if name.startswith('pool')])
    services.stop(order)


def main(argv: list[str]) -> int:
  """``python -m tests.clusters.flink``: fetches and unpacks Flink ahead."""
  del argv
  print(f'flink: {ensure_flink()}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
