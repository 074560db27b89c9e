"""Benchmark: how long a document waits for its score in a long bundle.

Usage, from the repository root::

  python -m bench.latency [--docs_per_sec 100] [--secs 20] \\
      [--max_batch_duration_secs 1] [--workdir DIR] [--model BUNDLE]

Why it exists: in a streaming pipeline a bundle can last long (a file read
whole, a runner that closes bundles every second or thousand elements), and
`ScoreDocuments` groups documents by length before batching. This measures
what that grouping costs in latency, with and without
``max_batch_duration_secs``.

Documents arrive at ``--docs_per_sec`` for ``--secs`` seconds, all in one
bundle (one generator step, fused with the scoring on the DirectRunner's
in-process runner), each stamped with its arrival time; a last step records
each score record's wait: the time from its arrival to the record. The
documents are the benchmark corpus's (`bench.corpus`, long-tailed lengths)
and the bundle the classic model's (`bench.variants`) unless ``--model``
names one. It prints the wait's percentiles for each setting, from one run
each, one after the other.
"""

import argparse
import json
import os
import tempfile
import time
from typing import Any, Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from bench.corpus import make_corpus
from transforms import ScoreDocuments


class _Arrivals(beam.DoFn):
  """Yields the texts at a steady rate; each id carries its arrival time."""
  def __init__(self, texts: Sequence[str], docs_per_sec: float):
    self._texts = list(texts)
    self._interval = 1.0 / docs_per_sec

  def process(self, _) -> Iterator[tuple[str, str]]:
    start = time.time()
    for i, text in enumerate(self._texts):
      delay = start + i * self._interval - time.time()
      if delay > 0:
        time.sleep(delay)
      yield f'{i}@{time.time():.6f}', text


class _RecordWait(beam.DoFn):
  """Appends each record's wait (seconds since its arrival) to a file."""
  def __init__(self, path: str):
    self._path = path

  def process(self, record: dict[str, Any]) -> None:
    wait = time.time() - float(record['id'].split('@', 1)[1])
    with open(self._path, 'a', encoding='utf-8') as f:
      f.write(f'{wait:.6f}\n')


def measure(bundle: str, texts: Sequence[str], docs_per_sec: float,
            max_batch_duration_secs: Optional[float],
            workdir: str) -> dict[str, Any]:
  """Runs one pipeline; returns the waits' percentiles and the wall time."""
  waits = os.path.join(workdir, f'waits-{max_batch_duration_secs}.txt')
  open(waits, 'w', encoding='utf-8').close()
  options = PipelineOptions(['--direct_num_workers', '1',
                             '--direct_running_mode', 'in_memory'])
  started = time.time()
  with beam.Pipeline(options=options) as p:
    scores, _ = (
        p | 'Start' >> beam.Create([None])
        | 'Arrive' >> beam.ParDo(_Arrivals(texts, docs_per_sec))
        | 'Score' >> ScoreDocuments(
            bundle, probe_model=False,
            max_batch_duration_secs=max_batch_duration_secs))
    _ = scores | 'RecordWait' >> beam.ParDo(_RecordWait(waits))
  wall = time.time() - started
  with open(waits, encoding='utf-8') as f:
    values = np.array([float(line) for line in f])
  p50, p95, p99 = np.percentile(values, [50, 95, 99])
  return {'max_batch_duration_secs': max_batch_duration_secs,
          'docs': len(values), 'p50': p50, 'p95': p95, 'p99': p99,
          'max': values.max(), 'wall': wall}


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(
      prog='python -m bench.latency',
      description='How long documents wait for their scores in one long '
      'bundle, with and without max_batch_duration_secs.')
  parser.add_argument('--docs_per_sec', type=float, default=100)
  parser.add_argument('--secs', type=float, default=20)
  parser.add_argument('--max_batch_duration_secs', type=float, default=1.0)
  parser.add_argument('--workdir', default=None,
                      help='where the corpus and bundle go (a temporary '
                      'folder by default)')
  parser.add_argument('--model', default=None,
                      help='a bundle; the classic benchmark model if absent')
  parser.add_argument('--seed', type=int, default=7)
  args = parser.parse_args(argv)
  workdir = args.workdir or tempfile.mkdtemp(prefix='bench-latency-')
  os.makedirs(workdir, exist_ok=True)
  n_docs = max(1, int(args.docs_per_sec * args.secs))
  corpus = os.path.join(workdir, 'corpus.jsonl')
  stats = make_corpus(corpus, n_docs, args.seed)
  bundle = args.model
  if bundle is None:
    from bench.variants import make_classic_model  # pylint: disable=import-outside-toplevel
    bundle = make_classic_model(corpus, workdir, args.seed)['bundle']
  with open(corpus, encoding='utf-8') as f:
    texts = [json.loads(line)['text'] for line in f]
  print(f'{n_docs} documents (median {stats["median"]:.0f} tokens, p90 '
        f'{stats["p90"]:.0f}) arriving at {args.docs_per_sec:g}/s in one '
        f'bundle; model: '
        f'{"the classic model" if args.model is None else "--model"}')
  print('| max_batch_duration_secs | docs | wait p50 | p95 | p99 | max | '
        'wall |')
  print('|---|---|---|---|---|---|---|')
  for bound in (None, args.max_batch_duration_secs):
    r = measure(bundle, texts, args.docs_per_sec, bound, workdir)
    print(f'| {bound} | {r["docs"]} | {r["p50"]:.2f} s | {r["p95"]:.2f} s | '
          f'{r["p99"]:.2f} s | {r["max"]:.2f} s | {r["wall"]:.1f} s |',
          flush=True)


if __name__ == '__main__':
  main()
