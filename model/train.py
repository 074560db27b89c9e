"""Train a masked Embedding -> LSTM -> Dense scorer and export it as a bundle.

Usage::

  python -m model.train --train DATA.jsonl --out BUNDLE [options]

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
import sys
import time
from typing import Any, Iterator, NoReturn, Optional, Sequence

import numpy as np

from model import console, process_exit, storage
from model.bundle import Bundle, write_bundle
from model.network import build_model, classic_layers
from model.text import (DEFAULT_MECAB_ARGS, KERAS_DEFAULT_FILTERS, Segmenter,
                        TokenizerConfig, Vocabulary, budget_batches, pad_batch,
                        truncate)
from model.vectors import VECTOR_FORMATS, embedding_matrix, load_vectors, train_vectors

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


def build_parser() -> console.StrictArgumentParser:
  """The command line of ``model.train``."""
  p = console.StrictArgumentParser(
      prog=console.prog_name('python -m model.train'),
      description='Train a masked Embedding->LSTM->Dense scorer on Japanese '
      'documents and export it as a bundle.')
  p.add_argument('--train', required=True, metavar='DATA',
                 help='training data: JSONL or CSV with id, text, scores '
                 '(required)')
  p.add_argument('--out', required=True, metavar='BUNDLE',
                 help='bundle directory to write (required)')
  p.add_argument('--overwrite', action='store_true',
                 help='replace a bundle that exists at --out')
  p.add_argument('--maxlen', type=console.positive_int, default=8000,
                 help='longest document in tokens; longer ones are truncated')
  p.add_argument('--padding', choices=('pre', 'post'), default='pre',
                 help='padding side, recorded for fixed-length use')
  p.add_argument('--truncating', choices=('pre', 'post'), default='pre',
                 help='side cut from documents longer than --maxlen')
  p.add_argument('--mecab_args', default=DEFAULT_MECAB_ARGS,
                 help='MeCab arguments; add -d DICDIR for another dictionary')
  p.add_argument('--filters', default=KERAS_DEFAULT_FILTERS,
                 help='characters the Keras Tokenizer removes')
  p.add_argument('--no_lower', action='store_true',
                 help='keep case (the Tokenizer lowercases by default)')
  p.add_argument('--split', default=' ', help='Tokenizer word separator')
  p.add_argument('--char_level', action='store_true',
                 help='Tokenizer on characters instead of words')
  p.add_argument('--num_words', type=console.positive_int, default=None,
                 help='keep only the most frequent words (default: all)')
  p.add_argument('--oov_token', default=None,
                 help='id 1 for unknown words (default: unknown words dropped)')
  p.add_argument('--vectors', default=None,
                 help='gensim KeyedVectors file (default: train word2vec on '
                 'the training texts)')
  p.add_argument('--vectors_format', choices=VECTOR_FORMATS, default='auto',
                 help='format of --vectors')
  p.add_argument('--allow_pickle', action='store_true',
                 help='allow gensim\'s own (pickle) vector format')
  p.add_argument('--embedding_dim', type=console.positive_int, default=64,
                 help='word2vec size when no --vectors is given')
  p.add_argument('--w2v_epochs', type=console.positive_int, default=10,
                 help='word2vec training epochs')
  p.add_argument('--units', type=console.positive_int, default=32,
                 help='LSTM units')
  p.add_argument('--output_names', default=None,
                 help='comma-separated names of the scores (default: '
                 'score_0, score_1, ...)')
  p.add_argument('--trainable_embedding', action='store_true',
                 help='fine-tune the word vectors')
  p.add_argument('--dropout', type=console.non_negative_float, default=0.0,
                 help='dropout before the output layer')
  p.add_argument('--no_mask', action='store_true',
                 help='train WITHOUT mask_zero, padded to maxlen (not advised)')
  p.add_argument('--epochs', type=console.positive_int, default=20,
                 help='most training epochs')
  p.add_argument('--batch_size', type=console.positive_int, default=32,
                 help='most documents in a training batch')
  p.add_argument('--batch_tokens', type=console.positive_int, default=65536,
                 help='token budget of a padded training batch')
  p.add_argument('--validation_split', type=console.non_negative_float,
                 default=0.1, help='share of documents held out')
  p.add_argument('--patience', type=console.non_negative_int, default=3,
                 help='epochs without improvement before stopping; 0: never '
                 'stop early')
  p.add_argument('--learning_rate', type=console.non_negative_float,
                 default=1e-3, help='Adam learning rate')
  p.add_argument('--seed', type=int, default=0, help='random seed')
  console.add_log_level_argument(p)
  return p


def _epoch_lines(epochs: int):
  """A Keras callback logging one line per epoch."""
  import keras  # pylint: disable=import-outside-toplevel

  class EpochLines(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self._start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
      metrics = ', '.join(f'{k} {v:.5f}' for k, v in (logs or {}).items()
                          if isinstance(v, (int, float)))
      _LOGGER.info('Epoch %d/%d: %s (%.1f s)', epoch + 1, epochs, metrics,
                   time.monotonic() - self._start)
  return EpochLines()


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``python -m model.train`` and ``ja-doc-train``; returns the exit status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  try:
    a = parser.parse_args(argv)
  except SystemExit as e:  # usage errors (2) and --help (0)
    return e.code if isinstance(e.code, int) else 2
  start = time.monotonic()
  with console.Console(a.log_level, command=__name__):
    try:
      console.check_input_file(a.train, '--train')
      console.check_bundle_output(a.out, '--out', overwrite=a.overwrite)
      _LOGGER.info('Training on %s into %s', a.train, a.out)
      tokenizer = TokenizerConfig(
          filters=a.filters, lower=not a.no_lower, split=a.split,
          char_level=a.char_level, num_words=a.num_words,
          oov_token=a.oov_token)
      bundle, report = train_bundle(
          a.train, a.out, maxlen=a.maxlen, padding=a.padding,
          truncating=a.truncating, mecab_args=a.mecab_args,
          tokenizer=tokenizer, vectors=a.vectors,
          vectors_format=a.vectors_format, allow_pickle=a.allow_pickle,
          embedding_dim=a.embedding_dim, w2v_epochs=a.w2v_epochs,
          units=a.units,
          output_names=a.output_names.split(',') if a.output_names else None,
          trainable_embedding=a.trainable_embedding, dropout=a.dropout,
          mask_zero=not a.no_mask, epochs=a.epochs, batch_size=a.batch_size,
          batch_tokens=a.batch_tokens, validation_split=a.validation_split,
          patience=a.patience, learning_rate=a.learning_rate, seed=a.seed,
          overwrite=a.overwrite, verbose=0,
          callbacks=[_epoch_lines(a.epochs)])
    except console.UsageError as e:
      return console.fail(str(e))
    except TrainingDataError as e:
      return console.fail(f'--train: {e}')
    except FileExistsError as e:
      return console.fail(f'--out: {e} (--overwrite replaces it)')
    except ValueError as e:
      return console.fail(str(e))
  print(f'Trained {report["epochs_run"]} epochs on {report["documents"]} '
        f'documents in {time.monotonic() - start:.1f} s.')
  print(f'Vocabulary: {report["vocabulary_size"]} words, '
        f'{report["words_with_vectors"]} with a word vector.')
  if 'validation_mse' in report:
    print(f'Validation MSE per output ({report["validation_documents"]} '
          f'documents):')
    for name, mse in report['validation_mse'].items():
      print(f'  {name:>12}  {mse:.5f}')
  print(f'Wrote bundle {bundle.path}')
  return 0


def cli() -> NoReturn:
  """The ``ja-doc-train`` console script: `main`, then an exit that skips the
  interpreter's teardown (`model.process_exit`)."""
  process_exit.run_command(main)


if __name__ == '__main__':
  cli()
