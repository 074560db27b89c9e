"""The README's Dataflow command, checked offline (#23, item 4).

Beam's DataflowRunner with ``--dry_run=True`` (``TestOptions``) builds the
Runner v2 job it would submit (``result.job.proto_pipeline`` and
``result.job.options``, as Beam's own ``dataflow_runner_test.py`` reads them)
and returns without calling Google; ``--no_auth`` and a made-up project and
region keep it so. The command checks what it can offline in a dry run and
reads only the bundle, which it needs to build the job: a GCS emulator
(`tests.clusters.gcs`) holds it. The input is not there at all: a dry run
never lists it.

Checked on the job: the stages in order, the shuffles where the scale-out
design puts them (`pipeline.io.readers`), the worker environment (the staged
``setup.py`` sdist, or ``--sdk_container_image``), one TensorFlow thread per
SDK process, and no local-only machinery (warm workers, the watchdog, the
quick process exit) in the job, its options, its workers' imports, or the
processes the command starts.

And before anything: a path on this machine given to ``--input``,
``--model`` or ``--output`` with Dataflow is a one-line error (exit status
2); malformed ``gs://`` bucket names are one too in a dry run.
"""

import json
import os
import subprocess
import sys
import tarfile
import tempfile

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from pipeline.cli import preflight, score
from tests import services
from tests.clusters import gcs
from tests.pipeline.cli.test_cli import FOREIGN
from transforms.handler import BundleModelHandler

ROOT = services.ROOT
# The README's "Run on Dataflow" command, BUCKET and PROJECT filled in.
PROJECT, REGION = 'made-up-project', 'us-central1'
# Modules that only a run on this machine may load: the warm workers, the
# watchdog, the local plan, the quick process exit, the command itself.
LOCAL_ONLY = ('pipeline.local', 'runtime.process_exit', 'runtime.sdk_worker',
              'pipeline.cli')
# Options of local runs that must not reach Dataflow's job.
LOCAL_OPTIONS = ('direct_running_mode', 'direct_num_workers',
                 'default_sdk_harness_log_level', 'environment_type',
                 'environment_config', 'job_timeout_secs')


def readme_command(bucket: str) -> list[str]:
  """The README's Dataflow command's arguments for ``bucket``."""
  return ['--input', f'gs://{bucket}/corpus/*.jsonl',
          '--model', f'gs://{bucket}/bundles/example',
          '--output', f'gs://{bucket}/scores',
          '--runner', 'DataflowRunner', '--project', PROJECT,
          '--region', REGION, '--temp_location', f'gs://{bucket}/tmp',
          '--setup_file', './setup.py']


# --- Before anything: local paths and bucket names (fast) ------------------

@pytest.fixture
def unreachable_gcs(monkeypatch):
  """Any gs:// access fails at once (nothing listens there): a check that
  passed would show as another error."""
  monkeypatch.setenv(gcs.EMULATOR_HOST_ENV, f'http://127.0.0.1:'
                     f'{services.free_port()}')


@pytest.mark.parametrize('option', ['--input', '--model', '--output'])
@pytest.mark.parametrize('path', ['data/corpus', '/srv/data/corpus',
                                  'file:///srv/data/corpus'])
@pytest.mark.parametrize('runner', ['DataflowRunner', 'dataflow'])
def test_a_local_path_with_dataflow_is_one_line(option, path, runner,
                                                unreachable_gcs, capsys):
  argv = readme_command('bucket')
  argv[argv.index(option) + 1] = path
  argv[argv.index('--runner') + 1] = runner
  assert score.main(argv) == 2
  out, err = capsys.readouterr()
  assert out == ''
  assert err == (f'error: {option} {path}: a path on this machine, which '
                 f'Dataflow\'s workers cannot reach; copy it to Cloud '
                 f'Storage and give its gs:// path.\n'), err


def test_a_local_path_is_refused_in_a_dry_run_too(unreachable_gcs, capsys):
  argv = readme_command('bucket') + ['--dry_run=True', '--no_auth']
  argv[argv.index('--model') + 1] = 'bundles/example'
  assert score.main(argv) == 2
  assert capsys.readouterr().err.startswith(
      'error: --model bundles/example: a path on this machine')


