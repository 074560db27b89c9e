"""The benchmark's in-house variants, each run as its own process.

``python -m bench.variants VARIANT --corpus C --paths JSON --out PREFIX``
runs one of:

* ``classic``: the classic script: MeCab ``-Owakati``, Keras
  ``Tokenizer.texts_to_sequences``, ``pad_sequences(maxlen=8000)``,
  ``model.predict`` (tf-keras). It imports neither Beam nor this project's
  scorer, so its process's wall time is the classic script's.
* ``beam_stock``: Beam ``RunInference`` on rows padded to maxlen with stock
  batching (`bench.stock`).
* ``floor_mecab``: MeCab alone; ``floor_model``: the model alone as the
  scorer runs it (`model.lstm_scorer` where it applies, TensorFlow's default
  threads) on length-sorted, per-batch padded input. Floors time only their
  own work.

Each writes ``PREFIX.json`` (``seconds``: its own timer, after its imports;
``real_tokens``, ``padded_tokens``) and, where it scores, ``PREFIX.npy``
(scores in corpus order) and ``PREFIX.ids``. The scorer itself is run as
users run it, ``python -m pipeline.score`` (see `bench.run`).
"""

import argparse
import json
import logging
import os
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np

from bench.corpus import MAXLEN

_LOGGER = logging.getLogger(__name__)

#: Variants this module runs, in the order they are reported.
VARIANTS = ('classic', 'beam_stock', 'floor_mecab', 'floor_model')


def make_classic_model(corpus: str, workdir: str, seed: int) -> dict[str, str]:
  """Builds the classic model (tf-keras) and imports it as a bundle.

  Args:
    corpus: the JSONL documents the tokenizer is fitted on.
    workdir: where the model, tokenizer and bundle are written.
    seed: the seed of the word vectors and the weights.

  Returns:
    Paths: ``model`` (.h5), ``tokenizer`` (.json) and ``bundle``.
  """
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


def read_texts(corpus: str) -> tuple[list[str], list[str]]:
  """The ids and texts of a JSONL corpus, in file order."""
  ids, texts = [], []
  with open(corpus, encoding='utf-8') as f:
    for line in f:
      record = json.loads(line)
      ids.append(record['id'])
      texts.append(record['text'])
  return ids, texts


def save_scores(out: str, ids: list[str], scores: np.ndarray) -> None:
  """Writes ``out.npy`` (scores, one row per id) and ``out.ids``."""
  np.save(out + '.npy', scores)
  with open(out + '.ids', 'w', encoding='utf-8') as f:
    f.write('\n'.join(ids))


def run_classic(corpus: str, paths: dict[str, str], out: str) -> dict:
  """The classic script, 256 documents at a time."""
  import tf_keras  # pylint: disable=import-outside-toplevel
  from tf_keras.preprocessing.sequence import pad_sequences  # pylint: disable=import-outside-toplevel
  from tf_keras.preprocessing.text import tokenizer_from_json  # pylint: disable=import-outside-toplevel
  import MeCab  # pylint: disable=import-outside-toplevel
  ids, texts = read_texts(corpus)
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
  save_scores(out, ids, np.concatenate(scores))
  return {'seconds': elapsed, 'real_tokens': real,
          'padded_tokens': len(texts) * MAXLEN}


def run_beam_stock(corpus: str, paths: dict[str, str], out: str) -> dict:
  """Stock ``RunInference`` on rows padded to maxlen (see `bench.stock`)."""
  from bench import stock  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  records = stock.score(corpus, paths['bundle'], out + '.d')
  elapsed = time.perf_counter() - start
  ids, _ = read_texts(corpus)
  save_scores(out, ids, np.asarray([records[i][0] for i in ids], np.float32))
  return {'seconds': elapsed, 'real_tokens': sum(records[i][1] for i in ids),
          'padded_tokens': len(ids) * MAXLEN}


def run_floor_mecab(corpus: str, paths: dict[str, str], out: str) -> dict:
  """MeCab alone over every text."""
  del paths, out
  from model.text import Segmenter  # pylint: disable=import-outside-toplevel
  _, texts = read_texts(corpus)
  start = time.perf_counter()
  segmenter = Segmenter()
  n = sum(len(segmenter.segment(t).split()) for t in texts)
  return {'seconds': time.perf_counter() - start, 'real_tokens': n,
          'padded_tokens': 0}


def run_floor_model(corpus: str, paths: dict[str, str], out: str) -> dict:
  """The model alone as the scorer runs it, on sorted, padded ids made first."""
  from model.bundle import load_bundle  # pylint: disable=import-outside-toplevel
  from model.text import Segmenter, budget_batches, truncate  # pylint: disable=import-outside-toplevel
  from transforms.handler import DEFAULT_BATCH_TOKENS, chunk_limits  # pylint: disable=import-outside-toplevel
  bundle = load_bundle(paths['bundle'])
  segmenter, rules = Segmenter(), bundle.tokenizer
  ids, texts = read_texts(corpus)
  seqs = [truncate(bundle.vocabulary.lookup(rules.words(segmenter.segment(t)))[0],
                   bundle.maxlen, bundle.truncating) for t in texts]
  order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
  start = time.perf_counter()
  predict = bundle.load_signature()
  scores = np.zeros((len(seqs), len(bundle.output_names)), np.float32)
  padded = 0
  for chunk in budget_batches(order, [len(s) for s in seqs],
                              **chunk_limits(predict, DEFAULT_BATCH_TOKENS)):
    x = bundle.pad([seqs[i] for i in chunk])
    scores[chunk] = predict(x)
    padded += x.size
  elapsed = time.perf_counter() - start
  save_scores(out, ids, scores)
  return {'seconds': elapsed, 'real_tokens': sum(len(s) for s in seqs),
          'padded_tokens': padded}


_RUNNERS: dict[str, Callable[[str, dict[str, str], str], dict]] = {
    'classic': run_classic,
    'beam_stock': run_beam_stock,
    'floor_mecab': run_floor_mecab,
    'floor_model': run_floor_model,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs one variant in this process (the benchmark's child)."""
  parser = argparse.ArgumentParser(prog='python -m bench.variants')
  parser.add_argument('variant', choices=VARIANTS)
  parser.add_argument('--corpus', required=True)
  parser.add_argument('--paths', required=True,
                      help='JSON: model, tokenizer, bundle')
  parser.add_argument('--out', required=True, help='prefix of the outputs')
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING)
  result = _RUNNERS[args.variant](args.corpus, json.loads(args.paths), args.out)
  with open(args.out + '.json', 'w', encoding='utf-8') as f:
    json.dump(result, f)
  return 0


if __name__ == '__main__':
  sys.exit(main())
