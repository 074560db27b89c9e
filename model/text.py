"""Text rules shared by training and scoring, so that token ids cannot drift.

A document becomes ids in two steps, exactly as in the classic Keras recipe:
MeCab ``-Owakati`` turns the text into space-separated words, then the Keras
``Tokenizer`` rules (filters, lower-casing, split, ``num_words`` cut-off and the
optional OOV token) turn words into ids. This module re-implements the
tokenizer rules without importing Keras, so scoring workers need neither
tf-keras nor the tokenizer's pickled state; the tests check it against the
real ``tf_keras`` ``Tokenizer``.
"""

import collections
import dataclasses
import functools
import importlib.metadata
import os
import re
from typing import Any, Iterable, Optional, Sequence

import numpy as np

#: Keras ``Tokenizer``'s default ``filters``.
KERAS_DEFAULT_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
DEFAULT_MECAB_ARGS = '-Owakati'
PADDING_SIDES = ('pre', 'post')
# Size of the pieces a text MeCab refuses whole is cut into.
_PIECE_CHARS = 100_000


class TextError(ValueError):
  """A document's text cannot be turned into token ids.

  Attributes:
    stage: the pipeline stage that refused the text (``read``, ``segment``,
      ``lookup``...).
    reason: a sentence a person can act on.
  """
  def __init__(self, stage: str, reason: str):
    super().__init__(reason)
    self.stage = stage
    self.reason = reason

  def __repr__(self) -> str:
    # Beam's exception handling records repr(exception); keep it readable.
    return self.reason


def dictionary_identity(dicdir: str) -> dict[str, str]:
  """Names the MeCab dictionary in ``dicdir`` (a package name and version).

  Args:
    dicdir: the dictionary directory MeCab loaded (holding ``sys.dic``).

  Returns:
    ``{'name': ..., 'version': ...}``: the Python package that ships the
    dictionary (``unidic-lite``, ``unidic``, ``ipadic``) with its version, or
    the directory's name and the content of its ``version`` file otherwise.
  """
  real = os.path.realpath(dicdir)
  for package, module in (('unidic-lite', 'unidic_lite'), ('unidic', 'unidic'),
                          ('ipadic', 'ipadic')):
    try:
      mod = __import__(module)
    except ImportError:
      continue
    if os.path.realpath(getattr(mod, 'DICDIR', '')) == real:
      return {'name': package, 'version': importlib.metadata.version(package)}
  version = ''
  version_file = os.path.join(dicdir, 'version')
  if os.path.exists(version_file):
    with open(version_file, encoding='utf-8') as f:
      version = f.read().strip()
  return {'name': os.path.basename(real), 'version': version}


