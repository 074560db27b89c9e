"""Import a model trained the classic Keras way as a bundle.

Usage::

  python -m pipeline.import_keras --model M.keras|M.h5 --tokenizer tokenizer.json \\
      --maxlen 8000 [--padding pre|post] [--truncating pre|post] --out BUNDLE

``tokenizer.json`` is what Keras ``Tokenizer.to_json()`` writes. The model is
read without deserializing Python objects (see `model.network`), rebuilt with
a variable-length input, and exported. Before anything is written, a probe
batch of short, long and over-long sequences is scored both ways: by the
rebuilt network at the original fixed ``maxlen`` with Keras padding, and by the
exported SavedModel the way the scorer feeds it. The import is refused if they
differ by more than ``--tolerance``.
"""

import hashlib
import json
import logging
import os
import sys
from typing import Optional, Sequence

import numpy as np

from model import storage
from model.bundle import Bundle, write_bundle
from model.network import ModelFileError, build_model, read_keras_file, summarize
from model.text import (DEFAULT_MECAB_ARGS, KERAS_DEFAULT_FILTERS, Segmenter,
                        TokenizerConfig, Vocabulary, pad_batch, truncate)

_LOGGER = logging.getLogger(__name__)

UNMASKED_WARNING = (
    'The Embedding of {model} has mask_zero=False: the model reads padding '
    'as input. This is the kind of model that can give every document the '
    'same scores. The bundle is marked fixed-length: scoring pads every '
    'document to exactly maxlen={maxlen}, as in training. Retrain with '
    'mask_zero=True (python -m pipeline.train) to fix it.')


class ImportRefused(ValueError):
  """The imported bundle would not reproduce the original model."""


def read_tokenizer_json(text: str, where: str
                        ) -> tuple[TokenizerConfig, dict[str, int]]:
  """Parses Keras ``Tokenizer.to_json()`` output (plain JSON, no pickle).

  Returns:
    The tokenizer settings and its ``word_index``.
  """
  try:
    data = json.loads(text)
    config = data['config'] if 'config' in data else data
    word_index = config['word_index']
    if isinstance(word_index, str):
      word_index = json.loads(word_index)
    settings = TokenizerConfig(
        filters=config.get('filters', KERAS_DEFAULT_FILTERS),
        lower=bool(config.get('lower', True)),
        split=config.get('split', ' '),
        char_level=bool(config.get('char_level', False)),
        num_words=config.get('num_words'),
        oov_token=config.get('oov_token'))
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise ValueError(
        f'{where}: expected the JSON of Keras Tokenizer.to_json() ({e}).'
    ) from e
  if not isinstance(word_index, dict):
    raise ValueError(f'{where}: word_index must be a JSON object.')
  return settings, word_index


