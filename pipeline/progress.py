"""Progress of a scoring run, printed at a steady interval.

Why this module exists: the DirectRunner runs a batch pipeline to its end
inside ``pipeline.run()`` and its Beam metrics exist only in the final
result, so a local run cannot poll them. Remote runners (Dataflow, Flink and
Spark job servers) return from ``run()`` at once and answer metric queries
while the job runs. So progress comes two ways:

* Steps call `tally` beside their Beam counters (same names), and `flush`
  in ``finish_bundle``. When the
  environment variable `PROGRESS_DIR_ENV` names a directory that exists on
  the machine, each process writes its counts there, at most once a second.
  The command sets it for a run; worker subprocesses of the DirectRunner
  inherit it. Elsewhere `tally` only adds to a few integers in memory.
* When ``run()`` returns before the job ends, `ProgressReporter` queries the
  job's Beam metrics (namespace ``ja_doc_scorer``) too, where the runner
  answers such queries while running (Dataflow). Portable job services
  (Flink, Spark) are not asked: their result keeps the first answer.

On a cluster (Flink or Spark with an EXTERNAL or PROCESS environment) the
SDK workers cannot reach the progress directory and the job service keeps
its first metrics answer, so the lines say that no counts came yet, rather
than that nothing was scored; the summary has the totals.

Counts: ``scored`` (documents), ``tokens``, ``errors``, ``records_read``
(records the readers produced, documents and unreadable records alike), and
``bytes_read`` (bytes of input read; with the input's total size it gives
the percent read and the time left, and without it the line leaves them
out). Records read show that a job moves before its first documents are
scored: with worker processes on the DirectRunner, each worker segments its
ranges and holds the documents in its length-sorting buffer, and scores
them after its last range.

The time left counts the work, not the reading (`work_done`): reading a
document (with its MeCab segmentation, fused into the reading step) is
`READ_SHARE` of its cost and scoring it the rest, so a run whose workers
read everything before they score is not called nearly done when its
reading is.
"""

import json
import logging
import os
import threading
import time
from typing import Callable, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.metrics import NAMESPACE

_LOGGER = logging.getLogger(__name__)

PROGRESS_DIR_ENV = 'JA_DOC_SCORER_PROGRESS_DIR'
WRITE_EVERY_SECS = 1.0


class _Tally:
  """This process's counts, written to the progress directory when set."""
  def __init__(self):
    self.lock = threading.Lock()
    self.directory: Optional[str] = None
    self.usable = False
    self.counts: dict[str, int] = {}
    self.last_write = 0.0


_TALLY = _Tally()


def tally(**counts: int) -> None:
  """Adds to this process's progress counts (cheap; thread-safe).

  Example: ``tally(bytes_read=len(chunk))`` beside the Beam counter.
  """
  _add(counts, force=False)


def flush() -> None:
  """Writes this process's counts now (call it in ``finish_bundle``)."""
  _add({}, force=True)


def _add(counts: dict[str, int], *, force: bool) -> None:
  directory = os.environ.get(PROGRESS_DIR_ENV)
  t = _TALLY
  with t.lock:
    if directory != t.directory:  # a new run: start from zero
      t.directory, t.counts, t.last_write = directory, {}, 0.0
      t.usable = bool(directory) and os.path.isdir(directory)
    for name, n in counts.items():
      t.counts[name] = t.counts.get(name, 0) + n
    now = time.monotonic()
    if not t.usable or (not force and now - t.last_write < WRITE_EVERY_SECS):
      return
    t.last_write = now
    snapshot = dict(t.counts)
  _write_counts(directory, snapshot)


def _write_counts(directory: str, counts: dict[str, int]) -> None:
  tmp = os.path.join(directory, f'{os.getpid()}-{threading.get_ident()}.tmp')
  try:
    with open(tmp, 'w', encoding='utf-8') as f:
      json.dump(counts, f)
    os.replace(tmp, os.path.join(directory, f'{os.getpid()}.json'))
  except OSError:
    pass  # progress is best effort; the run goes on


def read_counts(directory: str) -> dict[str, int]:
  """The counts of every process that wrote to ``directory``, summed."""
  totals: dict[str, int] = {}
  try:
    names = [n for n in os.listdir(directory) if n.endswith('.json')]
  except OSError:
    return totals
  for name in names:
    try:
      with open(os.path.join(directory, name), encoding='utf-8') as f:
        counts = json.load(f)
    except (OSError, ValueError):
      continue
    for key, value in counts.items():
      totals[key] = totals.get(key, 0) + int(value)
  return totals


_MIN_DONE_FOR_ETA = 0.01
# The share of a document's cost spent before it is scored: reading it and
# segmenting it with MeCab, fused into the reading step. Measured by the
# benchmark's floors (`bench.run`, 16,000 documents, one core): MeCab alone
# 60.4 s, the model alone 21.3 s, so 60.4 / 81.7.
READ_SHARE = 0.74


