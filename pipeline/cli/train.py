"""``python -m pipeline.train``: train a bundle on labelled Japanese documents.

Why this module exists: training itself (`model.train`) needs no command
line and no Beam; this is the command around it: strict options, the checks
of ``--train`` and ``--out`` before any work, one line per epoch and a
report at the end.
"""

import logging
import sys
import time
from typing import NoReturn, Optional, Sequence

from model.text import DEFAULT_MECAB_ARGS, KERAS_DEFAULT_FILTERS, TokenizerConfig
from model.train import TrainingDataError, train_bundle
from model.vectors import VECTOR_FORMATS
from pipeline.cli.arguments import (StrictArgumentParser, add_log_level_argument,
                                    non_negative_float, non_negative_int,
                                    positive_int, prog_name)
from pipeline.cli.preflight import (UsageError, check_bundle_output,
                                    check_input_file)
from runtime import console, process_exit

_LOGGER = logging.getLogger(__name__)


def build_parser() -> StrictArgumentParser:
  """The command line of ``pipeline.train``."""
  p = StrictArgumentParser(
      prog=prog_name('python -m pipeline.train'),
      description='Train a masked Embedding->LSTM->Dense scorer on Japanese '
      'documents and export it as a bundle.')
  p.add_argument('--train', required=True, metavar='DATA',
                 help='training data: JSONL or CSV with id, text, scores '
                 '(required)')
  p.add_argument('--out', required=True, metavar='BUNDLE',
                 help='bundle directory to write (required)')
  p.add_argument('--overwrite', action='store_true',
                 help='replace a bundle that exists at --out')
  p.add_argument('--maxlen', type=positive_int, default=8000,
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
  p.add_argument('--num_words', type=positive_int, default=None,
                 help='keep only the most frequent words; none: all')
  p.add_argument('--oov_token', default=None,
                 help='id 1 for unknown words; none: unknown words are dropped')
  p.add_argument('--vectors', default=None,
                 help='gensim KeyedVectors file; none: train word2vec on the '
                 'training texts')
  p.add_argument('--vectors_format', choices=VECTOR_FORMATS, default='auto',
                 help='format of --vectors')
  p.add_argument('--allow_pickle', action='store_true',
                 help='allow gensim\'s own (pickle) vector format')
  p.add_argument('--embedding_dim', type=positive_int, default=64,
                 help='word2vec size when no --vectors is given')
  p.add_argument('--w2v_epochs', type=positive_int, default=10,
                 help='word2vec training epochs')
  p.add_argument('--units', type=positive_int, default=32,
                 help='LSTM units')
  p.add_argument('--output_names', default=None,
                 help='comma-separated names of the scores; none: score_0, '
                 'score_1, ...')
  p.add_argument('--trainable_embedding', action='store_true',
                 help='fine-tune the word vectors')
  p.add_argument('--dropout', type=non_negative_float, default=0.0,
                 help='dropout before the output layer')
  p.add_argument('--no_mask', action='store_true',
                 help='train WITHOUT mask_zero, padded to maxlen (not advised)')
  p.add_argument('--epochs', type=positive_int, default=20,
                 help='most training epochs')
  p.add_argument('--batch_size', type=positive_int, default=32,
                 help='most documents in a training batch')
  p.add_argument('--batch_tokens', type=positive_int, default=65536,
                 help='token budget of a padded training batch')
  p.add_argument('--validation_split', type=non_negative_float,
                 default=0.1, help='share of documents held out')
  p.add_argument('--patience', type=non_negative_int, default=3,
                 help='epochs without improvement before stopping; 0: never '
                 'stop early')
  p.add_argument('--learning_rate', type=non_negative_float,
                 default=1e-3, help='Adam learning rate')
  p.add_argument('--seed', type=int, default=0, help='random seed')
  add_log_level_argument(p)
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
  """``python -m pipeline.train`` and ``ja-doc-train``; returns the exit status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  try:
    a = parser.parse_args(argv)
  except SystemExit as e:  # usage errors (2) and --help (0)
    return e.code if isinstance(e.code, int) else 2
  start = time.monotonic()
  with console.Console(a.log_level, command=__name__):
    try:
      check_input_file(a.train, '--train')
      check_bundle_output(a.out, '--out', overwrite=a.overwrite)
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
    except UsageError as e:
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
  interpreter's teardown (`runtime.process_exit`)."""
  process_exit.run_command(main)
