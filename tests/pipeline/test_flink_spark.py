"""The scorer on a real Flink and a real Spark, through Beam's job servers.

The job servers come from `pipeline.job_servers` (Maven, cached). Each runner
scores the same mixed corpus as the DirectRunner: documents past the bundle's
maxlen, empty ones, and records that fail (invalid JSON and UTF-8, a non-string
or null text, a missing id, a JSON array). Its records must equal the
DirectRunner's.

* Most Flink runs go to one job server started here by hand and shared by the
  module (``java -jar JAR --flink-master [local]``, then ``PortableRunner``),
  which saves a JVM start per test; one test runs
  ``python -m pipeline.score --runner FlinkRunner`` exactly as a user types it.
* Spark runs use ``--runner SparkRunner --spark_master_url local[2]`` as
  users do; Beam keeps one Spark job server per process for equal options.
* LOOPBACK runs the SDK workers inside this process, so those runs read the
  bundle from the in-memory object-store filesystem (``memfs://``). Runs with
  an EXTERNAL worker pool have one process per SDK worker, which cannot see
  this process's memory: they read the bundle from a local path, still
  through Beam's ``FileSystems``.
* Parallelism: an EXTERNAL worker pool starts one Python process per SDK
  worker. With ``--sdk_worker_parallelism 2`` Flink's task manager opens two
  environments and binds each operator instance (one per task slot) to one of
  them for its lifetime. So two processes in the ``scored_by_worker:HOST:PID``
  counters means two instances of the scoring stage, in two task slots, each
  scored documents; and ``models_loaded`` equal to that number of processes
  means each process loaded the model once.
"""

import json
import os
import signal
import subprocess
import sys
import uuid

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import window

import tests.memfs as memfs
from pipeline import job_servers
from pipeline.cli import score, summary
from tests import services, stops
from tests.pipeline.cli.test_cli import FOREIGN, OWN_STDERR
from tests.pipeline.cli.test_score import _read_errors, _read_scores
from transforms import ScoreDocuments
from transforms.handler import worker_identity

# Every test here starts Java: Beam's job servers, Flink, Spark.
pytestmark = pytest.mark.cluster
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FILES = 6


@pytest.fixture(scope='module')
def flink_endpoint(tmp_path_factory):
  """A Flink job server with an embedded cluster, shared by the module."""
  jar = job_servers.ensure_job_server('flink')
  port = services.free_port()
  log = tmp_path_factory.mktemp('flink') / 'job-server.log'
  with open(log, 'wb') as out:
    process = subprocess.Popen(
        ['java', *job_servers.FLINK_JVM_PROPERTIES, '-jar', jar,
         '--flink-master', '[local]', '--job-port', str(port),
         '--artifact-port', '0', '--expansion-port', '0'],
        stdout=out, stderr=subprocess.STDOUT)
  try:
    services.wait_for_port(port, process, log)
    yield f'localhost:{port}'
  finally:
    services.stop([process])


@pytest.fixture(scope='module')
def worker_pool(tmp_path_factory):
  """Beam's worker pool: one Python process per SDK worker it is asked for."""
  port = services.free_port()
  with services.worker_pool(tmp_path_factory.mktemp('pool'), port):
    yield f'localhost:{port}'


def _mixed_lines(corpus, prefix: str, n_docs: int) -> tuple[list[bytes],
                                                             int, int]:
  """JSONL lines: documents, then records that fail; (lines, good, bad)."""
  text = lambda i: corpus[i % len(corpus)]['text']
  docs = [{'id': f'{prefix}{i}', 'text': text(i)} for i in range(n_docs)]
  docs += [{'id': f'{prefix}long', 'text': text(0) * 80},  # past maxlen
           {'id': f'{prefix}empty', 'text': ''},
           {'id': f'{prefix}blank', 'text': ' \u3000\t'},
           {'id': 7, 'text': text(1)}]  # a numeric id
  lines = [json.dumps(d, ensure_ascii=False).encode('utf-8') for d in docs]
  bad = [b'not json', b'\xff\xfe{"id": "bytes"}',
         json.dumps({'id': f'{prefix}number', 'text': 3}).encode(),
         json.dumps({'id': f'{prefix}null', 'text': None}).encode(),
         json.dumps({'text': 'no id'}).encode(), b'[1, 2]']
  return lines + bad, len(docs), len(bad)