def work_done(counts: dict[str, int],
              total_bytes: Optional[int]) -> Optional[float]:
  """The share of the run's work done, from 0 to 1; None where unknown.

  Reading counts `READ_SHARE` of it, in proportion to the input's bytes
  read; scoring counts the rest, in proportion to the documents finished
  (scored or failed) among those the input holds, estimated from the
  records read so far and the share of the bytes they came from.
  """
  read = counts.get('bytes_read')
  if not total_bytes or not read:
    return None
  read_share = min(read / total_bytes, 1.0)
  records = counts.get('records_read')
  if not records:
    return read_share * READ_SHARE
  expected = records / read_share
  finished = counts.get('scored', 0) + counts.get('errors', 0)
  return (read_share * READ_SHARE +
          min(finished / expected, 1.0) * (1 - READ_SHARE))


def _duration(secs: float) -> str:
  secs = int(round(secs))
  if secs >= 3600:
    return f'{secs // 3600}h{secs % 3600 // 60:02d}m'
  if secs >= 60:
    return f'{secs // 60}m{secs % 60:02d}s'
  return f'{secs}s'


def progress_line(counts: dict[str, int], elapsed: float,
                  total_bytes: Optional[int]) -> str:
  """One progress line: documents, tokens, docs/s, records read when
  counted, and the percent read and the time left when both ``bytes_read``
  and ``total_bytes`` are known (the time left from 1% of the work on, see
  `work_done`)."""
  if not counts:
    # No process has counted anything: workers still starting, or a
    # cluster's SDK workers, which report only in the final metrics.
    return (f'[{_duration(elapsed)}] running; no counts from the workers '
            f'yet')
  docs = counts.get('scored', 0)
  detail = f'{counts.get("tokens", 0):,} tokens'
  if counts.get('errors'):
    detail += f', {counts["errors"]:,} errors'
  rate = docs / elapsed if elapsed > 0 else 0.0
  line = (f'[{_duration(elapsed)}] scored {docs:,} documents ({detail}), '
          f'{rate:,.1f} docs/s')
  if 'records_read' in counts:
    line += f', {counts["records_read"]:,} records read'
  read = counts.get('bytes_read')
  if total_bytes and read:
    done = min(read / total_bytes, 1.0)
    line += f', {100 * done:.0f}% of the input read'
    work = work_done(counts, total_bytes)
    # Below 1% the time so far is mostly start-up, and an estimate from it
    # would be off by hours.
    if work is not None and _MIN_DONE_FOR_ETA <= work < 1.0:
      line += f', about {_duration(elapsed * (1 - work) / work)} left'
  return line


class ProgressReporter:
  """Logs a progress line every ``every_secs`` from a background thread.

  Args:
    every_secs: the interval; 0 turns the reporter off.
    directory: the progress directory the run's processes write to.
    total_bytes: the input's size, when known.
    log: where lines go (the command's logger by default).
  """
  def __init__(self, every_secs: float, directory: str, *,
               total_bytes: Optional[int] = None,
               log: Callable[[str], None] = _LOGGER.info):
    self._every = every_secs
    self._directory = directory
    self._total = total_bytes
    self._log = log
    self._metrics: Optional[Callable[[], Optional[dict[str, int]]]] = None
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name='ProgressReporter')
    self._start = time.monotonic()

  def start(self) -> 'ProgressReporter':
    self._start = time.monotonic()
    if self._every > 0:
      self._thread.start()
    return self

  def use_metrics(self, query: Callable[[], Optional[dict[str, int]]]) -> None:
    """Reads counts from ``query()`` (a running job's Beam metrics) too."""
    self._metrics = query

  def counts(self) -> dict[str, int]:
    counts = read_counts(self._directory)
    if self._metrics is not None:
      try:
        remote = self._metrics() or {}
      except Exception:  # pylint: disable=broad-except
        remote = {}  # a runner that cannot answer while running
      for key, value in remote.items():
        counts[key] = max(counts.get(key, 0), value)
    return counts

  def _run(self) -> None:
    while not self._stop.wait(self._every):
      self._log(progress_line(self.counts(), time.monotonic() - self._start,
                              self._total))

  def stop(self) -> None:
    self._stop.set()
    if self._thread.is_alive():
      self._thread.join(timeout=self._every + 5)


# Steps of the scoring job that count beside its other steps.


class CountScored(beam.DoFn):
  """Counts scored documents and their tokens (Beam counter and progress)."""
  def __init__(self):
    self._scored = Metrics.counter(NAMESPACE, 'scored')

  def process(self, record):
    self._scored.inc()
    tally(scored=1, tokens=record['n_tokens'])
    yield record

  def finish_bundle(self):
    flush()


def count_read_error(record):
  """Counts an unreadable record (Beam counters ``read_errors`` and
  ``errors``); returns it."""
  Metrics.counter(NAMESPACE, 'read_errors').inc()
  Metrics.counter(NAMESPACE, 'errors').inc()
  return record


def tally_error(record):
  """Tallies an error record for the progress line; returns it."""
  tally(errors=1)
  return record
