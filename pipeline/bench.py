"""Benchmark: this package against the classic Keras scoring, side by side.

Usage::

  python -m pipeline.bench [--docs 400] [--scales 1,4] [--results bench/results]

In one run, on the same generated corpus, it times:

  (a) ``classic``: MeCab -Owakati, Keras ``Tokenizer.texts_to_sequences``,
      ``pad_sequences(maxlen=8000)``, ``model.predict`` (tf-keras);
  (b) ``beam_stock``: Beam ``RunInference`` on sequences padded to maxlen,
      with stock ``BatchElements`` batching (a stacking handler, like Beam's
      ``TFModelHandlerNumpy``, which itself needs tensorflow-hub and Keras 2);
  (c) ``ours_inprocess`` and ``ours_multiprocess``: ``pipeline.score`` on the
      DirectRunner, in-process and with 2 worker processes;

and the floor: ``floor_mecab`` (MeCab alone) and ``floor_model`` (the
SavedModel alone on length-sorted, per-batch padded input). Each variant runs
in its own process; peak RSS is the largest sum of the RSS of that process
and its children, sampled every 50 ms. Results go to ``results.md``,
``results.json`` and ``throughput.png`` under ``--results``.

The corpus is reproducible (seeded): Japanese sentences from
``examples/make_corpus.py`` strung into documents whose MeCab token counts
follow a log-normal law with median 750 and p90 4,200 (so p99 is about
18,000 and about 4% are over 8,000), as measured on real technical documents.
"""

import argparse
import json
import logging
import math
import os
import random
import subprocess
import sys
import threading
import time
from typing import Any, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

_LOGGER = logging.getLogger(__name__)

MAXLEN = 8000
MEDIAN_TOKENS = 750
P90_TOKENS = 4200
VARIANTS = ('classic', 'beam_stock', 'ours_inprocess', 'ours_multiprocess',
            'floor_mecab', 'floor_model')


# --- corpus and model ------------------------------------------------------

def _sentences() -> list[str]:
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), 'examples'))
  from make_corpus import TOPICS  # pylint: disable=import-outside-toplevel
  return [s for topic in TOPICS.values() for s in topic]


def make_corpus(path: str, n_docs: int, seed: int) -> dict[str, Any]:
  """Writes ``n_docs`` JSONL documents with long-tailed token counts."""
  from model.text import Segmenter  # pylint: disable=import-outside-toplevel
  segmenter = Segmenter()
  sentences = _sentences()
  tokens = [len(segmenter.segment(s).split()) for s in sentences]
  rng = random.Random(seed)
  sigma = math.log(P90_TOKENS / MEDIAN_TOKENS) / 1.2815516
  lengths = []
  with open(path, 'w', encoding='utf-8') as f:
    for i in range(n_docs):
      target = max(1, int(rng.lognormvariate(math.log(MEDIAN_TOKENS), sigma)))
      parts, n = [], 0
      while n < target:
        j = rng.randrange(len(sentences))
        parts.append(sentences[j])
        n += tokens[j]
      lengths.append(n)
      f.write(json.dumps({'id': f'b{seed}-{i:06d}', 'text': ''.join(parts)},
                         ensure_ascii=False) + '\n')
  q = np.percentile(lengths, [50, 90, 99])
  return {'docs': n_docs, 'tokens': int(sum(lengths)),
          'median': float(q[0]), 'p90': float(q[1]), 'p99': float(q[2]),
          'over_maxlen': float(np.mean(np.asarray(lengths) > MAXLEN))}