@pytest.fixture(scope='module')
def mixed(tmp_path_factory, corpus):
  """The mixed corpus in ``FILES`` JSONL files; its expected counts."""
  root = tmp_path_factory.mktemp('mixed')
  lines, good, bad = _mixed_lines(corpus, 'm', 48)
  for i in range(FILES):
    with open(root / f'part-{i}.jsonl', 'wb') as f:
      f.write(b'\n'.join(lines[i::FILES]) + b'\n')
  return {'pattern': str(root / 'part-*.jsonl'), 'good': good, 'bad': bad}


@pytest.fixture(scope='module')
def spark_job_server():
  """Stops the Spark job server Beam keeps per process, after the module."""
  yield
  from apache_beam.runners.portability import spark_runner
  for server in spark_runner.JOB_SERVER_CACHE.values():
    server.stop()
  spark_runner.JOB_SERVER_CACHE.clear()


@pytest.fixture(scope='module')
def remote_bundle(trained_bundle):
  """The trained bundle on the object-store filesystem ``memfs://``."""
  remote = 'memfs://flink-spark/bundle'
  memfs.upload_tree(trained_bundle.path, remote)
  return remote


@pytest.fixture(scope='module')
def direct(tmp_path_factory, mixed, trained_bundle):
  """The DirectRunner's records for the mixed corpus."""
  outdir = str(tmp_path_factory.mktemp('direct'))
  score.run(['--input', mixed['pattern'], '--model', trained_bundle.path,
             '--output', outdir, '--num_shards', '2'])
  scores, errors = _read_scores(outdir, 'jsonl'), _read_errors(outdir)
  assert len(scores) == mixed['good'] and len(errors) == mixed['bad']
  assert any(r['truncated'] for r in scores)
  assert any(r['n_tokens'] == 0 for r in scores)
  return scores, errors


def _assert_same_records(outdir, fmt, direct, label):
  want_scores, want_errors = direct
  got = {str(r['id']): r for r in _read_scores(outdir, fmt)}
  want = {str(r['id']): r for r in want_scores}
  assert sorted(got) == sorted(want), label
  for doc_id, record in got.items():
    assert (record['n_tokens'], bool(record['truncated'])) == (
        want[doc_id]['n_tokens'], want[doc_id]['truncated']), (label, doc_id)
    np.testing.assert_allclose(record['scores'], want[doc_id]['scores'],
                               rtol=0, atol=1e-6, err_msg=f'{label} {doc_id}')
  key = lambda e: json.dumps(e, sort_keys=True)
  assert sorted(_read_errors(outdir), key=key) == sorted(want_errors,
                                                         key=key), label


def _scored_by_worker(result) -> dict[str, int]:
  """Documents scored per worker process (``HOST:PID``)."""
  return summary.scored_by_worker(result)


def _flink(endpoint: str) -> list[str]:
  return ['--runner', 'PortableRunner', '--job_endpoint', endpoint,
          '--parallelism', '2']


# --- Records equal the DirectRunner's, every output format -----------------

def test_flink_loopback_matches_direct(tmp_path, mixed, direct, remote_bundle,
                                       flink_endpoint):
  outdir = str(tmp_path / 'out')
  result = score.run(['--input', mixed['pattern'], '--model', remote_bundle,
                      '--output', outdir, '--num_shards', '2',
                      '--environment_type', 'LOOPBACK'] +
                     _flink(flink_endpoint))
  _assert_same_records(outdir, 'jsonl', direct, 'flink')
  totals = summary.summarize(result)
  assert totals['scored'] == mixed['good']
  assert totals['errors'] == mixed['bad']
  # LOOPBACK: every SDK worker is a thread of this process, one model.
  assert _scored_by_worker(result) == {worker_identity(): mixed['good']}
  assert totals['models_loaded'] == 1


@pytest.mark.parametrize('fmt', ['csv', 'tfrecord'])
def test_spark_matches_direct(tmp_path, mixed, direct, remote_bundle,
                              spark_job_server, fmt):
  outdir = str(tmp_path / 'out')
  result = score.run(['--input', mixed['pattern'], '--model', remote_bundle,
                      '--output', outdir, '--format', fmt, '--runner',
                      'SparkRunner', '--spark_master_url', 'local[2]'])
  _assert_same_records(outdir, fmt, direct, f'spark {fmt}')
  totals = summary.summarize(result)
  assert totals['scored'] == mixed['good']
  assert _scored_by_worker(result) == {worker_identity(): mixed['good']}
  assert totals['models_loaded'] == 1


