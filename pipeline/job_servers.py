"""Beam's Flink and Spark job servers, fetched with Maven and cached.

``--runner FlinkRunner`` and ``--runner SparkRunner`` start a Java job server.
Left alone, Beam downloads its jar from Maven Central over plain HTTPS, which
fails where only Maven itself is set up to reach a registry (a proxy, a
mirror, credentials in ``settings.xml``). `prepare_runner` fetches the jar
with ``mvn`` instead, into a cache that later runs reuse, and fills in the
options a local run needs (the jar, the JVM flags Java 17 needs).

Which jar, in this order:

1. ``--flink_job_server_jar`` / ``--spark_job_server_jar`` when given.
2. A jar already in the cache (see `cache_dir`): no Maven call at all.
3. The shaded job server Beam publishes for the installed apache-beam
   (``beam-runners-flink-1.19-job-server:<version>``,
   ``beam-runners-spark-3-job-server:<version>``).
4. Where the registry does not serve that jar: the job server assembled from
   the runner's own Maven artifacts at `PINNED_BEAM_JAVA` (the runner, its
   dependencies and the engine libraries the published jar bundles), started
   through a small launcher jar whose manifest names them. This is the
   pairing the tests run: the job API between the Python SDK and a Java job
   server is Beam's portable protocol, stable across these releases.

Flink is 1.19, not Beam's default 2.x: Beam's file sinks finalize through
side inputs, and Python pipelines with side inputs failed on the Flink 2
batch path (apache/beam#37583), which also rebuilds side inputs again and
again (#39866). Flink 1.19 runs batch pipelines on the DataSet path, where
neither happens.

Run ``python -m pipeline.job_servers flink spark`` to fetch both jars ahead of
time (CI does, so that the jars are cached between runs).

`ensure_assembled` fetches other Java services assembled the same way into
the same cache (Beam's Kafka expansion service, `pipeline.kafka`).
"""

# First: the console drops Beam's import notices (``python -m
# pipeline.job_servers`` prints only its own lines).
from runtime import console as _console  # pylint: disable=unused-import  # isort: skip

import argparse
import contextlib
import dataclasses
import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import zipfile
from typing import Iterator, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (FlinkRunnerOptions,
                                                  JobServerOptions,
                                                  PipelineOptions,
                                                  PortableOptions,
                                                  SparkRunnerOptions,
                                                  StandardOptions)

_LOGGER = logging.getLogger(__name__)

# The Beam Java release the job servers are assembled from when the registry
# does not serve the shaded job-server jar of the installed apache-beam: the
# newest release whose Flink runner and job service both resolve there.
PINNED_BEAM_JAVA = '2.62.0'
FLINK_VERSION = '1.19'
# Spark and Scala versions beam-runners-spark-3 is built against (its pom
# declares them "provided"; the published job-server jar bundles them).
SPARK_VERSION = '3.2.2'
SCALA_VERSION = '2.12'
SLF4J_VERSION = '1.7.30'

CACHE_ENV = 'JA_DOC_SCORER_JAR_CACHE'
DEFAULT_CACHE = os.path.join('~', '.cache', 'ja-doc-scorer', 'jars')
MAVEN_DEPENDENCY_PLUGIN = (
    'org.apache.maven.plugins:maven-dependency-plugin:3.8.1')
RUNNERS = ('flink', 'spark')