def make_classic_model(corpus: str, workdir: str, seed: int) -> dict[str, str]:
  """Builds the classic model (tf-keras) and imports it as a bundle."""
  import tf_keras  # pylint: disable=import-outside-toplevel
  from gensim.models import Word2Vec  # pylint: disable=import-outside-toplevel
  from tf_keras.preprocessing.text import Tokenizer  # pylint: disable=import-outside-toplevel

  from model.import_keras import import_keras_model  # pylint: disable=import-outside-toplevel
  from model.text import Segmenter  # pylint: disable=import-outside-toplevel
  segmenter = Segmenter()
  with open(corpus, encoding='utf-8') as f:
    texts = [segmenter.segment(json.loads(line)['text']) for line in f]
  tokenizer = Tokenizer()
  tokenizer.fit_on_texts(texts)
  vectors = Word2Vec([t.split() for t in texts[:200]], vector_size=64,
                     min_count=1, workers=1, seed=seed, epochs=2).wv
  rows = len(tokenizer.word_index) + 1
  matrix = np.zeros((rows, 64), np.float32)
  for word, i in tokenizer.word_index.items():
    if word in vectors.key_to_index:
      matrix[i] = vectors[word]
  tf_keras.utils.set_random_seed(seed)
  model = tf_keras.Sequential([
      tf_keras.layers.Embedding(rows, 64, input_length=MAXLEN, mask_zero=True,
                                trainable=False, weights=[matrix]),
      tf_keras.layers.LSTM(32),
      tf_keras.layers.Dense(8),
  ])
  model.compile(optimizer='adam', loss='mse')
  paths = {
      'model': os.path.join(workdir, 'classic.h5'),
      'tokenizer': os.path.join(workdir, 'tokenizer.json'),
      'bundle': os.path.join(workdir, 'bundle'),
  }
  model.save(paths['model'])
  with open(paths['tokenizer'], 'w', encoding='utf-8') as f:
    f.write(tokenizer.to_json())
  import_keras_model(paths['model'], paths['tokenizer'], paths['bundle'],
                     maxlen=MAXLEN, overwrite=True)
  return paths


# --- the variants, each run in its own process -------------------------------

def _read_texts(corpus: str) -> tuple[list[str], list[str]]:
  ids, texts = [], []
  with open(corpus, encoding='utf-8') as f:
    for line in f:
      record = json.loads(line)
      ids.append(record['id'])
      texts.append(record['text'])
  return ids, texts


def run_classic(corpus: str, paths: dict[str, str], out: str) -> dict:
  import tf_keras  # pylint: disable=import-outside-toplevel
  from tf_keras.preprocessing.sequence import pad_sequences  # pylint: disable=import-outside-toplevel
  from tf_keras.preprocessing.text import tokenizer_from_json  # pylint: disable=import-outside-toplevel
  import MeCab  # pylint: disable=import-outside-toplevel
  ids, texts = _read_texts(corpus)
  start = time.perf_counter()
  tagger = MeCab.Tagger('-Owakati')
  with open(paths['tokenizer'], encoding='utf-8') as f:
    tokenizer = tokenizer_from_json(f.read())
  model = tf_keras.models.load_model(paths['model'], compile=False)
  scores, real = [], 0
  for i in range(0, len(texts), 256):
    seqs = tokenizer.texts_to_sequences(
        [tagger.parse(t) for t in texts[i:i + 256]])
    real += sum(min(len(s), MAXLEN) for s in seqs)
    scores.append(model.predict(pad_sequences(seqs, maxlen=MAXLEN),
                                batch_size=32, verbose=0))
  elapsed = time.perf_counter() - start
  _save_scores(out, ids, np.concatenate(scores))
  return {'seconds': elapsed, 'real_tokens': real,
          'padded_tokens': len(texts) * MAXLEN}


def run_pipeline(corpus: str, paths: dict[str, str], out: str,
                 multiprocess: bool) -> dict:
  from pipeline import score  # pylint: disable=import-outside-toplevel
  flags = ['--direct_running_mode', 'multi_processing',
           '--direct_num_workers', '2'] if multiprocess else [
               '--direct_running_mode', 'in_memory']
  outdir = out + '.d'
  start = time.perf_counter()
  result = score.run(['--input', corpus, '--model', paths['bundle'],
                      '--output', outdir, '--num_shards', '1'] + flags)
  elapsed = time.perf_counter() - start
  records = {}
  with open(os.path.join(outdir, 'scores-00000-of-00001.jsonl'),
            encoding='utf-8') as f:
    for line in f:
      r = json.loads(line)
      records[r['id']] = r
  ids, _ = _read_texts(corpus)
  _save_scores(out, ids,
               np.asarray([records[i]['scores'] for i in ids], np.float32))
  return {'seconds': elapsed,
          'real_tokens': sum(min(r['n_tokens'], MAXLEN)
                             for r in records.values()),
          'padded_tokens': score.summarize(result)['padded_tokens']}


