"""Shared, expensive fixtures: built once per test session.

* ``trained_bundle``: a small bundle trained on ``examples/corpus.jsonl``.
* ``second_bundle``: another one, trained on half of it (model refresh).
* ``classic``: a model built the classic way with the real tf-keras
  (``Tokenizer`` on MeCab wakati output, ``pad_sequences``, a fixed-length
  ``Embedding(mask_zero=True) -> LSTM -> Dense``), saved as .keras and .h5,
  with its tokenizer JSON, plus an unmasked twin.
* ``imported_bundle``: the classic model imported as a bundle.
"""

import json
import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / 'examples' / 'corpus.jsonl'
CLASSIC_MAXLEN = 120


@pytest.fixture(scope='session')
def corpus():
  with open(CORPUS, encoding='utf-8') as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope='session')
def wakati():
  from model.text import Segmenter
  segmenter = Segmenter()
  return segmenter.segment


@pytest.fixture(scope='session')
def trained_bundle(tmp_path_factory):
  from model.train import train_bundle
  out = str(tmp_path_factory.mktemp('trained') / 'bundle')
  bundle, report = train_bundle(
      str(CORPUS), out, maxlen=300, epochs=6, verbose=0, seed=1)
  bundle.report = report
  return bundle


@pytest.fixture(scope='session')
def second_bundle(tmp_path_factory, corpus):
  """A bundle trained differently from ``trained_bundle``, as cheaply: on
  every other document (so another vocabulary), with another seed and a
  shorter maxlen. Same outputs and MeCab arguments: it can replace it."""
  from model.train import train_bundle
  root = tmp_path_factory.mktemp('second')
  half = root / 'half.jsonl'
  half.write_text(''.join(json.dumps(d, ensure_ascii=False) + '\n'
                          for d in corpus[::2]), encoding='utf-8')
  bundle, report = train_bundle(
      str(half), str(root / 'bundle'), maxlen=120, epochs=6, verbose=0,
      seed=2)
  bundle.report = report
  return bundle


class Classic:
  """A classic Keras scorer and the functions that feed it."""
  def __init__(self, root, corpus, wakati, *, mask_zero, oov_token=None,
               num_words=None):
    import tf_keras
    from tf_keras.preprocessing.text import Tokenizer
    self.maxlen = CLASSIC_MAXLEN
    self.wakati = wakati
    self.tokenizer = Tokenizer(num_words=num_words, oov_token=oov_token)
    self.tokenizer.fit_on_texts([wakati(d['text']) for d in corpus])
    rows = num_words or len(self.tokenizer.word_index) + 1
    tf_keras.utils.set_random_seed(3)
    self.model = tf_keras.Sequential([
        tf_keras.layers.Embedding(
            rows, 16, input_length=self.maxlen, mask_zero=mask_zero,
            trainable=False),
        tf_keras.layers.LSTM(8),
        tf_keras.layers.Dense(8),
    ])
    self.model.compile(optimizer='adam', loss='mse')
    root.mkdir(parents=True, exist_ok=True)
    self.keras_path = str(root / 'classic.keras')
    self.h5_path = str(root / 'classic.h5')
    self.tokenizer_path = str(root / 'tokenizer.json')
    self.model.save(self.keras_path)
    self.model.save(self.h5_path)
    with open(self.tokenizer_path, 'w', encoding='utf-8') as f:
      f.write(self.tokenizer.to_json())

  def predict(self, texts):
    """``model.predict(pad_sequences(texts_to_sequences(wakati(text))))``."""
    from tf_keras.preprocessing.sequence import pad_sequences
    seqs = self.tokenizer.texts_to_sequences([self.wakati(t) for t in texts])
    return self.model.predict(pad_sequences(seqs, maxlen=self.maxlen),
                              verbose=0)


@pytest.fixture(scope='session')
def classic(tmp_path_factory, corpus, wakati):
  return Classic(tmp_path_factory.mktemp('classic'), corpus, wakati,
                 mask_zero=True)


@pytest.fixture(scope='session')
def classic_unmasked(tmp_path_factory, corpus, wakati):
  return Classic(tmp_path_factory.mktemp('classic_unmasked'), corpus, wakati,
                 mask_zero=False)


@pytest.fixture(scope='session')
def imported_bundle(tmp_path_factory, classic):
  from model.import_keras import import_keras_model
  out = str(tmp_path_factory.mktemp('imported') / 'bundle')
  return import_keras_model(classic.keras_path, classic.tokenizer_path, out,
                            maxlen=classic.maxlen)


def mixed_length_texts(corpus):
  """Documents from a few tokens to beyond the classic maxlen."""
  texts = ['猫', '今日は晴れ。', 'Wi-Fiのルーターを再起動した。']
  texts += [d['text'] for d in corpus[:12]]
  texts += [''.join(d['text'] for d in corpus[:15])]  # far beyond maxlen
  return texts


@pytest.fixture
def rng():
  return np.random.default_rng(0)