# Beam's Flink tests run the job server on Java 17 with these; the Flink
# launcher in the Python SDK passes none (SparkRunner adds its own).
# Java's temporary folder, as a JVM property.
_TMPDIR_PROPERTY = '-Djava.io.tmpdir='
FLINK_JVM_PROPERTIES = (
    '--add-opens=java.base/java.lang=ALL-UNNAMED',
    '--add-opens=java.base/java.nio=ALL-UNNAMED',
    '--add-opens=java.base/java.util=ALL-UNNAMED',
)
# How long a cluster's TaskManager or executor keeps an SDK environment (its
# Python workers) once no task of the job uses it. Beam's default, 0,
# releases it when each task ends, so every task of every stage starts new
# Python workers, each importing Beam and TensorFlow and loading the model
# again (14 to 17 workers for one 300-document job on a 2-core Spark worker,
# 15 s and 19 CPU-s more than with the cache; on a Flink session cluster,
# five workers a slot, one a stage). On Flink only where Beam's runner is on
# the TaskManagers' classpath, loaded parent-first: loaded from the job's
# own jars (Flink's default), its FlinkExecutableStageContextFactory
# releases them whenever a TaskManager has no task of the job running,
# which in a batch job is between every two stages (`taskmanager_jars`).
# The time only has to bridge those gaps (under a second between two stages
# here). It is also how long the workers outlive the job where the process
# that holds them does (a Flink TaskManager; a Spark executor ends with its
# application, and its workers with it): with one hour, each finished job
# left its two Python workers, about 1 GB each, idle on the session
# cluster's TaskManagers for that hour (seen: ten after five jobs); with
# 20 s, one worker a TaskManager still served the whole job, and both had
# ended 25 s after it.
ENVIRONMENT_CACHE_MILLIS = 60_000
# Local masters, whose SDK workers run in this process (cheap to start):
# Spark's ``local``, ``local[N]``, ``local[*]``; Flink's ``[local]``,
# ``[auto]``.
_LOCAL_MASTER = r'^(local(\[.+\])?|\[local\]|\[auto\])$'


class JobServerError(ValueError):
  """A job server cannot be had; the message says what to install or pass."""


@dataclasses.dataclass(frozen=True)
class JobServerJar:
  """One way to obtain a runner's job server through Maven.

  Attributes:
    runner: ``'flink'`` or ``'spark'``.
    name: the jar's file name in the cache, without ``.jar``.
    artifact: ``group:artifact:version`` of a shaded jar to copy as it is, or
      None to assemble the job server from ``libraries``.
    main_class: the job server's main class (assembled jars only).
    libraries: ``group:artifact:version`` resolved with their dependencies
      (assembled jars only).
    exclusions: ``group:artifact`` (``*`` allowed, as Maven takes it) left
      out of every library's dependencies (assembled jars only).
  """
  runner: str
  name: str
  artifact: Optional[str] = None
  main_class: str = ''
  libraries: tuple[str, ...] = ()
  exclusions: tuple[str, ...] = ()


def candidates(runner: str,
               beam_version: str = beam.__version__) -> list[JobServerJar]:
  """The ways to obtain ``runner``'s job server, best first."""
  if runner == 'flink':
    published = f'beam-runners-flink-{FLINK_VERSION}-job-server'
    return [
        JobServerJar('flink', f'{published}-{beam_version}',
                     artifact=f'org.apache.beam:{published}:{beam_version}'),
        JobServerJar(
            'flink', f'{published}-{PINNED_BEAM_JAVA}-assembled',
            main_class='org.apache.beam.runners.flink.FlinkJobServerDriver',
            libraries=(
                f'org.apache.beam:beam-runners-flink-{FLINK_VERSION}:'
                f'{PINNED_BEAM_JAVA}',
                f'org.slf4j:slf4j-simple:{SLF4J_VERSION}',
            )),
    ]
  if runner == 'spark':
    published = 'beam-runners-spark-3-job-server'
    spark = [f'org.apache.spark:spark-{module}_{SCALA_VERSION}:{SPARK_VERSION}'
             for module in ('core', 'streaming', 'sql')]
    return [
        JobServerJar('spark', f'{published}-{beam_version}',
                     artifact=f'org.apache.beam:{published}:{beam_version}'),
        JobServerJar(
            'spark', f'{published}-{PINNED_BEAM_JAVA}-assembled',
            main_class='org.apache.beam.runners.spark.SparkJobServerDriver',
            libraries=(f'org.apache.beam:beam-runners-spark-3:'
                       f'{PINNED_BEAM_JAVA}', *spark)),
    ]
  raise ValueError(f'no job server for runner {runner!r}; '
                   f'expected one of {", ".join(RUNNERS)}.')