def run_beam_stock(corpus: str, paths: dict[str, str], out: str) -> dict:
  import apache_beam as beam  # pylint: disable=import-outside-toplevel
  from apache_beam.ml.inference.base import KeyedModelHandler, RunInference  # pylint: disable=import-outside-toplevel

  from model.bundle import load_bundle  # pylint: disable=import-outside-toplevel
  from transforms.tokenize import LookUpTokenIds, SegmentText, TruncateTokenIds  # pylint: disable=import-outside-toplevel
  bundle = load_bundle(paths['bundle'])
  outdir = out + '.d'
  start = time.perf_counter()
  with beam.Pipeline(argv=['--direct_running_mode', 'in_memory']) as p:
    _ = (p | beam.io.ReadFromText(corpus)
         | 'Parse' >> beam.Map(_id_text)
         | beam.ParDo(SegmentText(bundle.mecab_args))
         | beam.ParDo(LookUpTokenIds(bundle.path))
         | beam.ParDo(TruncateTokenIds(bundle.maxlen, bundle.truncating))
         | 'PadToMaxlen' >> beam.Map(_pad_to_maxlen, MAXLEN)
         | RunInference(KeyedModelHandler(StackingHandler(bundle.path)))
         | 'ToJson' >> beam.Map(_json_prediction)
         | beam.io.WriteToText(os.path.join(outdir, 'scores'),
                               num_shards=1, shard_name_template=''))
  elapsed = time.perf_counter() - start
  records = {}
  with open(os.path.join(outdir, 'scores'), encoding='utf-8') as f:
    for line in f:
      r = json.loads(line)
      records[r[0]] = r
  ids, _ = _read_texts(corpus)
  real = sum(records[i][2] for i in ids)
  _save_scores(out, ids, np.asarray([records[i][1] for i in ids], np.float32))
  return {'seconds': elapsed, 'real_tokens': real,
          'padded_tokens': len(ids) * MAXLEN}


def _id_text(line: str):
  record = json.loads(line)
  return record['id'], record['text']


def _pad_to_maxlen(element, maxlen: int):
  from model.text import pad_batch  # pylint: disable=import-outside-toplevel
  doc_id, doc = element
  return (doc_id, len(doc.ids)), pad_batch([doc.ids], length=maxlen,
                                            padding='pre')[0]


def _json_prediction(element) -> str:
  (doc_id, n), prediction = element
  return json.dumps([doc_id, [float(x) for x in prediction.inference], n])


class StackingHandler(ModelHandler):
  """A stock-style RunInference handler: stacks fixed-length rows (as Beam's
  ``TFModelHandlerNumpy`` does) and calls the bundle's SavedModel."""
  def __init__(self, bundle_path: str):
    super().__init__()
    self._path = bundle_path

  def load_model(self):
    from model.bundle import load_bundle  # pylint: disable=import-outside-toplevel
    return load_bundle(self._path, check_model=False).load_signature()

  def run_inference(self, batch, model, inference_args=None):
    scores = model(np.stack(batch))
    return [PredictionResult(x, s) for x, s in zip(batch, scores)]


def run_floor_mecab(corpus: str, paths: dict[str, str], out: str) -> dict:
  del paths, out
  from model.text import Segmenter  # pylint: disable=import-outside-toplevel
  _, texts = _read_texts(corpus)
  start = time.perf_counter()
  segmenter = Segmenter()
  n = sum(len(segmenter.segment(t).split()) for t in texts)
  return {'seconds': time.perf_counter() - start, 'real_tokens': n,
          'padded_tokens': 0}


