"""Train a masked Embedding -> LSTM -> Dense scorer and export it as a bundle.

Usage::

  python -m pipeline.train --train DATA.jsonl --out BUNDLE [options]

Input lines are ``{"id": ..., "text": ..., "scores": [8 numbers]}`` (JSONL),
or a CSV with the columns ``id,text,scores`` where ``scores`` is a JSON list.
Texts are segmented with MeCab and turned into ids with Keras ``Tokenizer``
rules (`model.text`); word vectors come from a gensim file or are trained with
gensim on the training texts.

Batches are bucketed by length and padded per batch: with ``mask_zero=True``
this is the same computation as padding everything to ``maxlen``, and far
cheaper on long-tailed corpora. (A model trained with ``--no_mask`` reads
padding as input and is trained the classic way, padded to ``maxlen``; it is
kept for comparison, see README.)
"""

import csv
import hashlib
import io
import json
import logging
import os
import sys
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from model import storage
from model.bundle import Bundle, write_bundle
from model.network import build_model, classic_layers
from model.text import (DEFAULT_MECAB_ARGS, Segmenter, TokenizerConfig,
                        Vocabulary, budget_batches, pad_batch, truncate)
from model.vectors import embedding_matrix, load_vectors, train_vectors

_LOGGER = logging.getLogger(__name__)


class TrainingDataError(ValueError):
  """A training record is unusable; the message names the file and line."""


def read_training_records(path: str) -> tuple[list[dict[str, Any]], str]:
  """Reads ``id``, ``text`` and ``scores`` records from JSONL or CSV.

  Returns:
    ``(records, sha256 of the file)``.

  Raises:
    TrainingDataError: naming the file, line and problem.
  """
  raw = storage.read_bytes(path)
  digest = hashlib.sha256(raw).hexdigest()
  try:
    text = raw.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    raise TrainingDataError(f'{path}: not valid UTF-8 ({e}).') from e
  if path.lower().endswith('.csv'):
    rows = ((i + 2, row) for i, row in enumerate(csv.DictReader(io.StringIO(text))))
  else:
    def json_rows():
      for n, line in enumerate(text.split('\n'), 1):
        if line.strip():
          try:
            yield n, json.loads(line)
          except json.JSONDecodeError as e:
            raise TrainingDataError(f'{path}:{n}: invalid JSON ({e}).') from e
    rows = json_rows()
  records, width = [], None
  for n, row in rows:
    where = f'{path}:{n}'
    if not isinstance(row, dict) or not isinstance(row.get('text'), str):
      raise TrainingDataError(f'{where}: expected a "text" string.')
    scores = row.get('scores')
    if isinstance(scores, str):
      try:
        scores = json.loads(scores)
      except json.JSONDecodeError as e:
        raise TrainingDataError(
            f'{where}: "scores" must be a JSON list ({e}).') from e
    if (not isinstance(scores, list) or not scores or
        not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                for x in scores)):
      raise TrainingDataError(f'{where}: "scores" must be a list of numbers; '
                              f'received {scores!r}.')
    if width is None:
      width = len(scores)
    elif len(scores) != width:
      raise TrainingDataError(
          f'{where}: {len(scores)} scores, but earlier records have {width}.')
    records.append({'id': row.get('id', where), 'text': row['text'],
                    'scores': [float(x) for x in scores]})
  if not records:
    raise TrainingDataError(f'{path}: no records.')
  return records, digest


def length_batches(lengths: Sequence[int], *, batch_size: int,
                   batch_tokens: int) -> list[np.ndarray]:
  """Groups indices of similar length into batches within a token budget.

  Indices are sorted by length; a batch closes at ``batch_size`` documents or
  when padding it to its longest member would exceed ``batch_tokens``.
  """
  order = np.argsort(np.asarray(lengths), kind='stable')
  return [np.asarray(b) for b in budget_batches(
      order, lengths, batch_tokens=batch_tokens, max_rows=batch_size)]


class _BatchStream:
  """Yields padded batches: per batch for masked models, else to maxlen."""
  def __init__(self, sequences, targets, batches, *, maxlen: Optional[int],
               padding: str, shuffle_seed: Optional[int]):
    self._sequences, self._targets = sequences, targets
    self.batches, self._maxlen, self._padding = batches, maxlen, padding
    self._rng = (np.random.default_rng(shuffle_seed)
                 if shuffle_seed is not None else None)

  def __call__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    order = np.arange(len(self.batches))
    if self._rng is not None:
      self._rng.shuffle(order)
    for b in order:
      idx = self.batches[b]
      x = pad_batch([self._sequences[i] for i in idx], length=self._maxlen,
                    padding=self._padding)
      yield x, self._targets[idx]


def _dataset(stream: _BatchStream, n_outputs: int):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.data.Dataset.from_generator(
      stream,
      output_signature=(tf.TensorSpec([None, None], tf.int32),
                        tf.TensorSpec([None, n_outputs], tf.float32)))


