"""Beam's Flink and Spark job servers made ready for a run
(`pipeline.job_servers`): the jar through Maven or a cache, one line when
something is missing, other runners left alone. The runs on Flink and Spark
themselves are in ``test_flink_spark.py``."""

import os
import shutil
import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import (FlinkRunnerOptions,
                                                  JobServerOptions,
                                                  PipelineOptions,
                                                  PortableOptions)

from pipeline import job_servers
from pipeline.cli import score
from runtime import temp_dir
from tests import services
from tests.commands import ROOT


def needs(program: str):
  """Skips, naming it, where ``program`` is not installed."""
  return pytest.mark.skipif(shutil.which(program) is None,
                            reason=f'{program} is not installed')


def _one_doc(tmp_path) -> str:
  """A real input: the checks of inputs, output and bundle come first."""
  path = tmp_path / 'one.jsonl'
  path.write_text('{"id": "a", "text": "猫"}\n', encoding='utf-8')
  return str(path)


def _path_with(tmp_path, *programs: str) -> str:
  """A PATH holding only ``programs`` (links to the real ones)."""
  bindir = tmp_path / 'bin'
  bindir.mkdir()
  for program in programs:
    os.symlink(shutil.which(program), bindir / program)
  return str(bindir)


@needs('java')
@pytest.mark.parametrize('runner', ['FlinkRunner', 'SparkRunner'])
def test_missing_maven_says_how_to_supply_the_jar(tmp_path, monkeypatch,
                                                  capsys, runner,
                                                  trained_bundle):
  monkeypatch.setenv('PATH', _path_with(tmp_path, 'java'))
  monkeypatch.setenv(job_servers.CACHE_ENV, str(tmp_path / 'empty-cache'))
  code = score.main(['--input', _one_doc(tmp_path), '--model',
                     trained_bundle.path, '--output',
                     str(tmp_path / 'out'), '--runner', runner])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2
  assert len(err) == 1 and 'Maven (mvn) is not on PATH' in err[0], err
  flag = '--flink_job_server_jar' if runner == 'FlinkRunner' else (
      '--spark_job_server_jar')
  assert f'{flag} PATH' in err[0]


@needs('mvn')
def test_missing_java_is_named(tmp_path, monkeypatch, capsys,
                               trained_bundle):
  monkeypatch.setenv('PATH', _path_with(tmp_path, 'mvn'))
  monkeypatch.setenv(job_servers.CACHE_ENV, str(tmp_path / 'empty-cache'))
  code = score.main(['--input', _one_doc(tmp_path), '--model',
                     trained_bundle.path, '--output',
                     str(tmp_path / 'out'), '--runner', 'FlinkRunner'])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2
  assert len(err) == 1 and "'java' is not on PATH" in err[0], err


@pytest.mark.cluster
@needs('java')
def test_cached_jar_needs_no_maven(tmp_path, monkeypatch, capfd):
  cached = job_servers.ensure_job_server('flink')
  capfd.readouterr()
  monkeypatch.setenv('PATH', _path_with(tmp_path, 'java'))
  options = PipelineOptions(['--runner', 'FlinkRunner'])
  job_servers.prepare_runner(options)
  assert capfd.readouterr().err == ''  # no "Fetching ..." line
  assert options.view_as(FlinkRunnerOptions).flink_job_server_jar == cached
  properties = options.view_as(JobServerOptions).job_server_jvm_properties
  assert set(job_servers.FLINK_JVM_PROPERTIES) <= set(properties)


@needs('java')
@pytest.mark.parametrize('runner', job_servers.RUNNERS)
def test_the_fetch_notice_names_what_and_where(runner):
  directory = os.path.join(os.path.expanduser('~'), 'jars')
  line = job_servers.fetch_notice(runner, job_servers.candidates(runner),
                                  directory)
  assert '\n' not in line and line.startswith(
      f"Fetching Beam's {runner.capitalize()} job server with Maven into "
      f"~{os.sep}jars (first run only): ")
  for jar in job_servers.candidates(runner):
    artifact = (jar.artifact or jar.libraries[0]).split(':')[1]
    assert artifact in line, (artifact, line)


@needs('java')
def test_jar_given_by_hand_is_kept(tmp_path, monkeypatch):
  jar = tmp_path / 'my-job-server.jar'
  jar.write_bytes(b'')
  monkeypatch.setenv('PATH', _path_with(tmp_path, 'java'))
  options = PipelineOptions(['--runner', 'SparkRunner',
                             '--spark_job_server_jar', str(jar)])
  job_servers.prepare_runner(options)
  assert options.get_all_options()['spark_job_server_jar'] == str(jar)


@needs('java')
@pytest.mark.parametrize('runner,jar_flag', [
    ('FlinkRunner', '--flink_job_server_jar'),
    ('SparkRunner', '--spark_job_server_jar')])
def test_the_job_server_keeps_its_files_in_the_runs_temp_dir(
    tmp_path, monkeypatch, runner, jar_flag):
  """Java's temp folder is this run's (`runtime.temp_dir`), unless the user
  set one."""
  jar = tmp_path / 'job-server.jar'
  jar.write_bytes(b'')
  monkeypatch.setenv('PATH', _path_with(tmp_path, 'java'))
  with temp_dir.run_temp_dir() as run_dir:
    options = PipelineOptions(['--runner', runner, jar_flag, str(jar)])
    job_servers.prepare_runner(options)
  properties = options.view_as(JobServerOptions).job_server_jvm_properties
  assert f'-Djava.io.tmpdir={run_dir}' in properties
  mine = PipelineOptions(['--runner', runner, jar_flag, str(jar),
                          '--job_server_jvm_properties=-Djava.io.tmpdir=/x'])
  job_servers.prepare_runner(mine)
  properties = mine.view_as(JobServerOptions).job_server_jvm_properties
  assert [p for p in properties if 'java.io.tmpdir' in p] == [
      '-Djava.io.tmpdir=/x']