def run_floor_model(corpus: str, paths: dict[str, str], out: str) -> dict:
  from model.bundle import load_bundle  # pylint: disable=import-outside-toplevel
  from model.text import Segmenter, budget_batches, truncate  # pylint: disable=import-outside-toplevel
  from transforms.handler import DEFAULT_BATCH_TOKENS  # pylint: disable=import-outside-toplevel
  bundle = load_bundle(paths['bundle'])
  segmenter, rules = Segmenter(), bundle.tokenizer
  ids, texts = _read_texts(corpus)
  seqs = [truncate(bundle.vocabulary.lookup(rules.words(segmenter.segment(t)))[0],
                   bundle.maxlen, bundle.truncating) for t in texts]
  order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
  start = time.perf_counter()
  predict = bundle.load_signature()
  scores = np.zeros((len(seqs), len(bundle.output_names)), np.float32)
  padded = 0
  for chunk in budget_batches(order, [len(s) for s in seqs],
                              batch_tokens=DEFAULT_BATCH_TOKENS):
    x = bundle.pad([seqs[i] for i in chunk])
    scores[chunk] = predict(x)
    padded += x.size
  elapsed = time.perf_counter() - start
  _save_scores(out, ids, scores)
  return {'seconds': elapsed, 'real_tokens': sum(len(s) for s in seqs),
          'padded_tokens': padded}


def _save_scores(out: str, ids: list[str], scores: np.ndarray) -> None:
  np.save(out + '.npy', scores)
  with open(out + '.ids', 'w', encoding='utf-8') as f:
    f.write('\n'.join(ids))


def _child(variant: str, corpus: str, paths_json: str, out: str) -> None:
  logging.basicConfig(level=logging.WARNING)
  # Every variant pays its imports before the clock starts.
  import apache_beam  # pylint: disable=import-outside-toplevel,unused-import
  import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
  paths = json.loads(paths_json)
  runners = {
      'classic': run_classic,
      'beam_stock': run_beam_stock,
      'ours_inprocess': lambda c, p, o: run_pipeline(c, p, o, False),
      'ours_multiprocess': lambda c, p, o: run_pipeline(c, p, o, True),
      'floor_mecab': run_floor_mecab,
      'floor_model': run_floor_model,
  }
  result = runners[variant](corpus, paths, out)
  with open(out + '.json', 'w', encoding='utf-8') as f:
    json.dump(result, f)


def _tree_rss(pid: int) -> int:
  """Bytes of RSS of ``pid`` and all its descendants, from ``/proc``."""
  page = os.sysconf('SC_PAGE_SIZE')
  total, stack = 0, [pid]
  while stack:
    p = stack.pop()
    try:
      with open(f'/proc/{p}/statm', encoding='ascii') as f:
        total += int(f.read().split()[1]) * page
      for task in os.listdir(f'/proc/{p}/task'):
        with open(f'/proc/{p}/task/{task}/children', encoding='ascii') as f:
          stack += [int(c) for c in f.read().split()]
    except (OSError, ValueError):
      continue  # the process ended between two reads
  return total