@pytest.mark.parametrize('flags,remote', [
    (['--runner', 'DataflowRunner'], 'Dataflow'),
    (['--runner', 'TestDataflowRunner'], 'Dataflow'),
    ([], None),
    (['--runner', 'DirectRunner'], None),
    # Flink and Spark may share this machine's disk (a local master, a
    # cluster on this host, a filesystem mounted alike): not refused here.
    (['--runner', 'FlinkRunner', '--flink_master', 'flink.example:8081'],
     None),
    (['--runner', 'SparkRunner', '--spark_master_url',
      'spark://spark.example:7077'], None),
    (['--runner', 'PortableRunner', '--job_endpoint', 'jobs.example:8099'],
     None),
])
def test_which_runners_are_remote(flags, remote):
  assert preflight.remote_runner(PipelineOptions(flags)) == remote


def test_dry_run_is_dataflows_only():
  assert preflight.is_dry_run(PipelineOptions(
      ['--runner', 'DataflowRunner', '--dry_run=True']))
  assert not preflight.is_dry_run(PipelineOptions(
      ['--runner', 'DataflowRunner']))
  # The DirectRunner ignores --dry_run and runs the job: checked as usual.
  assert not preflight.is_dry_run(PipelineOptions(['--dry_run=True']))


@pytest.mark.parametrize('option,path,says', [
    ('--input', 'gs://Corpus_Bucket/*.jsonl', 'lowercase letters'),
    ('--input', 'gs://ab/*.jsonl', '3 to 63 characters'),
    ('--output', 'gs://-scores/out', 'starts and ends with a letter'),
    ('--model', 'gs://a..b/bundle', 'dot-separated part'),
    ('--output', 'gs://192.168.0.1/out', 'not an IP address'),
    ('--model', 'gs://google-bundles/b', '"goog"'),
    ('--input', 'gs://corpus-bucket', 'names a bucket'),
])
def test_dry_run_checks_paths_offline(option, path, says, unreachable_gcs,
                                      capsys):
  argv = readme_command('bucket') + ['--dry_run=True', '--no_auth']
  argv[argv.index(option) + 1] = path
  assert score.main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'error: {option} {path}: ') and says in err, err
  assert err.count('\n') == 1, err


def test_valid_bucket_names():
  for name in ('b12', 'my-bucket_1', 'a.b.c', 'x' * 63,
               '.'.join(['y' * 63] * 3)):
    assert preflight.check_bucket_name(name) is None, name


# --- The job Beam would submit (a GCS emulator holds the bundle) ----------

@pytest.fixture(scope='module')
def emulator(tmp_path_factory, trained_bundle):
  """The emulator, holding the bundle as the README names it."""
  from model import storage
  with gcs.emulator(tmp_path_factory.mktemp('gcs')) as running:
    with running.applied():
      storage.copy_tree(trained_bundle.path, running.url('bundles/example'))
    yield running


def _dry_run(emulator, tmp_dir, extra: list[str], *,
             setup_file: bool = True):
  """Runs the README's command with ``--dry_run=True --no_auth`` in this
  process (without its ``--setup_file`` unless ``setup_file``); returns the
  result and the commands of the processes it started. Beam's staging
  folder goes to ``tmp_dir``."""
  started = []
  original = subprocess.Popen.__init__

  def recording(self, args, *more, **kwargs):
    started.append(list(args) if not isinstance(args, str) else [args])
    original(self, args, *more, **kwargs)

  argv = readme_command(emulator.bucket) + ['--dry_run=True', '--no_auth']
  if not setup_file:
    at = argv.index('--setup_file')
    del argv[at:at + 2]
  with pytest.MonkeyPatch.context() as patch, emulator.applied():
    patch.chdir(ROOT)
    patch.setattr(tempfile, 'tempdir', str(tmp_dir))
    patch.setattr(subprocess.Popen, '__init__', recording)
    result = score.run(argv + extra)
  return result, started


@pytest.fixture(scope='module')
def readme_job(emulator, tmp_path_factory):
  return _dry_run(emulator, tmp_path_factory.mktemp('staging'), [])


