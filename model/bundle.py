"""The model bundle: one portable directory that decides a document's scores.

Layout (all paths relative to the bundle, named in the manifest)::

  manifest.json      format version, text rules, padding, outputs, checksums
  vocabulary.txt     line n (counting from 1) is the word with id n
  saved_model/       SavedModel; serving_default: token_ids int32 [batch, None]
                     -> scores float32 [batch, n_outputs]
  model.keras        the Keras model, for fine-tuning

Bundles are read and written through Beam's filesystems, so they can live on
local disk, gs:// or hdfs://. Loading validates everything and every refusal
names the file and what is wrong. A SavedModel is code: load bundles only from
sources you trust.
"""

import datetime
import hashlib
import importlib.metadata
import json
import logging
import os
import posixpath
import shutil
import tempfile
import threading
from typing import Any, Callable, Optional, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems

from model import lstm_scorer, storage
from runtime.tensorflow_import import import_tensorflow
from model.text import PADDING_SIDES, Segmenter, TokenizerConfig, Vocabulary, pad_batch

_LOGGER = logging.getLogger(__name__)

FORMAT_NAME = 'ja-doc-scorer-bundle'
FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
DEFAULT_FILES = {
    'saved_model': 'saved_model',
    'vocabulary': 'vocabulary.txt',
    'keras_model': 'model.keras',
}
SIGNATURE = 'serving_default'
INPUT_NAME = 'token_ids'
OUTPUT_NAME = 'scores'
# Bundles already read in this process, by path and manifest digest: workers
# that score with one bundle parse its vocabulary and load its SavedModel
# once per process, and a pipeline that validated it at construction reuses
# what validation loaded when it runs in the same process.
_LOADED: dict[tuple[str, str], 'Bundle'] = {}
_LOADED_LOCK = threading.Lock()
_REQUIRED = ('format_version', 'maxlen', 'padding', 'truncating', 'masked',
             'segmenter', 'tokenizer', 'outputs', 'embedding_dim',
             'embedding_rows', 'vocabulary_size', 'empty_document_scores',
             'files', 'checksums')


class BundleError(ValueError):
  """A bundle is missing, corrupt or inconsistent. The message names the
  file and what is wrong."""


def default_output_names(n: int) -> list[str]:
  return [f'score_{i}' for i in range(n)]


# The distributions whose versions a bundle's manifest records.
BUNDLE_PACKAGES = ('apache-beam', 'tensorflow', 'keras', 'mecab-python3',
                   'unidic-lite', 'gensim', 'numpy')


def package_versions(names: Sequence[str] = BUNDLE_PACKAGES
                     ) -> dict[str, str]:
  """The installed versions of the distributions ``names`` (those present)."""
  versions = {}
  for name in names:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return versions


def _check_relative(path: Any, what: str, bundle: str) -> str:
  """Refuses manifest paths that could point outside the bundle."""
  where = f'{FileSystems.join(bundle, MANIFEST)}'
  if not isinstance(path, str) or not path:
    raise BundleError(f'{where}: files.{what} must be a non-empty relative '
                      f'path; received {path!r}.')
  normalized = posixpath.normpath(path)
  if ('://' in path or path.startswith(('/', '\\')) or '\\' in path or
      ':' in path or normalized.startswith('..') or normalized == '.'):
    raise BundleError(
        f'{where}: files.{what} is {path!r}; it must be a relative path '
        f'inside the bundle.')
  return normalized