def cache_dir(explicit: Optional[str] = None) -> str:
  """The jar cache: ``explicit``, else ``$JA_DOC_SCORER_JAR_CACHE``, else
  ``~/.cache/ja-doc-scorer/jars``."""
  path = explicit or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
  return os.path.abspath(os.path.expanduser(path))


def _jar_flag(runner: str) -> str:
  return f'--{runner}_job_server_jar'


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
  """Holds an exclusive lock on ``directory`` (one fetch at a time)."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, '.lock'), 'w', encoding='utf-8') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _mvn(args: Sequence[str], *, cwd: str) -> tuple[bool, str]:
  """Runs Maven in batch mode; returns (succeeded, its last error line)."""
  command = [shutil.which('mvn') or 'mvn', '-B', '-q'] + list(args)
  _LOGGER.info('Running %s', ' '.join(command))
  done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                        check=False)
  output = [re.sub(r'\x1b\[[0-9;]*m', '', line).strip()
            for line in (done.stdout + done.stderr).splitlines()]
  errors = [line[len('[ERROR]'):].strip() for line in output
            if line.startswith('[ERROR]') and line[len('[ERROR]'):].strip()]
  why = errors[0] if errors else next((l for l in reversed(output) if l), '')
  # 'Failed to execute goal ... on project P: WHY -> [Help 1]'
  why = re.sub(r'^Failed to execute goal .*? on project [^:]*: ', '', why)
  return done.returncode == 0, why.replace(' -> [Help 1]', '')


def _pom(libraries: Sequence[str], exclusions: Sequence[str] = ()) -> str:
  excluded = ''.join(
      f'<exclusion><groupId>{group}</groupId>'
      f'<artifactId>{artifact}</artifactId></exclusion>'
      for group, artifact in (e.split(':') for e in exclusions))
  excluded = f'<exclusions>{excluded}</exclusions>' if excluded else ''
  deps = []
  for coordinates in libraries:
    group, artifact, version = coordinates.split(':')
    deps.append(f'<dependency><groupId>{group}</groupId>'
                f'<artifactId>{artifact}</artifactId>'
                f'<version>{version}</version>{excluded}</dependency>')
  return ('<project xmlns="http://maven.apache.org/POM/4.0.0">'
          '<modelVersion>4.0.0</modelVersion>'
          '<groupId>ja-doc-scorer</groupId><artifactId>job-server</artifactId>'
          '<version>0</version><packaging>pom</packaging>'
          f'<dependencies>{"".join(deps)}</dependencies></project>\n')


def _manifest(main_class: str, class_path: Sequence[str]) -> str:
  """A jar manifest; lines wrap at 72 bytes as the jar format requires."""
  lines = []
  for header in ('Manifest-Version: 1.0', f'Main-Class: {main_class}',
                 'Created-By: ja-doc-scorer',
                 'Class-Path: ' + ' '.join(class_path)):
    data = header.encode('utf-8')
    lines.append(data[:72])
    data = data[72:]
    while data:
      lines.append(b' ' + data[:71])
      data = data[71:]
  return b'\r\n'.join(lines).decode('utf-8') + '\r\n\r\n'


def _fetch(jar: JobServerJar, directory: str) -> tuple[Optional[str], str]:
  """Fetches ``jar`` into ``directory``; returns (path or None, why not)."""
  target = os.path.join(directory, jar.name + '.jar')
  with tempfile.TemporaryDirectory(dir=directory, prefix='.fetch-') as tmp:
    if jar.artifact:
      ok, why = _mvn([f'{MAVEN_DEPENDENCY_PLUGIN}:copy',
                      f'-Dartifact={jar.artifact}',
                      f'-DoutputDirectory={tmp}'], cwd=tmp)
      found = [n for n in os.listdir(tmp) if n.endswith('.jar')]
      if not ok or len(found) != 1:
        return None, f'{jar.artifact}: {why}'
      os.replace(os.path.join(tmp, found[0]), target)
      return target, ''
    with open(os.path.join(tmp, 'pom.xml'), 'w', encoding='utf-8') as f:
      f.write(_pom(jar.libraries, jar.exclusions))
    ok, why = _mvn([f'{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies',
                    '-DincludeScope=runtime',
                    f'-DoutputDirectory={os.path.join(tmp, "lib")}'], cwd=tmp)
    if not ok:
      return None, f'{" + ".join(jar.libraries)}: {why}'
    libdir = os.path.join(directory, jar.name)
    if os.path.exists(libdir):
      shutil.rmtree(libdir)
    os.replace(os.path.join(tmp, 'lib'), libdir)
    class_path = [urllib.parse.quote(f'{jar.name}/{name}')
                  for name in sorted(os.listdir(libdir))]
    partial = os.path.join(tmp, 'launcher.jar')
    with zipfile.ZipFile(partial, 'w') as launcher:
      launcher.writestr('META-INF/MANIFEST.MF',
                        _manifest(jar.main_class, class_path))
    # The launcher comes last: its presence marks a complete fetch.
    os.replace(partial, target)
    return target, ''


def fetch_notice(runner: str, options: Sequence[JobServerJar],
                 directory: str) -> str:
  """The one line printed before Maven fetches ``runner``'s job server."""
  def what(jar: JobServerJar) -> str:
    _, artifact, version = (jar.artifact or jar.libraries[0]).split(':')
    return f'{artifact} {version}' + ('' if jar.artifact else ' (assembled)')
  home = os.path.expanduser('~')
  shown = ('~' + directory[len(home):]
           if directory.startswith(home + os.sep) else directory)
  return (f'Fetching Beam\'s {runner.capitalize()} job server with Maven into '
          f'{shown} (first run only): '
          f'{", else ".join(what(jar) for jar in options)}')


