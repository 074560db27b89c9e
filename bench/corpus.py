"""The benchmark's corpus: reproducible documents of realistic lengths.

Real technical documents run to a median of about 750 MeCab tokens with a
long tail (p90 about 4,200), and the tail is what pads a classic batch to
8,000; so the corpus strings the example sentences of `examples.make_corpus`
into documents whose token counts follow that log-normal law. The same seed
writes the same bytes. `split_corpus` deals one corpus into several files,
to measure reading from many files against reading from one.
"""

import json
import math
import os
import random
from typing import Any

import numpy as np

from examples.make_corpus import TOPICS

MAXLEN = 8000
MEDIAN_TOKENS = 750
P90_TOKENS = 4200
_Z90 = 1.2815516  # The standard normal's 90th percentile.


def sentences() -> list[str]:
  """The example corpus's sentences, topic after topic."""
  return [s for topic in TOPICS.values() for s in topic]


def make_corpus(path: str, n_docs: int, seed: int) -> dict[str, Any]:
  """Writes ``n_docs`` JSONL documents with long-tailed token counts.

  Args:
    path: the JSONL file to write (``id`` and ``text`` per line).
    n_docs: how many documents.
    seed: the seed; the same seed writes the same file.

  Returns:
    The corpus's statistics: ``docs``, ``tokens``, ``median``, ``p90``,
    ``p99`` (MeCab tokens per document), ``over_maxlen`` (the share of
    documents over `MAXLEN` tokens) and ``bytes``.
  """
  from model.text import Segmenter  # pylint: disable=import-outside-toplevel
  if n_docs < 1:
    raise ValueError(f'a corpus needs at least one document; asked for '
                     f'{n_docs} in {path}.')
  segmenter = Segmenter()
  pool = sentences()
  tokens = [len(segmenter.segment(s).split()) for s in pool]
  rng = random.Random(seed)
  sigma = math.log(P90_TOKENS / MEDIAN_TOKENS) / _Z90
  lengths = []
  with open(path, 'w', encoding='utf-8') as f:
    for i in range(n_docs):
      target = max(1, int(rng.lognormvariate(math.log(MEDIAN_TOKENS), sigma)))
      parts, n = [], 0
      while n < target:
        j = rng.randrange(len(pool))
        parts.append(pool[j])
        n += tokens[j]
      lengths.append(n)
      f.write(json.dumps({'id': f'b{seed}-{i:06d}', 'text': ''.join(parts)},
                         ensure_ascii=False) + '\n')
  q = np.percentile(lengths, [50, 90, 99])
  return {'docs': n_docs, 'tokens': int(sum(lengths)),
          'median': float(q[0]), 'p90': float(q[1]), 'p99': float(q[2]),
          'over_maxlen': float(np.mean(np.asarray(lengths) > MAXLEN)),
          'bytes': os.path.getsize(path)}


def split_corpus(path: str, n_files: int, outdir: str) -> str:
  """Deals the lines of ``path`` into ``n_files`` files of consecutive lines.

  File ``k`` gets lines ``[k * n / n_files, (k + 1) * n / n_files)``, so
  every document lands in exactly one file, in its order, and the files
  differ by at most one document.

  Args:
    path: a JSONL corpus.
    n_files: how many files; at least 1 and at most the corpus's lines.
    outdir: the folder for ``part-KKKKK-of-NNNNN.jsonl`` (created; earlier
      parts in it are replaced).

  Returns:
    The file pattern that matches the parts.
  """
  with open(path, encoding='utf-8') as f:
    lines = f.readlines()
  if not 1 <= n_files <= len(lines):
    raise ValueError(f'cannot split the {len(lines)} documents of {path} into '
                     f'{n_files} files: need 1 to {len(lines)} files.')
  if lines[-1] and not lines[-1].endswith('\n'):
    lines[-1] += '\n'
  os.makedirs(outdir, exist_ok=True)
  for name in os.listdir(outdir):
    if name.startswith('part-') and name.endswith('.jsonl'):
      os.remove(os.path.join(outdir, name))
  for k in range(n_files):
    lo, hi = k * len(lines) // n_files, (k + 1) * len(lines) // n_files
    part = os.path.join(outdir, f'part-{k:05d}-of-{n_files:05d}.jsonl')
    with open(part, 'w', encoding='utf-8') as f:
      f.writelines(lines[lo:hi])
  return os.path.join(outdir, 'part-*.jsonl')