def test_other_runners_are_left_alone(tmp_path, monkeypatch):
  monkeypatch.setenv('PATH', str(tmp_path))  # no Java, no Maven
  for runner in ([], ['--runner', 'DirectRunner'],
                 ['--runner', 'PortableRunner']):
    options = PipelineOptions(runner)
    job_servers.prepare_runner(options)
    assert options.get_all_options()['flink_job_server_jar'] is None


@pytest.mark.parametrize('spelling,name', [
    ('FlinkRunner', 'flink'), ('flink', 'flink'), ('SparkRunner', 'spark'),
    ('apache_beam.runners.portability.flink_runner.FlinkRunner', 'flink'),
    ('DataflowRunner', None), ('PrismRunner', None)])
def test_runner_names_as_users_spell_them(spelling, name):
  assert job_servers.runner_name(PipelineOptions(['--runner', spelling])) == (
      name)


@pytest.mark.cluster
@needs('java')
def test_prefetch_command_prints_the_cached_jar(tmp_path):
  """``python -m pipeline.job_servers``, as CI runs it before the tests."""
  cached = job_servers.ensure_job_server('flink')
  command = [sys.executable, '-m', 'pipeline.job_servers']
  done = subprocess.run(command + ['flink'], cwd=ROOT, env=services.env(),
                        capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip() == f'flink: {cached}'
  env = dict(services.env(), PATH=_path_with(tmp_path, 'java'))
  done = subprocess.run(command + ['spark', '--cache_dir',
                                   str(tmp_path / 'empty')],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        check=False)
  assert done.returncode == 2
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and '--spark_job_server_jar PATH' in last


def _cache_with_flink_job_server(cache, jars, assembled: bool = True) -> str:
  """A jar cache holding the Flink job server ``--runner FlinkRunner``
  picks first, assembled (a jar beside a folder of ``jars``) or not."""
  name = job_servers.candidates('flink')[0].name
  cache.mkdir()
  (cache / f'{name}.jar').write_bytes(b'PK')
  if assembled:
    (cache / name).mkdir()
    for jar in jars:
      (cache / name / jar).write_bytes(b'PK')
  return str(cache / name)


def test_taskmanager_jars_are_beams_without_flink_or_logging(tmp_path):
  """What a TaskManager's ``lib/`` needs for SDK workers that last the
  job: the assembled job server's jars, less what Flink has itself."""
  folder = _cache_with_flink_job_server(tmp_path / 'cache', [
      'beam-runners-flink-1.19-2.62.0.jar', 'beam-sdks-java-core-2.62.0.jar',
      'joda-time-2.10.14.jar', 'flink-core-1.19.0.jar',
      'flink-streaming-java-1.19.0.jar', 'log4j-api-2.23.1.jar',
      'slf4j-api-1.7.32.jar', 'NOTICE.txt'])
  expected = [os.path.join(folder, jar) for jar in (
      'beam-runners-flink-1.19-2.62.0.jar', 'beam-sdks-java-core-2.62.0.jar',
      'joda-time-2.10.14.jar')]
  assert job_servers.taskmanager_jars(cache=str(tmp_path / 'cache')) == (
      expected)
  done = subprocess.run(
      [sys.executable, '-m', 'pipeline.job_servers', '--taskmanager_jars',
       '--cache_dir', str(tmp_path / 'cache')],
      cwd=ROOT, env=services.env(), capture_output=True, text=True,
      check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.splitlines() == expected


def test_a_shaded_job_server_gives_no_taskmanager_jars(tmp_path):
  _cache_with_flink_job_server(tmp_path / 'cache', [], assembled=False)
  assert job_servers.taskmanager_jars(cache=str(tmp_path / 'cache')) == []


def test_taskmanager_jars_are_flinks_only():
  with pytest.raises(SystemExit) as exited:
    job_servers.main(['spark', '--taskmanager_jars'])
  assert exited.value.code == 2


@needs('java')
@pytest.mark.parametrize('argv,cached', [
    (['--runner', 'FlinkRunner'], False),
    (['--runner', 'FlinkRunner', '--flink_master', '[local]'], False),
    (['--runner', 'FlinkRunner', '--flink_master', 'localhost:8081'], True),
    (['--runner', 'SparkRunner'], False),
    (['--runner', 'SparkRunner', '--spark_master_url', 'local[2]'], False),
    (['--runner', 'SparkRunner', '--spark_master_url', 'spark://h:7077'],
     True),
    (['--runner', 'SparkRunner', '--spark_master_url', 'spark://h:7077',
      '--environment_cache_millis', '5'], None),
])
def test_a_cluster_keeps_its_sdk_workers_for_the_job(tmp_path, argv, cached):
  """One set of Python workers a job on a cluster, not one a stage."""
  argv = argv + ['--flink_job_server_jar', str(tmp_path / 'f.jar'),
                 '--spark_job_server_jar', str(tmp_path / 's.jar')]
  options = PipelineOptions(argv)
  job_servers.prepare_runner(options)
  # (Beam keeps a given value as the string it was typed as.)
  value = int(options.view_as(PortableOptions).environment_cache_millis)
  assert value == {True: job_servers.ENVIRONMENT_CACHE_MILLIS, False: 0,
                   None: 5}[cached]
