"""Word vectors for the Embedding: read with gensim, or trained with gensim.

The embedding matrix has row 0 all zeros (padding) and row ``i`` the vector
of the word with id ``i``. Words without a vector keep a zero row; how many
had one is reported, because a low coverage means the vectors were trained
on a different segmentation.
"""

import logging
from typing import Optional, Sequence

import numpy as np

from model import storage
from model.text import Vocabulary

_LOGGER = logging.getLogger(__name__)

VECTOR_FORMATS = ('auto', 'word2vec-text', 'word2vec-binary', 'gensim')


def load_vectors(path: str, fmt: str = 'auto', *, allow_pickle: bool = False):
  """Loads gensim ``KeyedVectors``.

  Args:
    path: the vectors file (local, or any Beam filesystem).
    fmt: ``word2vec-text``, ``word2vec-binary``, ``gensim`` (gensim's own
      ``KeyedVectors.save`` format) or ``auto`` (by file name: ``.bin`` is
      binary, ``.kv``/``.model`` gensim's own, anything else text).
    allow_pickle: gensim's own format is a pickle, which can run code when
      loaded; it is read only when this is True.

  Raises:
    ValueError: an unknown format, or a pickle without ``allow_pickle``.
  """
  from gensim.models import KeyedVectors  # pylint: disable=import-outside-toplevel
  if fmt not in VECTOR_FORMATS:
    raise ValueError(f'vectors format must be one of {VECTOR_FORMATS}; '
                     f'received {fmt!r}.')
  if fmt == 'auto':
    lower = path.lower()
    if lower.endswith('.bin'):
      fmt = 'word2vec-binary'
    elif lower.endswith(('.kv', '.model')):
      fmt = 'gensim'
    else:
      fmt = 'word2vec-text'
  with storage.local_copy(path) as local:
    if fmt == 'gensim':
      if not allow_pickle:
        raise ValueError(
            f'{path}: gensim\'s own format is a pickle, which can run code '
            f'when loaded. Convert it with KeyedVectors.save_word2vec_format, '
            f'or pass --allow_pickle if you trust the file.')
      kv = KeyedVectors.load(local)
      return getattr(kv, 'wv', kv)
    return KeyedVectors.load_word2vec_format(
        local, binary=(fmt == 'word2vec-binary'))


def train_vectors(word_sequences: Sequence[Sequence[str]], dim: int, *,
                  seed: int = 0, epochs: int = 10, window: int = 5):
  """Trains word2vec (skip-gram) on the training texts with gensim.

  One worker thread keeps the result reproducible for a given seed.
  """
  from gensim.models import Word2Vec  # pylint: disable=import-outside-toplevel
  model = Word2Vec(
      sentences=[list(s) for s in word_sequences if s],
      vector_size=dim,
      window=window,
      min_count=1,
      sg=1,
      workers=1,
      seed=seed,
      epochs=epochs)
  return model.wv


def embedding_matrix(vocabulary: Vocabulary, vectors,
                     rows: Optional[int] = None) -> tuple[np.ndarray, int]:
  """Builds the embedding matrix for ``vocabulary`` from ``vectors``.

  Returns:
    ``(matrix [rows, dim] float32 with row 0 zero, words that had a vector)``.
  """
  rows = rows or vocabulary.size + 1
  matrix = np.zeros((rows, vectors.vector_size), np.float32)
  found = 0
  for i, word in enumerate(vocabulary.tokens, 1):
    if word is not None and word in vectors.key_to_index:
      matrix[i] = vectors[word]
      found += 1
  _LOGGER.info('Word vectors: %d of %d vocabulary words had a vector (%.1f%%)',
               found, vocabulary.size, 100.0 * found / max(vocabulary.size, 1))
  return matrix, found