@pytest.fixture(scope='module')
def container_job(emulator, tmp_path_factory):
  """With a worker image instead of the staged setup.py."""
  result, _ = _dry_run(emulator, tmp_path_factory.mktemp('staging-image'),
                       ['--sdk_container_image',
                        'europe-docker.pkg.dev/made-up/scorer/worker:1'],
                       setup_file=False)
  return result


def _names_in_order(proto) -> list[str]:
  """Every transform's full label, parents before children, in the order
  they were applied."""
  names = []

  def visit(transform_id):
    transform = proto.components.transforms[transform_id]
    names.append(transform.unique_name)
    for child in transform.subtransforms:
      visit(child)
  for root in proto.root_transform_ids:
    visit(root)
  return names


def _transform(proto, name):
  found = [t for t in proto.components.transforms.values()
           if t.unique_name == name]
  assert len(found) == 1, (name, len(found))
  return found[0]


def _producer(proto, pcollection_id):
  """The innermost transform that outputs ``pcollection_id``."""
  producers = [t for t in proto.components.transforms.values()
               if pcollection_id in t.outputs.values()]
  return max(producers, key=lambda t: t.unique_name.count('/'))


@pytest.mark.slow
def test_dry_run_builds_the_job_offline(readme_job, emulator):
  result, _ = readme_job
  assert result.summary['dry_run'] and result.job is not None
  proto = result.job.proto_pipeline
  assert result.summary['transforms'] == len(proto.components.transforms)
  options = result.job.options.get_all_options()
  assert (options['project'], options['region']) == (PROJECT, REGION)
  assert options['temp_location'].startswith(emulator.url('tmp') + '/')
  # Nothing was listed or written: the emulator holds the bundle only.
  from model import storage
  with emulator.applied():
    assert all(p.startswith('bundles/example/')
               for p in storage.list_tree(emulator.url(''))), (
                   storage.list_tree(emulator.url('')))


@pytest.mark.slow
def test_stages_in_order(readme_job):
  proto = readme_job[0].job.proto_pipeline
  names = _names_in_order(proto)
  expected = ['ReadCorpus/MatchFiles', 'ReadCorpus/PlanRanges',
              'ReadCorpus/SpreadRanges', 'ReadCorpus/ReadRanges',
              'ReadCorpus/Rebalance', 'ScoreDocuments/ExtractText',
              'ScoreDocuments/SegmentText', 'ScoreDocuments/LookUpTokenIds',
              'ScoreDocuments/TruncateTokenIds', 'ScoreDocuments/SortByLength',
              'ScoreDocuments/RunInference', 'ScoreDocuments/ToScoreRecord',
              'CountScored', 'WriteScores', 'AllErrors', 'WriteErrors']
  positions = [names.index(name) for name in expected]
  assert positions == sorted(positions), [names[i] for i in positions]
  # Each scoring stage reads what the one before it wrote.
  chain = ['ReadCorpus/ReadRanges', 'ReadCorpus/Rebalance',
           'ScoreDocuments/ExtractText', 'ScoreDocuments/SegmentText',
           'ScoreDocuments/LookUpTokenIds', 'ScoreDocuments/TruncateTokenIds',
           'ScoreDocuments/SortByLength']
  for before, after in zip(chain, chain[1:]):
    inputs = set(_transform(proto, after).inputs.values())
    outputs = set(_transform(proto, before).outputs.values())
    assert inputs & outputs, (before, after)
  writers = [n for n in names if n.startswith(('WriteScores/', 'WriteErrors/'))]
  assert any('WriteImpl' in n or 'Write/' in n for n in writers), writers


@pytest.mark.slow
def test_shuffles_where_the_design_puts_them(readme_job):
  """The ranges are spread over the workers before they are read, and on
  Dataflow (an external shuffle) the documents once more after reading."""
  proto = readme_job[0].job.proto_pipeline
  reshuffle = common_urns.composites.RESHUFFLE.urn
  for name in ('ReadCorpus/SpreadBlocks', 'ReadCorpus/SpreadRanges',
               'ReadCorpus/Rebalance'):
    assert _transform(proto, name).spec.urn == reshuffle, name
  reshuffles = sorted(t.unique_name
                      for t in proto.components.transforms.values()
                      if t.spec.urn == reshuffle)
  assert reshuffles == ['ReadCorpus/Rebalance', 'ReadCorpus/SpreadBlocks',
                        'ReadCorpus/SpreadRanges'], reshuffles
  read = _transform(proto, 'ReadCorpus/ReadRanges/ParDo(ReadRanges)')
  (read_input,) = read.inputs.values()
  assert _producer(proto, read_input).unique_name.startswith(
      'ReadCorpus/SpreadRanges/')
  extract = _transform(proto, 'ScoreDocuments/ExtractText')
  (docs,) = extract.inputs.values()
  assert _producer(proto, docs).unique_name.startswith(
      'ReadCorpus/Rebalance/')


