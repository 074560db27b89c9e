"""The scorer on a real Spark standalone cluster, submitted as users do.

A master and one worker with 2 cores run as processes of their own
(`tests.clusters.spark`), with a Beam worker pool beside them for the
executors' SDK harnesses. Each test runs ``python -m pipeline.score
--runner SparkRunner --spark_master_url spark://127.0.0.1:PORT
--environment_type EXTERNAL --environment_config localhost:POOL
--sdk_worker_parallelism 2``, as the README's "An existing Spark cluster"
says, in a process of its own; Beam starts the Spark job server (the
driver) for it.

* The records equal the DirectRunner's on the mixed corpus of
  `tests.pipeline.test_flink_spark` (documents past maxlen, empty ones and
  records that fail): the same ids, scores within 1e-6, the same errors.
* Every core scores (issue 23, item 2): ``_SUMMARY.json``'s
  ``scored_by_worker:HOST:PID`` counters name two Python processes, each
  with documents, whether the input is one file or many; each loaded the
  model once.
* The console holds only the command's own lines.

The cluster's logs (master, worker, pool, and each executor's under
``work/``) are named in every failure message.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests import services
from tests.clusters import spark
from tests.pipeline.cli.test_cli import FOREIGN, OWN_STDERR
from tests.pipeline.cli.test_score import _read_errors, _read_scores
# The mixed corpus and the DirectRunner's records for it (fixtures).
from tests.pipeline.test_flink_spark import (_assert_same_records,
                                             _mixed_lines, direct, mixed)

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(shutil.which('java') is None,
                       reason='Spark runs on Java, and java is not on PATH'),
]
__all__ = ['direct', 'mixed']  # fixtures used by name
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CORES = 2


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
  """A Spark master, a 2-core worker and a Beam worker pool."""
  with spark.standalone_cluster(tmp_path_factory.mktemp('spark-cluster'),
                                cores=CORES) as running:
    yield running


def _submit(cluster: spark.SparkCluster, pattern: str, bundle: str,
            outdir: str, *flags: str) -> tuple[subprocess.CompletedProcess,
                                               dict]:
  """Runs the command against ``cluster``; its result and summary."""
  env = services.env()
  env.pop('TF_CPP_MIN_LOG_LEVEL')  # the command quiets TensorFlow itself
  done = subprocess.run(
      [sys.executable, '-m', 'pipeline.score', '--input', pattern, '--model',
       bundle, '--output', outdir, '--progress_secs', '0',
       *cluster.beam_flags(),
       *flags], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=600, check=False)
  assert done.returncode == 0, (
      f'exit {done.returncode}; logs in {cluster.logs}\n{done.stderr[-3000:]}')
  with open(os.path.join(outdir, '_SUMMARY.json'), encoding='utf-8') as f:
    return done, json.load(f)


def _assert_every_core_scored(summary: dict, expected: int,
                              cluster: spark.SparkCluster) -> None:
  workers = summary['scored_by_worker']
  where = f'{workers}; logs in {cluster.logs}'
  assert sum(workers.values()) == expected, where
  assert len(workers) == CORES and min(workers.values()) > 0, where
  # Each Python worker loaded the model once: the executor kept them.
  assert summary['counts']['models_loaded'] == CORES, (
      summary['counts'], cluster.logs)


def test_cluster_matches_direct_from_many_files(tmp_path, cluster, mixed,
                                                direct, trained_bundle):
  outdir = str(tmp_path / 'out')
  done, summary = _submit(cluster, mixed['pattern'], trained_bundle.path,
                          outdir, '--num_shards', '2')
  _assert_same_records(outdir, 'jsonl', direct, f'spark cluster, logs in '
                       f'{cluster.logs}')
  assert summary['counts']['errors'] == mixed['bad'], summary['counts']
  _assert_every_core_scored(summary, mixed['good'], cluster)
  # The job ran on the cluster, on all its cores: the master lists it.
  apps = [(app['name'].split('-')[0], app['state'], app['cores'])
          for app in cluster.state()['completedapps']]
  assert ('BeamApp', 'FINISHED', CORES) in apps, (apps, cluster.logs)
  # A quiet console (issue 23, item 8): the command's own lines only.
  stdout = done.stdout.splitlines()
  assert len(stdout) == 2 and stdout[0].startswith(
      f'Scored {mixed["good"]} documents'), done.stdout
  others = [l for l in done.stderr.splitlines() if not OWN_STDERR.match(l)]
  assert not others, done.stderr
  assert not FOREIGN.search(done.stdout + done.stderr), done.stderr


def test_every_core_scores_one_file(tmp_path, cluster, corpus,
                                    trained_bundle):
  lines, good, bad = _mixed_lines(corpus, 's', 200)
  path = tmp_path / 'one.jsonl'
  path.write_bytes(b'\n'.join(lines) + b'\n')
  outdir = str(tmp_path / 'out')
  _, summary = _submit(cluster, str(path), trained_bundle.path, outdir)
  assert len(_read_scores(outdir, 'jsonl')) == good, cluster.logs
  assert len(_read_errors(outdir)) == bad, cluster.logs
  _assert_every_core_scored(summary, good, cluster)