@pytest.mark.parametrize('engine,flags,fmt', [
    ('flink', ['--runner', 'FlinkRunner', '--parallelism', '2'], 'parquet'),
    ('spark', ['--runner', 'SparkRunner', '--spark_master_url', 'local[2]'],
     'jsonl'),
])
def test_engines_as_a_user_types_them(tmp_path, mixed, direct, trained_bundle,
                                      engine, flags, fmt):
  """``--runner FlinkRunner`` / ``SparkRunner`` as typed: Beam starts the job
  server, and the console holds only the command's own lines (#23, item 8):
  one line while Maven fetches the job server into an empty cache, no gRPC
  tracebacks, no "Really destroying service", no temporary folders left."""
  outdir = str(tmp_path / 'out')
  scratch = tmp_path / 'tmp'
  scratch.mkdir()
  env = dict(services.env(), TMPDIR=str(scratch))
  env.pop('TF_CPP_MIN_LOG_LEVEL')  # the command quiets TensorFlow itself
  if engine == 'spark':
    # A first run: Maven copies the job server into an empty cache.
    env[job_servers.CACHE_ENV] = str(tmp_path / 'jars')
  done = subprocess.run(
      [sys.executable, '-m', 'pipeline.score', '--input', mixed['pattern'],
       '--model', trained_bundle.path, '--output', outdir, '--format', fmt,
       '--progress_secs', '0', *flags],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  _assert_same_records(outdir, fmt, direct, f'{engine} {fmt}')
  stdout = done.stdout.splitlines()
  assert len(stdout) == 2 and stdout[0].startswith(
      f'Scored {mixed["good"]} documents'), done.stdout
  stderr = done.stderr.splitlines()
  fetching = [l for l in stderr if l.startswith('Fetching Beam\'s')]
  assert len(fetching) == (engine == 'spark'), done.stderr
  if fetching:
    assert f'Spark job server with Maven into {tmp_path / "jars"}' in (
        fetching[0])
  others = [l for l in stderr if l not in fetching
            and not OWN_STDERR.match(l)]
  assert not others, done.stderr
  assert not FOREIGN.search(done.stdout + done.stderr), done.stderr
  assert os.listdir(scratch) == [], os.listdir(scratch)


# --- Parallelism: both task slots score -------------------------------------

def _two_slots(endpoint: str, pool: str) -> list[str]:
  return _flink(endpoint) + ['--environment_type', 'EXTERNAL',
                             '--environment_config', pool,
                             '--sdk_worker_parallelism', '2']


def _assert_two_workers_scored(result, expected: int) -> None:
  workers = _scored_by_worker(result)
  assert sum(workers.values()) == expected, workers
  assert len(workers) == 2 and min(workers.values()) > 0, workers
  # Each worker process loaded the model once.
  assert summary.summarize(result)['models_loaded'] == len(workers)


def test_flink_two_slots_score_many_files(tmp_path, mixed, direct,
                                          trained_bundle, flink_endpoint,
                                          worker_pool):
  outdir = str(tmp_path / 'out')
  result = score.run(['--input', mixed['pattern'], '--model',
                      trained_bundle.path, '--output', outdir] +
                     _two_slots(flink_endpoint, worker_pool))
  _assert_same_records(outdir, 'jsonl', direct, 'flink external')
  _assert_two_workers_scored(result, mixed['good'])


def test_flink_two_slots_score_one_file(tmp_path, corpus, trained_bundle,
                                        flink_endpoint, worker_pool):
  lines, good, bad = _mixed_lines(corpus, 's', 200)
  path = tmp_path / 'one.jsonl'
  path.write_bytes(b'\n'.join(lines) + b'\n')
  outdir = str(tmp_path / 'out')
  result = score.run(['--input', str(path), '--model', trained_bundle.path,
                      '--output', outdir, '--split_bytes',
                      str(path.stat().st_size // 8 + 1)] +
                     _two_slots(flink_endpoint, worker_pool))
  assert len(_read_scores(outdir, 'jsonl')) == good
  assert len(_read_errors(outdir)) == bad
  _assert_two_workers_scored(result, good)


# --- Streaming on Flink -----------------------------------------------------

class _WriteEach(beam.DoFn):
  """Writes each element as JSON to its own file (LOOPBACK: this process)."""
  def __init__(self, directory: str):
    self._directory = directory

  def process(self, element):
    path = os.path.join(self._directory, uuid.uuid4().hex)
    with open(path, 'w', encoding='utf-8') as f:
      json.dump(element, f)


def _read_each(directory) -> list:
  return [json.loads(p.read_text()) for p in directory.iterdir()]


def test_flink_streaming_keeps_windows_and_scores(tmp_path, corpus,
                                                  trained_bundle,
                                                  remote_bundle,
                                                  flink_endpoint):
  """``--streaming`` on Flink with a wait bound: every document is scored
  once, in its own window and with its own timestamp, with the batch
  scores, and a per-window count downstream (a GroupByKey on Flink's
  watermark) drops none of them as late."""
  texts = [d['text'] for d in corpus]
  docs = [(f'd{i}', texts[i % len(texts)], 7.0 * i) for i in range(60)]
  with beam.Pipeline() as p:
    batch_scores, _ = (p | beam.Create([(d, t) for d, t, _ in docs])
                       | ScoreDocuments(trained_bundle.path))
    _ = batch_scores | beam.ParDo(_WriteEach(str(tmp_path)))
  want = {r['id']: r['scores'] for r in _read_each(tmp_path)}
  records, counts = tmp_path / 'records', tmp_path / 'counts'
  records.mkdir()
  counts.mkdir()
  options = PipelineOptions(_flink(flink_endpoint) + [
      '--streaming', '--environment_type', 'LOOPBACK'])
  with beam.Pipeline(options=options) as p:
    scores, errors = (
        p | 'Docs' >> beam.Create(docs)
        | 'Stamp' >> beam.Map(lambda d: window.TimestampedValue(d[:2], d[2]))
        | 'Window' >> beam.WindowInto(window.FixedWindows(60))
        | 'Score' >> ScoreDocuments(remote_bundle, max_batch_duration_secs=0.5,
                                    probe_model=False))
    _ = (scores
         | 'Where' >> beam.Map(
             lambda r, w=beam.DoFn.WindowParam, t=beam.DoFn.TimestampParam:
             [r['id'], float(w.start), float(t), list(r['scores'])])
         | 'WriteRecords' >> beam.ParDo(_WriteEach(str(records))))
    _ = (scores
         | 'One' >> beam.Map(lambda r: ('n', 1))
         | 'CountPerWindow' >> beam.CombinePerKey(sum)
         | 'WithWindow' >> beam.Map(
             lambda kv, w=beam.DoFn.WindowParam: [float(w.start), kv[1]])
         | 'WriteCounts' >> beam.ParDo(_WriteEach(str(counts))))
    _ = errors | 'WriteErrors' >> beam.ParDo(_WriteEach(str(tmp_path / 'e')))
  got = _read_each(records)
  assert sorted(r[0] for r in got) == sorted(d for d, _, _ in docs)
  stamps = {d: ts for d, _, ts in docs}
  for doc_id, start, ts, row in got:
    assert (start, ts) == (stamps[doc_id] // 60 * 60, stamps[doc_id]), doc_id
    np.testing.assert_allclose(row, want[doc_id], rtol=0, atol=1e-6,
                               err_msg=doc_id)
  per_window = {}
  for _, _, ts in docs:
    per_window[ts // 60 * 60] = per_window.get(ts // 60 * 60, 0) + 1
  assert dict(map(tuple, _read_each(counts))) == per_window
  assert not (tmp_path / 'e').exists()


# --- Stop signals on Flink (`tests.stops`) --------------------------------

@pytest.fixture(scope='module')
def signal_documents(tmp_path_factory, corpus):
  path = str(tmp_path_factory.mktemp('flink-signals') / 'docs.jsonl')
  return path, stops.write_input(path, corpus, copies=6)


@pytest.mark.parametrize('sig,group,moment', [
    (signal.SIGTERM, False, 'running'),
    (signal.SIGTERM, False, 'writing'),
    (signal.SIGINT, True, 'running'),
    (signal.SIGINT, True, 'writing'),
    (signal.SIGHUP, True, 'writing'),
    (signal.SIGHUP, False, 'starting'),
])
def test_flink_run_stopped_by_a_signal(tmp_path, signal_documents,
                                       trained_bundle, sig, group, moment):
  """As on the DirectRunner: the job server and the in-process SDK workers
  stop, Flink's files under java.io.tmpdir go with the run's temp folder,
  and the earlier output is back."""
  path, count = signal_documents
  run = stops.stop_run(str(tmp_path), input_path=path,
                       bundle=trained_bundle.path,
                       flags=['--runner', 'FlinkRunner'], signum=sig,
                       moment=moment, group=group)
  assert stops.check_stopped(run, count) == 'earlier'
  assert run.returncode == 128 + sig