def ensure_job_server(runner: str, *, cache: Optional[str] = None,
                      beam_version: str = beam.__version__) -> str:
  """Returns the path of ``runner``'s job-server jar, fetching it if needed.

  Args:
    runner: ``'flink'`` or ``'spark'``.
    cache: the jar cache directory (default: `cache_dir`).
    beam_version: the apache-beam version whose job server is preferred.

  Raises:
    JobServerError: Maven is missing, or no candidate could be fetched.
  """
  directory = cache_dir(cache)
  options = candidates(runner, beam_version)
  for jar in options:
    path = os.path.join(directory, jar.name + '.jar')
    if os.path.exists(path):
      return path
  if not shutil.which('mvn'):
    raise JobServerError(
        f'the {runner.capitalize()} job-server jar is not in {directory} and '
        f'Maven (mvn) is not on PATH to fetch it: install Maven, or pass '
        f'{_jar_flag(runner)} PATH (a Beam {runner.capitalize()} job-server '
        f'jar).')
  failures = []
  with _locked(directory):
    for number, jar in enumerate(options):
      path = os.path.join(directory, jar.name + '.jar')
      if os.path.exists(path):  # fetched by another process meanwhile
        return path
      if not number:
        # Maven may take a while (hundreds of MB on a first run): one line
        # says what is happening, also at the default (quiet) log level.
        _console.say(fetch_notice(runner, options, directory))
      path, why = _fetch(jar, directory)
      if path:
        _LOGGER.info('%s job server: %s', runner.capitalize(), path)
        return path
      _LOGGER.info('Not available through Maven: %s', why)
      failures.append(why)
  raise JobServerError(
      f'Maven could not fetch a {runner.capitalize()} job server '
      f'({"; ".join(failures)}): pass {_jar_flag(runner)} PATH (a Beam '
      f'{runner.capitalize()} job-server jar).')