def _run_measured(variant: str, corpus: str, paths: dict[str, str],
                  out: str) -> dict:
  """Runs a variant in a child process, sampling the tree's RSS."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.Popen(
      [sys.executable, '-m', 'pipeline.bench', '--child', variant, '--corpus',
       corpus, '--paths', json.dumps(paths), '--out', out], env=env,
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  peak = 0
  stderr_chunks = []
  reader = threading.Thread(
      target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
  reader.start()
  while proc.poll() is None:
    peak = max(peak, _tree_rss(proc.pid))
    time.sleep(0.05)
  reader.join()
  stderr = b''.join(stderr_chunks).decode('utf-8', 'replace')
  if proc.returncode != 0:
    raise RuntimeError(f'{variant} failed:\n{stderr[-3000:]}')
  with open(out + '.json', encoding='utf-8') as f:
    result = json.load(f)
  result['peak_rss_mb'] = peak / 2**20
  return result


def _max_diff(out: str, reference: str) -> Optional[float]:
  if not os.path.exists(out + '.npy') or not os.path.exists(reference + '.npy'):
    return None
  return float(np.max(np.abs(np.load(out + '.npy') - np.load(reference + '.npy'))))


# --- report ------------------------------------------------------------------

def write_report(rows: list[dict], corpora: dict, results_dir: str,
                 machine: str) -> str:
  lines = [
      '# Benchmark results', '',
      f'Machine: {machine}. One run of `python -m pipeline.bench`; every '
      f'variant timed end to end in its own process (model loading, MeCab '
      f'and inference), on the same corpus.', '',
      'Corpus (MeCab tokens per document):', '',
      '| scale | documents | tokens | median | p90 | p99 | over 8000 |',
      '|---|---|---|---|---|---|---|',
  ]
  for scale, c in corpora.items():
    lines.append(f'| {scale}x | {c["docs"]} | {c["tokens"]} | {c["median"]:.0f} '
                 f'| {c["p90"]:.0f} | {c["p99"]:.0f} | {100 * c["over_maxlen"]:.1f}% |')
  lines += ['', '| variant | scale | docs/s | real tokens/s | padded tokens/s '
            '| peak RSS MB | docs/s vs (a) | max abs diff vs (a) |',
            '|---|---|---|---|---|---|---|---|']
  for r in rows:
    diff = '' if r['max_diff'] is None else f'{r["max_diff"]:.2e}'
    ratio = '' if r['ratio'] is None else f'{r["ratio"]:.2f}x'
    lines.append(
        f'| {r["variant"]} | {r["scale"]}x | {r["docs_per_s"]:.1f} | '
        f'{r["real_tokens_per_s"]:.0f} | {r["padded_tokens_per_s"]:.0f} | '
        f'{r["peak_rss_mb"]:.0f} | {ratio} | {diff} |')
  lines += ['', 'Against the targets:', '']
  lines += [f'- {line}' for line in target_lines(rows)]
  text = '\n'.join(lines) + '\n'
  with open(os.path.join(results_dir, 'results.md'), 'w', encoding='utf-8') as f:
    f.write(text)
  return text


def target_lines(rows: list[dict]) -> list[str]:
  """The issue's targets, computed from one run's rows."""
  at = {(r['variant'], r['scale']): r for r in rows}
  scales = sorted({r['scale'] for r in rows})
  out = []
  for variant in ('ours_inprocess', 'ours_multiprocess'):
    for scale in scales:
      ours = at.get((variant, scale))
      if ours and ours.get('ratio') is not None:
        out.append(f'{variant} at {scale}x: {ours["ratio"]:.2f}x the '
                   f'documents/s of the classic way (target >= 3x), largest '
                   f'absolute difference {ours["max_diff"]:.2e} '
                   f'(target <= 1e-5)')
    for scale in scales:
      ours = at.get((variant, scale))
      mecab, model = at.get(('floor_mecab', scale)), at.get(('floor_model', scale))
      if ours and mecab and model:
        floor = mecab['seconds'] + model['seconds']
        out.append(f'{variant} at {scale}x: {ours["seconds"]:.1f} s against a '
                   f'floor of {floor:.1f} s (MeCab {mecab["seconds"]:.1f} s + '
                   f'model {model["seconds"]:.1f} s): '
                   f'{ours["seconds"] / floor:.2f}x (target <= 1.5x)')
    small, large = at.get((variant, scales[0])), at.get((variant, scales[-1]))
    if small and large and small is not large:
      out.append(
          f'{variant} from {scales[0]}x to {scales[-1]}x: time '
          f'{large["seconds"] / small["seconds"]:.2f}x for '
          f'{large["docs"] / small["docs"]:.0f}x the documents; peak RSS '
          f'{large["peak_rss_mb"] / small["peak_rss_mb"]:.2f}x (target <= 1.2x)')
  return out


def plot(rows: list[dict], results_dir: str) -> str:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  one = [r for r in rows if r['scale'] == 1]
  left.barh([r['variant'] for r in one], [r['docs_per_s'] for r in one],
            color=['#999' if r['variant'].startswith('floor') else '#36c'
                   for r in one])
  left.set_xlabel('documents / s (1x corpus)')
  left.invert_yaxis()
  for variant in ('ours_inprocess', 'ours_multiprocess'):
    pts = sorted((r['docs'], r['seconds'], r['peak_rss_mb'])
                 for r in rows if r['variant'] == variant)
    if pts:
      right.plot([p[0] for p in pts], [p[1] for p in pts], 'o-',
                 label=f'{variant} time (s)')
      right.plot([p[0] for p in pts], [p[2] / 100 for p in pts], 's--',
                 label=f'{variant} peak RSS (100 MB)')
  right.set_xlabel('documents')
  right.legend(fontsize=8)
  right.set_title('scale: time and memory')
  fig.tight_layout()
  path = os.path.join(results_dir, 'throughput.png')
  fig.savefig(path, dpi=100)
  return path


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m pipeline.bench')
  parser.add_argument('--docs', type=int, default=400,
                      help='documents in the 1x corpus')
  parser.add_argument('--scales', default='1,4')
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--workdir', default='bench/work')
  parser.add_argument('--results', default='bench/results')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--child', help=argparse.SUPPRESS)
  parser.add_argument('--corpus', help=argparse.SUPPRESS)
  parser.add_argument('--paths', help=argparse.SUPPRESS)
  parser.add_argument('--out', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    _child(args.child, args.corpus, args.paths, args.out)
    return 0

  logging.basicConfig(level=logging.INFO, format='%(message)s')
  for noisy in ('gensim', 'absl', 'tensorflow', 'model'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  os.makedirs(args.workdir, exist_ok=True)
  os.makedirs(args.results, exist_ok=True)
  scales = [int(s) for s in args.scales.split(',')]
  variants = args.variants.split(',')
  corpora, files = {}, {}
  for scale in scales:
    files[scale] = os.path.join(args.workdir, f'corpus_{scale}x.jsonl')
    corpora[scale] = make_corpus(files[scale], args.docs * scale,
                                 args.seed + scale)
    _LOGGER.info('corpus %dx: %s', scale, corpora[scale])
  paths = make_classic_model(files[scales[0]], args.workdir, args.seed)

  rows = []
  for scale in scales:
    for variant in variants:
      # Stock RunInference holds batches padded to 8000 (GBs): 1x only.
      if scale != scales[0] and variant == 'beam_stock':
        continue
      out = os.path.join(args.workdir, f'{variant}_{scale}x')
      _LOGGER.info('running %s at %dx', variant, scale)
      r = _run_measured(variant, files[scale], paths, out)
      docs = corpora[scale]['docs']
      r.update(variant=variant, scale=scale, docs=docs,
               docs_per_s=docs / r['seconds'],
               real_tokens_per_s=r['real_tokens'] / r['seconds'],
               padded_tokens_per_s=r['padded_tokens'] / r['seconds'],
               max_diff=(_max_diff(out, os.path.join(
                   args.workdir, f'classic_{scale}x'))
                         if variant != 'classic' else 0.0))
      rows.append(r)
      _LOGGER.info('  %.1f s, %.1f docs/s, peak RSS %.0f MB', r['seconds'],
                   r['docs_per_s'], r['peak_rss_mb'])
  base = {r['scale']: r for r in rows if r['variant'] == 'classic'}
  for r in rows:
    r['ratio'] = (r['docs_per_s'] / base[r['scale']]['docs_per_s']
                  if r['scale'] in base else None)
    if r['scale'] not in base:
      r['max_diff'] = None
  machine = f'{os.cpu_count()} CPU cores, Python {sys.version.split()[0]}'
  with open(os.path.join(args.results, 'results.json'), 'w',
            encoding='utf-8') as f:
    json.dump({'corpora': corpora, 'rows': rows, 'machine': machine}, f,
              indent=2)
  print(write_report(rows, corpora, args.results, machine))
  print(f'Plot: {plot(rows, args.results)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