def probe_sequences(vocabulary_size: int, maxlen: int,
                    seed: int = 0) -> list[np.ndarray]:
  """Id sequences from one token to beyond ``maxlen``, for the import check."""
  rng = np.random.default_rng(seed)
  lengths = sorted({1, 2, 3, 7, max(1, maxlen // 3), maxlen - 1, maxlen,
                    maxlen + 5} - {0})
  high = max(vocabulary_size, 1) + 1
  return [rng.integers(1, high, size=n).astype(np.int32) for n in lengths]


def make_probe_check(model, maxlen: int, padding: str, truncating: str,
                     tolerance: float):
  """Returns ``check(bundle, predict)``: compares the bundle to ``model``.

  The reference is the Keras model on Keras-style input: every sequence
  truncated and padded to ``maxlen``. The bundle is fed the way the scorer
  feeds it: truncated, then padded by `Bundle.pad` in one batch.
  """
  def check(bundle: Bundle, predict) -> None:
    sequences = [truncate(s, maxlen, truncating)
                 for s in probe_sequences(bundle.vocabulary.size, maxlen)]
    reference = model.predict(
        pad_batch(sequences, length=maxlen, padding=padding), verbose=0)
    got = predict(bundle.pad(sequences))
    diff = float(np.max(np.abs(reference - got)))
    _LOGGER.info('Import probe: %d sequences, largest difference %.3g',
                 len(sequences), diff)
    if not diff <= tolerance:
      raise ImportRefused(
          f'the exported model differs from the original by {diff:.3g} '
          f'(more than {tolerance:g}) on the probe batch; nothing written.')
  return check


def _sha256_file(path: str) -> str:
  return hashlib.sha256(storage.read_bytes(path)).hexdigest()


def import_keras_model(model_path: str,
                       tokenizer_path: str,
                       out: str,
                       *,
                       maxlen: int,
                       padding: str = 'pre',
                       truncating: str = 'pre',
                       mecab_args: str = DEFAULT_MECAB_ARGS,
                       output_names: Optional[Sequence[str]] = None,
                       tolerance: float = 1e-5,
                       overwrite: bool = False) -> Bundle:
  """Imports a classic Keras scorer and its tokenizer as a bundle.

  Args:
    model_path: a ``.keras`` or ``.h5`` file (local, or any Beam filesystem).
    tokenizer_path: the tokenizer's ``to_json()`` output.
    out: where to write the bundle.
    maxlen: the length the model was trained with (``pad_sequences``).
    padding: ``pad_sequences``' padding side in training.
    truncating: ``pad_sequences``' truncating side in training.
    mecab_args: the MeCab arguments used in training (wakati output).
    output_names: names for the scores (``score_0``.. by default).
    tolerance: largest accepted probe difference.
    overwrite: replace an existing bundle at ``out``.

  Raises:
    ModelFileError: the model file is not an importable scorer.
    ImportRefused: the bundle would not reproduce the model.
    ValueError: inconsistent arguments (maxlen, vocabulary size...).
  """
  with storage.local_copy(model_path) as local_model:
    layers, fixed = read_keras_file(local_model)
  if fixed is not None and fixed != maxlen:
    raise ModelFileError(
        f'{model_path}: the model takes sequences of length {fixed}, but '
        f'--maxlen is {maxlen}; pass the length it was trained with.')
  tokenizer, word_index = read_tokenizer_json(
      storage.read_bytes(tokenizer_path).decode('utf-8'), tokenizer_path)
  vocabulary = Vocabulary.from_word_index(word_index, tokenizer)
  model = build_model(layers)
  summary = summarize(model)
  if vocabulary.size + 1 > summary.embedding_rows:
    raise ValueError(
        f'{tokenizer_path}: the tokenizer yields ids up to {vocabulary.size}, '
        f'but the Embedding of {model_path} has only {summary.embedding_rows} '
        f'rows; set num_words to at most {summary.embedding_rows}.')
  if not summary.mask_zero:
    _LOGGER.warning(UNMASKED_WARNING.format(model=model_path, maxlen=maxlen))
  segmenter = Segmenter(mecab_args)
  return write_bundle(
      out,
      model=model,
      vocabulary=vocabulary,
      maxlen=maxlen,
      padding=padding,
      truncating=truncating,
      tokenizer=tokenizer,
      mecab_args=mecab_args,
      dictionary=segmenter.dictionary,
      output_names=output_names,
      provenance={
          'source': 'import',
          'source_model': model_path,
          'source_model_sha256': _sha256_file(model_path),
          'source_tokenizer_sha256': _sha256_file(tokenizer_path),
      },
      overwrite=overwrite,
      check=make_probe_check(model, maxlen, padding, truncating, tolerance))


if __name__ == '__main__':
  # The command is `pipeline.cli.import_model` (``python -m
  # pipeline.import_keras``, ``ja-doc-import``). The command line typed before
  # it moved still works: handed over as a new process, since model/ imports
  # nothing of pipeline/.
  os.execv(sys.executable,
           [sys.executable, '-m', 'pipeline.import_keras', *sys.argv[1:]])