def ensure_assembled(jar: JobServerJar, *,
                     cache: Optional[str] = None) -> str:
  """Returns the launcher of an assembled ``jar``, fetching it if needed.

  Args:
    jar: an assembled jar (``libraries`` and ``main_class``), such as
      `pipeline.kafka.EXPANSION_SERVICE`.
    cache: the jar cache directory (default: `cache_dir`).

  Returns:
    The launcher jar's path: ``java -jar PATH`` runs ``jar.main_class``
    with the libraries beside it, in the folder of the same name.

  Raises:
    JobServerError: Maven is missing or could not fetch the libraries.
  """
  directory = cache_dir(cache)
  path = os.path.join(directory, jar.name + '.jar')
  if os.path.exists(path):
    return path
  if not shutil.which('mvn'):
    raise JobServerError(
        f'{jar.name} is not in {directory} and Maven (mvn) is not on PATH '
        f'to fetch it: install Maven.')
  with _locked(directory):
    if os.path.exists(path):  # fetched by another process meanwhile
      return path
    _console.say(f'Fetching {jar.name} with Maven into {directory} (first '
                 f'run only): {", ".join(jar.libraries)}')
    path, why = _fetch(jar, directory)
  if not path:
    raise JobServerError(f'Maven could not fetch {jar.name}: {why}')
  _LOGGER.info('%s: %s', jar.name, path)
  return path


# Jars of an assembled Flink job server that a TaskManager has already
# (Flink's own, from flink-dist) or must not have twice (logging bindings).
_NOT_FOR_TASKMANAGERS = ('flink-', 'log4j-', 'slf4j-')


def taskmanager_jars(job_server_jar: Optional[str] = None, *,
                     cache: Optional[str] = None) -> list[str]:
  """The jars that put Beam's Flink runner on a TaskManager's classpath.

  A Flink cluster keeps a job's SDK workers for the whole job
  (``--environment_cache_millis``) only where Beam's runner is loaded by
  Flink's own class loader: copy these jars into each TaskManager's
  ``lib/`` and set ``classloader.resolve-order: parent-first``. Loaded from
  the job's jars (Flink's default), the runner releases the workers between
  every two stages of a batch job, and each stage starts new ones.

  Args:
    job_server_jar: an assembled Flink job-server jar (default: the one
      ``--runner FlinkRunner`` uses, fetched if needed).
    cache: the jar cache directory (default: `cache_dir`).

  Returns:
    The paths, sorted: the assembled job server's jars other than Flink's
    own and the logging bindings; ``[]`` for a shaded job-server jar, which
    carries Flink itself and so cannot go beside a cluster's.
  """
  if job_server_jar is None:
    job_server_jar = ensure_job_server('flink', cache=cache)
  folder = os.path.splitext(job_server_jar)[0]
  if not os.path.isdir(folder):
    _LOGGER.info('%s is not an assembled job server: a TaskManager loads '
                 'Beam from each job\'s jars', job_server_jar)
    return []
  return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                if name.endswith('.jar') and
                not name.startswith(_NOT_FOR_TASKMANAGERS))


def java_version(launcher: str = 'java') -> Optional[int]:
  """The major version of ``launcher`` (8, 11, 17...), None if not found."""
  path = shutil.which(launcher)
  if not path:
    return None
  done = subprocess.run([path, '-version'], capture_output=True, text=True,
                        check=False)
  match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
  if not match:
    return 0
  major = int(match.group(1))
  return int(match.group(2) or 0) if major == 1 else major


def runner_name(options: PipelineOptions) -> Optional[str]:
  """``'flink'``, ``'spark'`` or None, from ``--runner`` as users spell it."""
  runner = options.view_as(StandardOptions).runner
  if not isinstance(runner, str):
    return None
  name = runner.rsplit('.', 1)[-1].lower()
  name = name[:-len('runner')] if name.endswith('runner') else name
  return name if name in RUNNERS else None