class Bundle:
  """A validated bundle: manifest, vocabulary, and where its model is.

  Create with `load_bundle`. It holds only picklable configuration; call
  `load_signature` (in ``DoFn.setup()``) to load the SavedModel.
  """
  def __init__(self, path: str, manifest: dict[str, Any],
               vocabulary: Vocabulary):
    self.path = path
    self.manifest = manifest
    self.vocabulary = vocabulary
    self._predict = None
    self._lock = threading.Lock()

  def __getstate__(self):
    return {'path': self.path, 'manifest': self.manifest,
            'vocabulary': self.vocabulary}

  def __setstate__(self, state):
    self.__init__(state['path'], state['manifest'], state['vocabulary'])

  # What decides scores, from the manifest.
  @property
  def maxlen(self) -> int:
    return self.manifest['maxlen']

  @property
  def padding(self) -> str:
    return self.manifest['padding']

  @property
  def truncating(self) -> str:
    return self.manifest['truncating']

  @property
  def masked(self) -> bool:
    return self.manifest['masked']

  @property
  def output_names(self) -> list[str]:
    return list(self.manifest['outputs'])

  @property
  def tokenizer(self) -> TokenizerConfig:
    return TokenizerConfig.from_dict(self.manifest['tokenizer'])

  @property
  def mecab_args(self) -> str:
    return self.manifest['segmenter']['mecab_args']

  @property
  def empty_document_scores(self) -> np.ndarray:
    return np.asarray(self.manifest['empty_document_scores'], np.float32)

  def file(self, what: str) -> str:
    rel = self.manifest['files'][what]
    return FileSystems.join(self.path, *rel.split('/'))

  def pad(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
    """Pads a batch the way this bundle's model must see it.

    A masked model ignores padding, so a batch is padded on the right (the
    side cuDNN accepts) only to its own longest sequence. A fixed-length
    (unmasked) model reads padding as input, so it gets exactly ``maxlen``
    on the manifest's padding side, as in training.
    """
    if self.masked:
      return pad_batch(sequences, padding='post')
    return pad_batch(sequences, length=self.maxlen, padding=self.padding)

  def load_signature(self, *, fast: bool = True):
    """Loads the SavedModel and returns ``fn(token_ids) -> scores`` (numpy).

    The model is loaded once per `Bundle` object (and `load_bundle` returns
    one object per bundle and process) and checked against the vocabulary
    and outputs on a probe (`verify_model`) as it loads, wherever that is;
    the callable is thread-safe. Its ``kind`` attribute says which function
    scores: ``'lstm'`` (`model.lstm_scorer`, used where it applies and agrees
    with the signature) or ``'signature'``.

    Args:
      fast: allow `model.lstm_scorer`; False always scores with the
        SavedModel's signature.

    Raises:
      BundleError: the SavedModel cannot be loaded or fails the probe.
    """
    with self._lock:
      if self._predict is None:
        predict = self._load_signature()
        verify_model(self, predict)
        self._predict = {'signature': predict}
      signature = self._predict['signature']
      if fast and 'lstm' not in self._predict:
        # Built (and probed) once, and only where asked for.
        faster = lstm_scorer.for_bundle(signature.loaded, signature,
                                        masked=self.masked,
                                        maxlen=self.maxlen, pad=self.pad)
        self._predict['lstm'] = faster and _scoring_function(
            faster, 'lstm', signature.loaded)
      return (fast and self._predict['lstm']) or signature

  def _load_signature(self):
    tf = import_tensorflow()
    path = self.file('saved_model')
    try:
      with storage.local_copy(path, directory=True) as local:
        loaded = tf.saved_model.load(local)
    except Exception as e:  # TensorFlow raises many types here.
      raise BundleError(f'{path}: cannot load the SavedModel ({e}).') from e
    if SIGNATURE not in loaded.signatures:
      raise BundleError(
          f'{path}: no {SIGNATURE!r} signature; found '
          f'{sorted(loaded.signatures)}.')
    signature = loaded.signatures[SIGNATURE]

    def predict(token_ids: np.ndarray) -> np.ndarray:
      out = signature(**{INPUT_NAME: tf.constant(token_ids, tf.int32)})
      return out[OUTPUT_NAME].numpy()

    return _scoring_function(predict, 'signature', loaded)

  def check_environment(self) -> None:
    """Refuses to score when MeCab's dictionary differs from training's.

    Raises:
      BundleError: the dictionary name or version differs.
    """
    expected = self.manifest['segmenter'].get('dictionary')
    actual = Segmenter(self.mecab_args).dictionary
    if expected and (expected.get('name'), expected.get('version')) != (
        actual['name'], actual['version']):
      raise BundleError(
          f'{FileSystems.join(self.path, MANIFEST)}: the bundle was made '
          f'with MeCab dictionary {expected.get("name")} '
          f'{expected.get("version")}, but this machine has '
          f'{actual["name"]} {actual["version"]}; segmentation and ids would '
          f'differ. Install the same dictionary.')


def _read_manifest_bytes(path: str) -> bytes:
  where = FileSystems.join(path, MANIFEST)
  try:
    return storage.read_bytes(where)
  except Exception as e:
    raise BundleError(f'{where}: cannot read the manifest ({e}).') from e


def _read_manifest(path: str, raw: bytes) -> dict[str, Any]:
  where = FileSystems.join(path, MANIFEST)
  try:
    manifest = json.loads(raw.decode('utf-8'))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise BundleError(f'{where}: not valid JSON ({e}).') from e
  if not isinstance(manifest, dict):
    raise BundleError(f'{where}: expected a JSON object.')
  version = manifest.get('format_version')
  if not isinstance(version, int):
    raise BundleError(f'{where}: format_version must be an integer; '
                      f'received {version!r}.')
  if version > FORMAT_VERSION:
    raise BundleError(
        f'{where}: format version {version} is newer than this package '
        f'reads (up to {FORMAT_VERSION}); upgrade the package.')
  if version < 1:
    raise BundleError(f'{where}: unknown format version {version}.')
  missing = [k for k in _REQUIRED if k not in manifest]
  if missing:
    raise BundleError(f'{where}: missing fields {missing}.')
  for side in ('padding', 'truncating'):
    if manifest[side] not in PADDING_SIDES:
      raise BundleError(f'{where}: {side} must be one of {PADDING_SIDES}; '
                        f'received {manifest[side]!r}.')
  if not isinstance(manifest['maxlen'], int) or manifest['maxlen'] < 1:
    raise BundleError(f'{where}: maxlen must be a positive integer; '
                      f'received {manifest["maxlen"]!r}.')
  n = len(manifest['outputs'])
  if len(manifest['empty_document_scores']) != n:
    raise BundleError(
        f'{where}: empty_document_scores has '
        f'{len(manifest["empty_document_scores"])} values for {n} outputs.')
  files = manifest['files']
  for what in DEFAULT_FILES:
    files[what] = _check_relative(files.get(what), what, path)
  try:
    TokenizerConfig.from_dict(manifest['tokenizer'])
  except (TypeError, ValueError) as e:
    raise BundleError(f'{where}: bad tokenizer settings ({e}).') from e
  return manifest


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def load_bundle(path: str, *, check_model: bool = True,
                probe_model: bool = True) -> Bundle:
  """Reads and validates a bundle.

  Without ``check_model``, a bundle this process already read with the same
  manifest is returned as it is (vocabulary parsed and model loaded once per
  process); with it, every file is checked again.

  Args:
    path: the bundle directory, on any Beam filesystem.
    check_model: also verify the SavedModel's checksum.
    probe_model: with ``check_model``, also load the SavedModel here and
      call it on a probe (the largest vocabulary id) to check the
      embedding's size and the number of outputs. Imports TensorFlow. Turn
      it off in a process that will not score (a job's launcher whose
      workers are other processes): `Bundle.load_signature` probes wherever
      the model is loaded.

  Raises:
    BundleError: naming the file and what is wrong.
  """
  path = path.rstrip('/') or '/'
  raw = _read_manifest_bytes(path)
  key = (path, _sha256(raw))
  if not check_model:
    with _LOADED_LOCK:
      if key in _LOADED:
        return _LOADED[key]
  bundle = _validate(path, _read_manifest(path, raw), check_model,
                     probe_model)
  with _LOADED_LOCK:
    if check_model or key not in _LOADED:
      _LOADED[key] = bundle
    return _LOADED[key]


class RecentByPath:
  """What a worker keeps per bundle path, loaded on first use.

  Keeps the ``keep`` most recently used (with model updates: the running
  bundle and the few before it, whose documents may still be on their
  way); thread-safe.

  Args:
    load: ``load(bundle_path)``, the value to keep for a path.
    keep: how many paths to keep.
    forget: called with a path as it is dropped.
  """
  def __init__(self, load: Callable[[str], Any], keep: int, *,
               forget: Optional[Callable[[str], Any]] = None):
    self._load = load
    self._keep = keep
    self._forget = forget
    self._values: dict[str, Any] = {}
    self._lock = threading.Lock()

  def get(self, path: str) -> Any:
    with self._lock:
      value = self._values.pop(path, None)
      if value is None:
        value = self._load(path)
      self._values[path] = value  # Most recently used last.
      while len(self._values) > self._keep:
        oldest = next(iter(self._values))
        del self._values[oldest]
        if self._forget is not None:
          self._forget(oldest)
      return value


def forget_bundle(path: str) -> int:
  """Drops what this process keeps of the bundle at ``path`` (`load_bundle`
  keeps each bundle read, its loaded model included, for the process's life).

  A long-running job that replaces its bundle calls it for bundles it no
  longer scores with, or refused; holders of the `Bundle` keep their object.

  Returns:
    How many kept versions of the bundle were dropped.
  """
  path = path.rstrip('/') or '/'
  with _LOADED_LOCK:
    keys = [key for key in _LOADED if key[0] == path]
    for key in keys:
      del _LOADED[key]
  return len(keys)


def _validate(path: str, manifest: dict[str, Any], check_model: bool,
              probe_model: bool) -> Bundle:
  bundle = Bundle(path, manifest, Vocabulary([]))

  vocab_path = bundle.file('vocabulary')
  try:
    raw = storage.read_bytes(vocab_path)
  except Exception as e:
    raise BundleError(f'{vocab_path}: cannot read the vocabulary ({e}).') from e
  if _sha256(raw) != manifest['checksums'].get('vocabulary'):
    raise BundleError(
        f'{vocab_path}: checksum differs from the manifest; the file is '
        f'corrupt or was changed.')
  try:
    bundle.vocabulary = Vocabulary.from_text(
        raw.decode('utf-8'), manifest['tokenizer'].get('oov_token'))
  except (UnicodeDecodeError, ValueError) as e:
    raise BundleError(f'{vocab_path}: {e}.') from e
  size = bundle.vocabulary.size
  if size != manifest['vocabulary_size']:
    raise BundleError(
        f'{vocab_path}: holds {size} words but the manifest says '
        f'{manifest["vocabulary_size"]}.')
  if size + 1 > manifest['embedding_rows']:
    raise BundleError(
        f'{vocab_path}: the vocabulary ({size} words, ids 1..{size}) is '
        f'larger than the embedding ({manifest["embedding_rows"]} rows).')

  if check_model:
    model_path = bundle.file('saved_model')
    if not FileSystems.exists(FileSystems.join(model_path, 'saved_model.pb')):
      raise BundleError(f'{model_path}: no saved_model.pb; the SavedModel is '
                        f'missing.')
    if storage.tree_sha256(model_path) != manifest['checksums'].get(
        'saved_model'):
      raise BundleError(
          f'{model_path}: checksum differs from the manifest; the SavedModel '
          f'is truncated, corrupt or was changed.')
    if probe_model:
      bundle.load_signature()  # Probes the model as it loads.
  return bundle


def _scoring_function(predict, kind: str, loaded):
  predict.kind = kind
  predict.loaded = loaded  # Keep the trackable objects alive.
  return predict


def verify_model(bundle: Bundle, predict) -> None:
  """Calls the model on the largest id; checks the embedding and outputs."""
  model_path = bundle.file('saved_model')
  largest = max(bundle.vocabulary.size, 1)
  probe = bundle.pad([np.asarray([largest], np.int32)])
  try:
    scores = predict(probe)
  except Exception as e:
    raise BundleError(
        f'{model_path}: the model refused id {largest}, the largest in the '
        f'vocabulary; the vocabulary is larger than the model\'s embedding '
        f'({str(e).splitlines()[0][:200]}).') from e
  n = len(bundle.output_names)
  if scores.ndim != 2 or scores.shape[1] != n:
    raise BundleError(
        f'{model_path}: the model outputs scores of shape {scores.shape[1:]}, '
        f'but the manifest names {n} outputs.')


def export_saved_model(model, path: str, *, embedding_rows: int) -> None:
  """Writes ``model`` as a SavedModel with the variable-length signature.

  The signature asserts ``0 <= token_ids < embedding_rows``: on a GPU an
  out-of-range ``tf.gather`` silently returns zeros, here it fails loudly.
  """
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  archive = keras.export.ExportArchive()
  archive.track(model)

  @tf.function(input_signature=[
      tf.TensorSpec([None, None], tf.int32, name=INPUT_NAME)
  ])
  def serve(token_ids):
    checks = lstm_scorer.token_id_checks(tf, token_ids, embedding_rows)
    with tf.control_dependencies(checks):
      scores = model(token_ids, training=False)
    return {OUTPUT_NAME: tf.cast(scores, tf.float32)}

  archive.add_endpoint(SIGNATURE, serve)
  archive.write_out(path, verbose=False)


def write_bundle(out: str,
                 *,
                 model,
                 vocabulary: Vocabulary,
                 maxlen: int,
                 padding: str = 'pre',
                 truncating: str = 'pre',
                 tokenizer: TokenizerConfig,
                 mecab_args: str,
                 dictionary: dict[str, str],
                 output_names: Optional[Sequence[str]] = None,
                 provenance: Optional[dict[str, Any]] = None,
                 overwrite: bool = False,
                 check=None) -> Bundle:
  """Exports a Keras scorer and its text rules as a bundle at ``out``.

  The bundle is assembled and validated in a local temporary directory, then
  copied to ``out`` with the manifest last, so a partial copy is refused.

  Args:
    out: the bundle directory on any Beam filesystem.
    model: a Keras model with a ``[batch, None]`` int32 input (`build_model`).
    vocabulary: the words behind ids ``1..vocabulary.size``.
    maxlen: the training sequence length; longer documents are truncated.
    padding: the side padding went in training (``pre`` or ``post``).
    truncating: the side truncation cut in training.
    tokenizer: the Keras tokenizer settings.
    mecab_args: MeCab arguments used for segmentation.
    dictionary: the MeCab dictionary's name and version.
    output_names: names of the scores; ``score_0..`` by default.
    provenance: extra provenance fields (training data hash, source...).
    overwrite: replace an existing bundle at ``out``.
    check: optional ``check(bundle, predict)`` run on the temporary bundle
      before anything is written to ``out`` (the import's probe).

  Returns:
    The bundle as loaded back from ``out``.
  """
  from model.network import summarize  # pylint: disable=import-outside-toplevel
  for name, side in (('padding', padding), ('truncating', truncating)):
    if side not in PADDING_SIDES:
      raise ValueError(
          f'{name} must be one of {PADDING_SIDES}; received {side!r}.')
  summary = summarize(model)
  names = list(output_names or default_output_names(summary.n_outputs))
  if len(names) != summary.n_outputs:
    raise ValueError(f'{len(names)} output names given for a model with '
                     f'{summary.n_outputs} outputs.')
  if vocabulary.size + 1 > summary.embedding_rows:
    raise ValueError(
        f'the vocabulary ({vocabulary.size} words) is larger than the '
        f'embedding ({summary.embedding_rows} rows, ids 0..'
        f'{summary.embedding_rows - 1}).')
  if FileSystems.exists(FileSystems.join(out, MANIFEST)) and not overwrite:
    raise FileExistsError(
        f'{out}: a bundle exists there; choose another path or overwrite it.')

  # Empty documents are all padding. Their score is computed once here, on
  # the CPU and at full length, as Keras gives it for an all-zero row; the
  # scorer never sends a fully masked row to the LSTM (cuDNN rejects it).
  empty = model.predict(np.zeros((1, maxlen), np.int32), verbose=0)[0]

  tmp = tempfile.mkdtemp(prefix='bundle-build-')
  try:
    files = dict(DEFAULT_FILES)
    vocab_bytes = vocabulary.to_text().encode('utf-8')
    with open(os.path.join(tmp, files['vocabulary']), 'wb') as f:
      f.write(vocab_bytes)
    model.save(os.path.join(tmp, files['keras_model']))
    export_saved_model(model, os.path.join(tmp, files['saved_model']),
                       embedding_rows=summary.embedding_rows)
    with open(os.path.join(tmp, files['keras_model']), 'rb') as f:
      keras_sha = _sha256(f.read())
    manifest = {
        'format': FORMAT_NAME,
        'format_version': FORMAT_VERSION,
        'maxlen': int(maxlen),
        'padding': padding,
        'truncating': truncating,
        'masked': summary.mask_zero,
        'fixed_length': not summary.mask_zero,
        'segmenter': {'mecab_args': mecab_args, 'dictionary': dictionary},
        'tokenizer': tokenizer.to_dict(),
        'outputs': names,
        'embedding_dim': summary.embedding_dim,
        'embedding_rows': summary.embedding_rows,
        'vocabulary_size': vocabulary.size,
        'empty_document_scores': [float(x) for x in empty],
        'files': files,
        'checksums': {
            'vocabulary': _sha256(vocab_bytes),
            'saved_model': storage.tree_sha256(
                os.path.join(tmp, files['saved_model'])),
            'keras_model': keras_sha,
        },
        'provenance': {
            'created_at': datetime.datetime.now(
                datetime.timezone.utc).isoformat(timespec='seconds'),
            'packages': package_versions(),
            **(provenance or {}),
        },
    }
    with open(os.path.join(tmp, MANIFEST), 'w', encoding='utf-8') as f:
      json.dump(manifest, f, ensure_ascii=False, indent=2)
    local = load_bundle(tmp)
    if check is not None:
      check(local, local.load_signature())
    if overwrite:
      storage.remove_tree(out)
    for rel in storage.list_tree(tmp):
      if rel != MANIFEST:
        storage.copy_tree_file(tmp, out, rel)
    storage.copy_tree_file(tmp, out, MANIFEST)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return load_bundle(out, check_model=False)