class Segmenter:
  """MeCab ``-Owakati`` word segmentation.

  A ``MeCab.Tagger`` is not thread-safe and cannot be pickled: create one
  Segmenter per thread, inside ``DoFn.setup()`` or lazily per thread.

  Args:
    mecab_args: arguments for ``MeCab.Tagger``; they must select wakati
      output. mecab-python3 adds unidic-lite's ``-d``/``-r`` when installed.
  """
  def __init__(self, mecab_args: str = DEFAULT_MECAB_ARGS):
    if '-Owakati' not in mecab_args.split() and (
        '--output-format-type=wakati' not in mecab_args.split()):
      raise ValueError(
          f'MeCab arguments must select wakati output (-Owakati); '
          f'received {mecab_args!r}.')
    import MeCab  # pylint: disable=import-outside-toplevel
    self.mecab_args = mecab_args
    self._tagger = MeCab.Tagger(mecab_args)

  @property
  def dictionary(self) -> dict[str, str]:
    """The loaded dictionary's name and version (see `dictionary_identity`)."""
    info = self._tagger.dictionary_info()
    return dictionary_identity(os.path.dirname(info.filename))

  def segment(self, text: Any) -> str:
    """Returns MeCab's wakati output for ``text``, exactly as MeCab prints it.

    Raises:
      TextError: ``text`` is not a string, or holds a NUL character (MeCab's
        C interface would silently stop reading at it).
    """
    if not isinstance(text, str):
      raise TextError(
          'segment',
          f'text must be a string; received {type(text).__name__}.')
    nul = text.find('\x00')
    if nul >= 0:
      raise TextError(
          'segment',
          f'text contains a NUL character at offset {nul}; MeCab would '
          f'silently stop reading there. Remove or replace NUL characters.')
    wakati = self._tagger.parse(text)
    if wakati is None:
      wakati = self._segment_in_pieces(text)
    return wakati

  def _segment_in_pieces(self, text: str) -> str:
    """Segments a text MeCab refuses whole ("too long sentence").

    The classic pipeline cannot score such a text at all; here it is cut at
    line or sentence ends into pieces MeCab accepts, and the pieces' output
    is joined in MeCab's own format (words, each followed by a space, then a
    newline). Only words next to a cut can differ from a whole parse.
    """
    words = []
    start = 0
    while start < len(text):
      end = min(start + _PIECE_CHARS, len(text))
      if end < len(text):
        cut = max(text.rfind('\n', start, end), text.rfind('。', start, end))
        if cut > start:
          end = cut + 1
      piece = self._tagger.parse(text[start:end])
      if piece is None:
        raise TextError(
            'segment',
            f'MeCab refused the text near character {start} '
            f'({self._tagger.what() if hasattr(self._tagger, "what") else ""}'
            f'); split the document into smaller ones.')
      words.append(piece.rstrip('\n'))
      start = end
    return ''.join(words) + '\n'


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
  """The Keras ``Tokenizer`` settings that decide ids.

  Attributes mirror ``Tokenizer.__init__``: ``filters`` are replaced by
  ``split`` before splitting, ``lower`` lower-cases, ``char_level`` makes
  every character a token (no filtering, as in Keras), ``num_words`` keeps
  ids below it, ``oov_token`` (if set) stands for unknown words.
  """
  filters: str = KERAS_DEFAULT_FILTERS
  lower: bool = True
  split: str = ' '
  char_level: bool = False
  num_words: Optional[int] = None
  oov_token: Optional[str] = None

  def __post_init__(self):
    if not self.split:
      raise ValueError('TokenizerConfig.split must be a non-empty string.')
    if self.num_words is not None and self.num_words < 0:
      raise ValueError(
          f'num_words must be None or >= 0; received {self.num_words}.')

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'TokenizerConfig':
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields
    if unknown:
      raise ValueError(f'unknown tokenizer settings: {sorted(unknown)}')
    return cls(**d)

  def words(self, wakati: str) -> list[str]:
    """Splits segmented text into words with Keras ``Tokenizer`` rules."""
    text = wakati.lower() if self.lower else wakati
    if self.char_level:
      return list(text)
    if self.filters:
      # Same result as Keras' str.translate, an order of magnitude faster on
      # Japanese text, where filter characters are rare.
      text = _filter_regex(self.filters).sub(
          self.split.replace('\\', '\\\\'), text)
    return [w for w in text.split(self.split) if w]


@functools.lru_cache(maxsize=64)
def _filter_regex(filters: str) -> 're.Pattern[str]':
  return re.compile('[' + re.escape(filters) + ']')


def _escape(token: str) -> str:
  return token.replace('\\', '\\\\').replace('\n', '\\n').replace('\r', '\\r')


def _unescape(line: str) -> str:
  out, i = [], 0
  while i < len(line):
    c = line[i]
    if c == '\\' and i + 1 < len(line):
      nxt = line[i + 1]
      out.append({'n': '\n', 'r': '\r', '\\': '\\'}.get(nxt, '\\' + nxt))
      i += 2
    else:
      out.append(c)
      i += 1
  return ''.join(out)