def prepare_runner(options: PipelineOptions) -> None:
  """Fills in what ``--runner FlinkRunner`` / ``SparkRunner`` need to start.

  For other runners it does nothing. For Flink and Spark it checks that Java
  is there, fetches the job-server jar through Maven when no jar option is
  given (see `ensure_job_server`; the cache is ``--jar_cache_dir`` when set),
  and adds the ``--add-opens`` flags Flink's job server needs on Java 9+.
  On a cluster (a master that is not ``local[N]``, ``[local]`` or
  ``[auto]``), TaskManagers and executors keep their SDK environments for
  the job (``--environment_cache_millis``, `ENVIRONMENT_CACHE_MILLIS`)
  unless the option is given.
  Beam itself runs the SDK workers in this process (LOOPBACK) for a local
  master (``[local]``/``[auto]``, ``local[N]``) when no environment is given.

  Raises:
    JobServerError: Java or Maven is missing; the message says what to do.
  """
  runner = runner_name(options)
  if runner is None:
    return
  if runner == 'flink':
    engine = options.view_as(FlinkRunnerOptions)
    if engine.flink_submit_uber_jar:
      return  # Submitted to the cluster's REST API: no job server here.
    jar_option = 'flink_job_server_jar'
  else:
    engine = options.view_as(SparkRunnerOptions)
    if engine.spark_submit_uber_jar:
      return
    jar_option = 'spark_job_server_jar'
  server = options.view_as(JobServerOptions)
  launcher = server.job_server_java_launcher or 'java'
  version = java_version(launcher)
  if version is None:
    raise JobServerError(
        f'{runner.capitalize()}Runner runs Beam\'s {runner.capitalize()} job '
        f'server on Java, and {launcher!r} is not on PATH: install Java 11 or '
        f'newer (17 is tested), or name it with --job_server_java_launcher.')
  if not getattr(engine, jar_option):
    setattr(engine, jar_option,
            ensure_job_server(runner, cache=server.jar_cache_dir))
    if runner == 'flink':
      engine.flink_version = FLINK_VERSION
  properties = list(server.job_server_jvm_properties or [])
  if runner == 'flink' and version >= 9:
    properties += [p for p in FLINK_JVM_PROPERTIES if p not in properties]
  if not any(p.startswith(_TMPDIR_PROPERTY) for p in properties):
    # The job server's files (Flink's blob store, Spark's scratch space) go
    # where this run's own temporary files go (`runtime.temp_dir`).
    properties.append(f'{_TMPDIR_PROPERTY}{tempfile.gettempdir()}')
  server.job_server_jvm_properties = properties
  portable = options.view_as(PortableOptions)
  environment = portable.environment_type
  master = (engine.spark_master_url if runner == 'spark' else
            engine.flink_master)
  if not re.match(_LOCAL_MASTER, master or '[auto]') and (
      'environment_cache_millis' not in options.get_all_options(
          drop_default=True)):
    portable.environment_cache_millis = ENVIRONMENT_CACHE_MILLIS
  _LOGGER.info('%sRunner: job server %s, SDK workers %s', runner.capitalize(),
               getattr(engine, jar_option), environment or
               'LOOPBACK for a local master, else Beam\'s default (DOCKER)')


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Fetches job-server jars ahead of time; prints their paths."""
  parser = argparse.ArgumentParser(
      prog='python -m pipeline.job_servers',
      description='Fetch Beam\'s Flink and Spark job-server jars with Maven '
      'into the cache that --runner FlinkRunner/SparkRunner use.')
  parser.add_argument('runners', nargs='*', metavar='RUNNER',
                      help='flink and/or spark (default: both)')
  parser.add_argument('--cache_dir', help=f'jar cache (default: ${CACHE_ENV} '
                      f'or {DEFAULT_CACHE})')
  parser.add_argument('--taskmanager_jars', action='store_true',
                      help='print, one a line, the jars to copy into each '
                      'Flink TaskManager\'s lib/ (with classloader.'
                      'resolve-order: parent-first) so that SDK workers last '
                      'the job')
  args = parser.parse_args(argv)
  unknown = [r for r in args.runners if r not in RUNNERS]
  if unknown:
    parser.error(f'unknown runner {unknown[0]!r}: expected flink or spark')
  # force: importing Beam may already have configured the root logger.
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s',
                      force=True)
  if args.taskmanager_jars and args.runners not in ([], ['flink']):
    parser.error('--taskmanager_jars is for flink only')
  try:
    if args.taskmanager_jars:
      print('\n'.join(taskmanager_jars(cache=args.cache_dir)))
      return 0
    for runner in args.runners or RUNNERS:
      print(f'{runner}: {ensure_job_server(runner, cache=args.cache_dir)}')
  except JobServerError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