def _environment(result):
  proto = result.job.proto_pipeline
  environments = list(proto.components.environments.values())
  assert len(environments) == 1, environments
  (environment,) = environments
  assert environment.urn == common_urns.environments.DOCKER.urn
  image = beam_runner_api_pb2.DockerPayload.FromString(
      environment.payload).container_image
  staged = {}
  for artifact in environment.dependencies:
    assert artifact.role_urn == common_urns.artifact_roles.STAGING_TO.urn
    name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
        artifact.role_payload).staged_name
    staged[name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(
        artifact.type_payload).path
  return image, staged


@pytest.mark.slow
def test_workers_get_the_staged_setup_py(readme_job):
  image, staged = _environment(readme_job[0])
  python = f'{sys.version_info.major}.{sys.version_info.minor}'
  assert image.endswith(f'/beam_python{python}_sdk:{beam.__version__}'), image
  # Beam stages the setup.py's sdist as workflow.tar.gz; workers install it.
  assert 'workflow.tar.gz' in staged, staged
  with tarfile.open(staged['workflow.tar.gz']) as sdist:
    files = {name.split('/', 1)[1] for name in sdist.getnames()
             if '/' in name}
  for module in ('setup.py', 'pipeline/cli/score.py', 'pipeline/io/readers.py',
                 'transforms/score.py', 'transforms/handler.py',
                 'model/bundle.py', 'runtime/console.py'):
    assert module in files, module
  assert not any(f.startswith(('tests/', 'bench/', 'docs/')) for f in files)


@pytest.mark.slow
def test_or_the_image_given(container_job):
  image, staged = _environment(container_job)
  assert image == 'europe-docker.pkg.dev/made-up/scorer/worker:1'
  assert 'workflow.tar.gz' not in staged, staged


def _find(value, kind, depth=0, seen=None):
  """Every instance of ``kind`` reachable from ``value`` through attributes
  and containers."""
  seen = set() if seen is None else seen
  if id(value) in seen or depth > 8:
    return []
  seen.add(id(value))
  if isinstance(value, kind):
    return [value]
  if isinstance(value, dict):
    children = list(value.values())
  elif isinstance(value, (list, tuple, set)):
    children = list(value)
  elif hasattr(value, '__dict__') and not isinstance(value, type):
    children = list(vars(value).values())
  else:
    return []
  return [found for child in children
          for found in _find(child, kind, depth + 1, seen)]


def _do_fns(proto):
  """``{label: unpickled DoFn payload}`` of every ParDo of the job."""
  par_do = common_urns.primitives.PAR_DO.urn
  return {t.unique_name: pickler.loads(
      beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
      .do_fn.payload)
          for t in proto.components.transforms.values()
          if t.spec.urn == par_do}


@pytest.mark.slow
def test_one_tensorflow_thread_per_worker_process(readme_job):
  """Dataflow runs one SDK process per vCPU: each scores with one thread."""
  handlers = [h for fn in _do_fns(readme_job[0].job.proto_pipeline).values()
              for h in _find(fn, BundleModelHandler)]
  assert handlers, 'no BundleModelHandler in the job'
  # pylint: disable-next=protected-access
  assert {h._tf_threads for h in handlers} == {1}


# Run in a fresh interpreter, as a Dataflow worker would: loads every pickled
# function and coder of the job, then names the project's modules imported.
_WORKER_LOADS = r'''
import json, sys
from apache_beam.internal import pickler
from apache_beam.portability import common_urns, python_urns
from apache_beam.portability.api import beam_runner_api_pb2 as pb
from apache_beam.runners import pipeline_context
with open(sys.argv[1], 'rb') as f:
  proto = pb.Pipeline.FromString(f.read())
loaded = 0
for t in proto.components.transforms.values():
  if t.spec.urn == common_urns.primitives.PAR_DO.urn:
    pickler.loads(pb.ParDoPayload.FromString(t.spec.payload).do_fn.payload)
    loaded += 1
  elif t.spec.urn == python_urns.PICKLED_TRANSFORM:
    pickler.loads(t.spec.payload)
    loaded += 1
context = pipeline_context.PipelineContext(proto.components)
for coder_id in proto.components.coders:
  context.coders.get_by_id(coder_id)
  loaded += 1
ours = ('pipeline', 'runtime', 'model', 'transforms')
print(json.dumps({'loaded': loaded, 'modules': sorted(
    m for m in sys.modules if m.split('.')[0] in ours)}))
'''


@pytest.mark.slow
def test_no_local_machinery_in_the_job(readme_job, tmp_path):
  result, started = readme_job
  proto = result.job.proto_pipeline
  path = tmp_path / 'job.pb'
  path.write_bytes(proto.SerializeToString())
  done = subprocess.run([sys.executable, '-c', _WORKER_LOADS, str(path)],
                        cwd=str(tmp_path), env=services.env(),
                        capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  loaded = json.loads(done.stdout.splitlines()[-1])
  modules = loaded['modules']
  # What the workers load: the readers, the scoring transforms, the writers.
  assert loaded['loaded'] > 50, loaded
  for needed in ('pipeline.io.readers', 'pipeline.io.writers',
                 'transforms.score', 'transforms.handler'):
    assert needed in modules, modules
  local = [m for m in modules if m.startswith(LOCAL_ONLY)]
  assert not local, local
  # Nor do the job's options carry a local run's settings.
  given = result.job.options.get_all_options(drop_default=True)
  assert not set(given) & set(LOCAL_OPTIONS), given
  assert set(result.job.options.view_as(DebugOptions).experiments) == {
          'beam_fn_api', 'use_unified_worker', 'use_runner_v2',
          'use_portable_job_submission'}
  # The only processes the command started are Beam's staging: the
  # setup.py's sdist (``python -m build``, else ``setup.py sdist``) and
  # ``pip freeze`` (submission_environment_dependencies.txt).
  commands = [' '.join(map(str, command)) for command in started]
  assert any('sdist' in c for c in commands), commands
  for text in commands:
    assert text.startswith(sys.executable + ' '), text
    assert text.endswith((' -m pip freeze', f' setup.py sdist --dist-dir '
                          f'{text.rsplit(" ", 1)[-1]}')) or (
                              ' -m build --no-isolation --sdist ' in text), text


@pytest.mark.slow
def test_dry_run_as_typed(emulator, tmp_path):
  """``python -m pipeline.score ... --dry_run=True --no_auth`` as typed:
  one line saying what was built, no traceback, no temporary folder left,
  nothing written to the bucket."""
  scratch = tmp_path / 'tmp'
  scratch.mkdir()
  env = dict(emulator.process_env(), TMPDIR=str(scratch))
  env.pop('TF_CPP_MIN_LOG_LEVEL')
  argv = readme_command(emulator.bucket) + ['--dry_run=True', '--no_auth']
  done = subprocess.run([sys.executable, '-m', 'pipeline.score', *argv],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  stdout = done.stdout.splitlines()
  assert len(stdout) == 1 and stdout[0].startswith(
      'Dry run: built the DataflowRunner job beamapp-'), done.stdout
  assert stdout[0].endswith('nothing was submitted, listed or written.')
  assert (f'Scoring gs://{emulator.bucket}/corpus/*.jsonl (not listed: a dry '
          f'run) with gs://{emulator.bucket}/bundles/example into '
          f'gs://{emulator.bucket}/scores on DataflowRunner') in done.stderr
  assert not FOREIGN.search(done.stdout + done.stderr), done.stderr
  assert os.listdir(scratch) == [], os.listdir(scratch)
  from model import storage
  with emulator.applied():
    left = storage.list_tree(emulator.url(''))
  assert all(p.startswith('bundles/example/') for p in left), left