class Vocabulary:
  """Maps words to ids with Keras ``Tokenizer.texts_to_sequences`` semantics.

  Only ids that ``texts_to_sequences`` can emit are kept (those below
  ``num_words``), so every id it returns is in ``[1, size]`` by construction.

  Args:
    tokens: ``tokens[i]`` is the word with id ``i + 1``; ``None`` where no word
      has that id.
    oov_token: the OOV word, if the tokenizer has one; it must be in
      ``tokens``.
  """
  def __init__(self, tokens: Sequence[Optional[str]],
               oov_token: Optional[str] = None):
    self.tokens = list(tokens)
    self._index = {t: i for i, t in enumerate(self.tokens, 1) if t is not None}
    self.oov_id: Optional[int] = None
    if oov_token is not None:
      self.oov_id = self._index.get(oov_token)
      if self.oov_id is None:
        raise ValueError(
            f'oov_token {oov_token!r} is not in the vocabulary of '
            f'{len(self.tokens)} words.')

  @property
  def size(self) -> int:
    """The largest id (the embedding needs at least ``size + 1`` rows)."""
    return len(self.tokens)

  def lookup(self, words: Iterable[str]) -> tuple[np.ndarray, int]:
    """Returns ``(ids as int32, number of unknown words)``."""
    ids = list(map(self._index.get, words))  # the dict lookups run in C
    unknown = ids.count(None)
    if unknown:
      if self.oov_id is not None:
        oov = self.oov_id
        ids = [oov if i is None else i for i in ids]
      else:
        ids = [i for i in ids if i is not None]
    return np.asarray(ids, dtype=np.int32), unknown

  @classmethod
  def from_word_index(cls, word_index: dict[str, int],
                      config: TokenizerConfig) -> 'Vocabulary':
    """Builds the vocabulary a Keras ``Tokenizer`` with ``word_index`` uses."""
    limit = max(word_index.values(), default=0)
    if config.num_words:
      limit = min(limit, config.num_words - 1)
    tokens: list[Optional[str]] = [None] * max(limit, 0)
    for word, i in word_index.items():
      if not isinstance(i, int) or i < 1:
        raise ValueError(
            f'word_index maps {word!r} to {i!r}; ids must be integers >= 1.')
      if i <= limit:
        tokens[i - 1] = word
    oov = config.oov_token
    if oov is not None and oov not in {t for t in tokens if t is not None}:
      oov = None  # Keras then drops unknown words too.
    return cls(tokens, oov)

  @classmethod
  def fit(cls, word_sequences: Iterable[Sequence[str]],
          config: TokenizerConfig) -> 'Vocabulary':
    """Fits like ``Tokenizer.fit_on_texts`` on already split word sequences.

    Words are ordered by frequency, ties by first occurrence; ids start at 1,
    after the OOV token when there is one.
    """
    counts: collections.OrderedDict[str, int] = collections.OrderedDict()
    for words in word_sequences:
      for w in words:
        counts[w] = counts.get(w, 0) + 1
    ordered = [w for w, _ in sorted(counts.items(), key=lambda kv: -kv[1])]
    if config.oov_token is not None:
      ordered = [config.oov_token] + ordered
    word_index = dict(zip(ordered, range(1, len(ordered) + 1)))
    return cls.from_word_index(word_index, config)

  def to_text(self) -> str:
    """One token per line, line n (from 1) holds id n; see `from_text`."""
    return ''.join(
        (_escape(t) if t is not None else '') + '\n' for t in self.tokens)

  @classmethod
  def from_text(cls, text: str, oov_token: Optional[str] = None
                ) -> 'Vocabulary':
    """Parses `to_text` output: backslash escapes ``\\n``, ``\\r``, ``\\\\``;
    an empty line is an id with no word."""
    if text and not text.endswith('\n'):
      raise ValueError('the vocabulary does not end with a newline '
                       '(is the file truncated?)')
    lines = text.split('\n')[:-1]
    return cls([_unescape(l) if l else None for l in lines], oov_token)


def truncate(ids: np.ndarray, maxlen: int, truncating: str) -> np.ndarray:
  """Keeps ``maxlen`` ids from the end (``pre``) or start (``post``)."""
  if len(ids) <= maxlen:
    return ids
  return ids[-maxlen:] if truncating == 'pre' else ids[:maxlen]


def budget_batches(order: Iterable[int], lengths: Sequence[int], *,
                   batch_tokens: int, max_rows: Optional[int] = None,
                   row_length: Optional[int] = None) -> list[list[int]]:
  """Cuts ``order`` into consecutive batches within a padded-token budget.

  A batch closes before its padded size (rows x longest) would exceed
  ``batch_tokens``, or at ``max_rows`` rows; a single longer row still gets a
  batch of its own. Pass ``order`` sorted by length for little padding.

  Args:
    order: indices into ``lengths``, in the order to batch them.
    lengths: each sequence's length (0 counts as 1).
    batch_tokens: the budget of one padded batch.
    max_rows: optional cap on rows per batch.
    row_length: the padded row length when fixed (fixed-length bundles).
  """
  batches: list[list[int]] = []
  current: list[int] = []
  longest = 0
  for i in order:
    width = max(longest, row_length or max(int(lengths[i]), 1))
    if current and ((max_rows and len(current) >= max_rows) or
                    width * (len(current) + 1) > batch_tokens):
      batches.append(current)
      current, width = [], row_length or max(int(lengths[i]), 1)
    current.append(i)
    longest = width
  if current:
    batches.append(current)
  return batches


def pad_batch(sequences: Sequence[np.ndarray], *, length: Optional[int] = None,
              padding: str = 'post') -> np.ndarray:
  """Pads int32 sequences with 0 into a ``[batch, length]`` array.

  Args:
    sequences: id sequences, each at most ``length`` long.
    length: the row length; the longest sequence's length when None.
    padding: ``post`` pads on the right (the side cuDNN accepts), ``pre`` on
      the left, as Keras ``pad_sequences`` does by default.
  """
  if length is None:
    length = max((len(s) for s in sequences), default=0)
  out = np.zeros((len(sequences), length), dtype=np.int32)
  for row, s in enumerate(sequences):
    if len(s) > length:
      raise ValueError(f'sequence {row} has {len(s)} ids, more than {length}.')
    if len(s):
      if padding == 'post':
        out[row, :len(s)] = s
      else:
        out[row, length - len(s):] = s
  return out
