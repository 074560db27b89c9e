"""``OUTDIR/_SUMMARY.json``: what a successful run did, with what.

Why this module exists: a run's record (its counters, input, outputs,
bundle, options and package versions) is what a user or an orchestrator
reads to trust the outputs; option values that may hold secrets are
redacted before they are written.
"""

import datetime
import hashlib
import json
from typing import Any, Optional

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from model import storage
from model.bundle import MANIFEST, package_versions
from pipeline.io.outdir import (ERRORS_PREFIX, SCORES_PREFIX, SUMMARY_NAME,
                                shard_names)
from transforms.handler import WORKER_COUNTER_PREFIX
from transforms.metrics import NAMESPACE

COUNTERS = ('documents', 'tokens', 'unknown_tokens', 'truncated', 'empty',
            'errors', 'read_errors', 'scored', 'padded_tokens',
            'models_loaded', 'models_loaded_lstm', 'models_loaded_signature',
            'bytes_read', 'records_read')
# The distributions whose versions a summary records.
PACKAGES = ('ja-doc-scorer', 'apache-beam', 'tensorflow', 'keras',
            'mecab-python3', 'unidic-lite', 'numpy', 'pyarrow')

# Option names that may hold secrets: these anywhere in the name...
_SECRET_PARTS = ('secret', 'password', 'passwd', 'credential',
                 'connection_string')
# ...and these as a whole word of it (``batch_tokens`` is no secret).
_SECRET_WORDS = ('token', 'key', 'apikey', 'auth')


def summarize(result, *, attempted: bool = False) -> dict[str, int]:
  """The pipeline's counters, by name (committed values where the runner
  has them, unless ``attempted``)."""
  counters = result.metrics().query(
      MetricsFilter().with_namespace(NAMESPACE))['counters']
  totals = {name: 0 for name in COUNTERS}
  for counter in counters:
    name = counter.key.metric.name
    if name in totals:
      value = counter.committed if (
          counter.committed is not None and not attempted) else (
              counter.attempted)
      totals[name] += value or 0
  return totals


def scored_by_worker(result, *, attempted: bool = False) -> dict[str, int]:
  """Documents scored by each worker process, ``{'HOST:PID': count}``.

  Shows whether every task slot or core of an engine scored: one entry per
  Python process that ran the model (committed values where the runner has
  them, unless ``attempted``), sorted by name.
  """
  counters = result.metrics().query(
      MetricsFilter().with_namespace(NAMESPACE))['counters']
  workers: dict[str, int] = {}
  for counter in counters:
    name = counter.key.metric.name
    if name.startswith(WORKER_COUNTER_PREFIX):
      value = counter.committed if (
          counter.committed is not None and not attempted) else (
              counter.attempted)
      worker = name[len(WORKER_COUNTER_PREFIX):]
      workers[worker] = workers.get(worker, 0) + (value or 0)
  return dict(sorted(workers.items()))


def _is_secret(name: str) -> bool:
  name = name.lower().replace('-', '_')
  return (any(part in name for part in _SECRET_PARTS) or
          any(word in _SECRET_WORDS for word in name.split('_')))


def redacted(options: dict[str, Any]) -> dict[str, Any]:
  """The options with the values of those that may hold secrets hidden."""
  return {k: ('<redacted>' if _is_secret(k) else v)
          for k, v in options.items()}


def bundle_identity(path: str) -> dict[str, Any]:
  """The bundle's path, manifest hash, checksums and output names."""
  raw = storage.read_bytes(FileSystems.join(path, MANIFEST))
  manifest = json.loads(raw)
  return {'path': path, 'manifest_sha256': hashlib.sha256(raw).hexdigest(),
          'checksums': manifest.get('checksums', {}),
          'outputs': manifest.get('outputs', [])}


def now() -> str:
  """The time now, UTC, ISO 8601 to the second."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds')


def record(result: Any, args: Any, options: Any, *, started: str,
           seconds: float, files: int, total_bytes: int,
           recovered: Optional[dict[str, int]] = None) -> dict[str, Any]:
  """What ``_SUMMARY.json`` holds for a run that succeeded.

  Args:
    result: the finished PipelineResult.
    args: the command's options.
    options: the job's PipelineOptions.
    started: when the run started (`now`).
    seconds: how long it took.
    files: the input files.
    total_bytes: their size.
    recovered: what the run found and mended of a killed run's leftovers
      (`pipeline.io.outdir.recover`).
  """
  return {
      'command': 'pipeline.score',
      'status': 'succeeded',
      'started_at': started,
      'finished_at': now(),
      'seconds': round(seconds, 3),
      'counts': summarize(result),
      'scored_by_worker': scored_by_worker(result),
      'input': {'pattern': args.input, 'files': files, 'bytes': total_bytes},
      'outputs': {'scores': shard_names(args.output, SCORES_PREFIX),
                  'errors': shard_names(args.output, ERRORS_PREFIX)},
      'bundle': bundle_identity(args.model),
      'options': redacted(vars(args)),
      'pipeline_options': redacted(options.get_all_options(
          drop_default=True)),
      'packages': package_versions(PACKAGES),
      'recovered': recovered or {},
  }


def write_summary(outdir: str, summary: dict[str, Any]) -> str:
  """Writes ``summary`` as ``OUTDIR/_SUMMARY.json``; returns its path."""
  path = FileSystems.join(outdir, SUMMARY_NAME)
  storage.write_bytes(path, json.dumps(summary, ensure_ascii=False, indent=2,
                                       default=str).encode('utf-8'))
  return path