def train_bundle(train_path: str,
                 out: str,
                 *,
                 maxlen: int = 8000,
                 padding: str = 'pre',
                 truncating: str = 'pre',
                 mecab_args: str = DEFAULT_MECAB_ARGS,
                 tokenizer: TokenizerConfig = TokenizerConfig(),
                 vectors: Optional[str] = None,
                 vectors_format: str = 'auto',
                 allow_pickle: bool = False,
                 embedding_dim: int = 64,
                 w2v_epochs: int = 10,
                 units: int = 32,
                 output_names: Optional[Sequence[str]] = None,
                 trainable_embedding: bool = False,
                 dropout: float = 0.0,
                 mask_zero: bool = True,
                 epochs: int = 20,
                 batch_size: int = 32,
                 batch_tokens: int = 65536,
                 validation_split: float = 0.1,
                 patience: int = 3,
                 learning_rate: float = 1e-3,
                 seed: int = 0,
                 verbose: int = 2,
                 overwrite: bool = False,
                 callbacks: Sequence[Any] = ()) -> tuple[Bundle, dict[str, Any]]:
  """Trains a scorer on ``train_path`` and writes the bundle to ``out``.

  Args:
    callbacks: extra Keras callbacks for ``fit`` (the command's epoch lines).

  Returns:
    ``(bundle, report)`` where the report holds the vector coverage, epochs
    run, and the validation mean squared error per output.
  """
  import keras  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(seed)
  records, data_sha = read_training_records(train_path)
  segmenter = Segmenter(mecab_args)
  words = [tokenizer.words(segmenter.segment(r['text'])) for r in records]
  vocabulary = Vocabulary.fit(words, tokenizer)
  targets = np.asarray([r['scores'] for r in records], np.float32)
  n_outputs = targets.shape[1]
  sequences = [
      truncate(vocabulary.lookup(w)[0], maxlen, truncating) for w in words
  ]

  if vectors:
    kv = load_vectors(vectors, vectors_format, allow_pickle=allow_pickle)
  else:
    kv = train_vectors(words, embedding_dim, seed=seed, epochs=w2v_epochs)
  matrix, found = embedding_matrix(vocabulary, kv)

  rng = np.random.default_rng(seed)
  order = rng.permutation(len(records))
  n_valid = int(round(len(records) * validation_split))
  if len(records) - n_valid < 1:
    raise TrainingDataError(f'{train_path}: too few records ({len(records)}) '
                            f'for validation_split {validation_split}.')
  valid_idx, train_idx = order[:n_valid], order[n_valid:]

  model = build_model(
      classic_layers(
          vocabulary.size + 1, matrix.shape[1], units=units,
          n_outputs=n_outputs, mask_zero=mask_zero,
          trainable_embedding=trainable_embedding, dropout=dropout,
          embedding_matrix=matrix))
  model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss='mse')

  fixed = None if mask_zero else maxlen
  def stream(idx, shuffle_seed):
    lengths = [len(sequences[i]) for i in idx]
    batches = [idx[b] for b in length_batches(
        lengths, batch_size=batch_size, batch_tokens=batch_tokens)]
    return _BatchStream(sequences, targets, batches, maxlen=fixed,
                        padding=padding if fixed else 'post',
                        shuffle_seed=shuffle_seed)
  train_stream = stream(train_idx, seed)
  train_ds = _dataset(train_stream, n_outputs).repeat()
  valid_ds, valid_steps = None, None
  if n_valid:
    valid_stream = stream(valid_idx, None)
    valid_ds = _dataset(valid_stream, n_outputs).repeat()
    valid_steps = len(valid_stream.batches)
  callbacks = list(callbacks)
  if valid_ds is not None and patience > 0:
    callbacks.append(keras.callbacks.EarlyStopping(
        monitor='val_loss', patience=patience, restore_best_weights=True))
  history = model.fit(train_ds, validation_data=valid_ds, epochs=epochs,
                      steps_per_epoch=len(train_stream.batches),
                      validation_steps=valid_steps, shuffle=False,
                      callbacks=callbacks, verbose=verbose)

  names = list(output_names or [f'score_{i}' for i in range(n_outputs)])
  report: dict[str, Any] = {
      'documents': len(records),
      'vocabulary_size': vocabulary.size,
      'words_with_vectors': found,
      'epochs_run': len(history.history['loss']),
      'validation_documents': int(n_valid),
  }
  if n_valid:
    x = [sequences[i] for i in valid_idx]
    pred = model.predict(
        pad_batch(x, length=fixed, padding=padding if fixed else 'post'),
        verbose=0)
    mse = ((pred - targets[valid_idx]) ** 2).mean(axis=0)
    report['validation_mse'] = dict(zip(names, map(float, mse)))

  bundle = write_bundle(
      out, model=model, vocabulary=vocabulary, maxlen=maxlen, padding=padding,
      truncating=truncating, tokenizer=tokenizer, mecab_args=mecab_args,
      dictionary=segmenter.dictionary, output_names=names,
      provenance={
          'source': 'train',
          'training_data': train_path,
          'training_data_sha256': data_sha,
          'seed': seed,
          'report': report,
      },
      overwrite=overwrite)
  return bundle, report


if __name__ == '__main__':
  # The command is `pipeline.cli.train` (``python -m pipeline.train``,
  # ``ja-doc-train``). The command line typed before it moved still works:
  # handed over as a new process, since model/ imports nothing of pipeline/.
  os.execv(sys.executable,
           [sys.executable, '-m', 'pipeline.train', *sys.argv[1:]])
