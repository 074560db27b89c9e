"""DoFns that turn ``(id, text)`` into ``(id, TokenizedDocument)``.

Each step calls the bundle's own text rules (`model.text`), so ids are the
ones training produced. Heavy state (the MeCab tagger, the vocabulary) is
built in ``setup()``: the constructors keep only picklable configuration.
Bad input raises `model.text.TextError`, which ``ScoreDocuments`` routes to its
dead-letter output with the stage and the reason.
"""

import logging
import typing
from typing import Any, Iterator, Optional

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from model.bundle import Bundle, RecentByPath, load_bundle
from model.text import Segmenter, TokenizerConfig, truncate
from transforms.metrics import NAMESPACE

_LOGGER = logging.getLogger(__name__)


class TokenizedDocument(typing.NamedTuple):
  """A document's ids on its way to the model.

  Attributes:
    ids: int32 ids, at most the bundle's maxlen once truncated.
    n_tokens: ids the document has before truncation.
    n_unknown: words not in the vocabulary.
    truncated: whether ids were cut to maxlen.
    bundle_path: with model updates on, the bundle whose vocabulary gave
      the ids and whose model scores them; None otherwise.
  """
  ids: np.ndarray
  n_tokens: int
  n_unknown: int = 0
  truncated: bool = False
  bundle_path: Optional[str] = None


class SegmentText(beam.DoFn):
  """Segments ``(id, text)`` with MeCab into ``(id, wakati text)``.

  A MeCab tagger is not thread-safe; Beam never runs one DoFn instance on two
  threads at once, so the tagger built in ``setup()`` is one per thread.

  Args:
    mecab_args: the bundle's MeCab arguments.
  """
  def __init__(self, mecab_args: str):
    self._mecab_args = mecab_args
    self._segmenter = None
    self._documents = Metrics.counter(NAMESPACE, 'documents')
    self._chars = Metrics.distribution(NAMESPACE, 'document_chars')

  def setup(self):
    self._segmenter = Segmenter(self._mecab_args)

  def process(self, element: tuple[Any, Any]) -> Iterator[tuple[Any, str]]:
    doc_id, text = element
    self._documents.inc()
    if isinstance(text, str):
      self._chars.update(len(text))
    yield doc_id, self._segmenter.segment(text)


class LookUpTokenIds(beam.DoFn):
  """Maps ``(id, wakati)`` to ``(id, TokenizedDocument)`` with bundle rules.

  The vocabulary is read once per worker process (`model.bundle.load_bundle`
  keeps one bundle per process).

  Args:
    bundle_path: the bundle directory on any Beam filesystem.
  """
  def __init__(self, bundle_path: str):
    self._bundle_path = bundle_path
    self._bundle = None
    self._tokens = Metrics.counter(NAMESPACE, 'tokens')
    self._unknown = Metrics.counter(NAMESPACE, 'unknown_tokens')
    self._empty = Metrics.counter(NAMESPACE, 'empty')
    self._lengths = Metrics.distribution(NAMESPACE, 'document_tokens')

  def setup(self):
    self._bundle = load_bundle(self._bundle_path, check_model=False)
    self._rules = self._bundle.tokenizer

  def process(self, element: tuple[Any, str]
              ) -> Iterator[tuple[Any, TokenizedDocument]]:
    doc_id, wakati = element
    yield doc_id, self._lookup(self._bundle, self._rules, wakati)

  def _lookup(self, bundle: Bundle, rules: TokenizerConfig,
              wakati: str) -> TokenizedDocument:
    ids, unknown = bundle.vocabulary.lookup(rules.words(wakati))
    self._tokens.inc(len(ids))
    self._unknown.inc(unknown)
    self._lengths.update(len(ids))
    if not len(ids):
      self._empty.inc()
    return TokenizedDocument(ids, len(ids), unknown)


class TruncateTokenIds(beam.DoFn):
  """Cuts ids to ``maxlen`` on the bundle's truncating side.

  Args:
    maxlen: the bundle's maxlen.
    truncating: ``pre`` keeps the end of the document, ``post`` its start.
  """
  def __init__(self, maxlen: int, truncating: str):
    if truncating not in ('pre', 'post'):
      raise ValueError(
          f'truncating must be "pre" or "post"; received {truncating!r}.')
    self._maxlen = maxlen
    self._truncating = truncating
    self._truncated = Metrics.counter(NAMESPACE, 'truncated')

  def process(self, element: tuple[Any, TokenizedDocument]
              ) -> Iterator[tuple[Any, TokenizedDocument]]:
    doc_id, doc = element
    yield doc_id, self._truncate(doc, self._maxlen, self._truncating)

  def _truncate(self, doc: TokenizedDocument, maxlen: int,
                truncating: str) -> TokenizedDocument:
    if len(doc.ids) > maxlen:
      self._truncated.inc()
      doc = doc._replace(ids=truncate(doc.ids, maxlen, truncating),
                         truncated=True)
    return doc


# Bundles kept by the by-bundle steps of one DoFn instance: the running one
# and the few before it whose documents may still be on their way.
_BUNDLES_KEPT = 4


def _bundles() -> RecentByPath:
  """Bundles by path, read once each (`load_bundle` without the model).

  A bundle directory is taken as immutable once its manifest is written:
  a new version of a model goes to a new directory.
  """
  return RecentByPath(lambda path: load_bundle(path, check_model=False),
                      _BUNDLES_KEPT)


class LookUpTokenIdsByBundle(LookUpTokenIds):
  """Maps ``(id, (bundle_path, wakati))`` with that bundle's vocabulary.

  With model updates on, each document names the bundle that will score it
  (`transforms.refresh.AssignBundles`); its ids come from that bundle's
  vocabulary and tokenizer rules, and the `TokenizedDocument` keeps the
  path (``bundle_path``) for the steps after.
  """
  def __init__(self):
    super().__init__('')
    self._bundles = None

  def setup(self):
    self._bundles = _bundles()

  def process(self, element: tuple[Any, tuple[str, str]]
              ) -> Iterator[tuple[Any, TokenizedDocument]]:
    doc_id, (bundle_path, wakati) = element
    bundle = self._bundles.get(bundle_path)
    doc = self._lookup(bundle, bundle.tokenizer, wakati)
    yield doc_id, doc._replace(bundle_path=bundle_path)


class TruncateTokenIdsByBundle(TruncateTokenIds):
  """Cuts ids to the maxlen, on the truncating side, of each document's
  bundle (its ``bundle_path``, set by `LookUpTokenIdsByBundle`)."""
  def __init__(self):
    super().__init__(1, 'pre')
    self._bundles = None

  def setup(self):
    self._bundles = _bundles()

  def process(self, element: tuple[Any, TokenizedDocument]
              ) -> Iterator[tuple[Any, TokenizedDocument]]:
    doc_id, doc = element
    if doc.bundle_path is None:
      raise ValueError(
          'expected a document looked up by LookUpTokenIdsByBundle (with a '
          'bundle_path); received one without.')
    bundle = self._bundles.get(doc.bundle_path)
    yield doc_id, self._truncate(doc, bundle.maxlen, bundle.truncating)

