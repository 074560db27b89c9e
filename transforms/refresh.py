"""Live model refresh: new bundles score the documents that follow them.

``ScoreDocuments(bundle, model_updates=paths)`` takes a PCollection of bundle
paths that arrive over time (`WatchBundles` makes one from a pattern). Each
document is assigned the bundle that scores it *before* its ids are looked
up, so the vocabulary, maxlen and model that a document meets are always
those of one bundle::

  (id, wakati) --AssignBundles--> (id, (bundle_path, wakati))
    --LookUpTokenIds(that bundle's vocabulary)--> ... --RunInference
    (RefreshingBundleModelHandler: that bundle's model)--> scores, model_id

Why not RunInference's ``model_metadata_pcoll`` side input: a side input in
the global window is only ready on Beam's Python DirectRunner once its whole
PCollection is complete (the runner waits for the side input's watermark to
pass the end of the global window), so no document would be scored until the
updates stopped, and then all with the last bundle. A pipeline must run
unchanged on every runner, so the switch is made in the data instead:

* `AssignBundles` moves documents and updates into the global window, keys
  them into `UPDATE_SHARDS` shards (each update is sent to every shard), and
  a stateful DoFn keeps the current bundle of each shard. A document takes
  the bundle its shard holds when it arrives; an update that passes
  `check_bundle_update` becomes the shard's bundle for the documents that
  arrive after it. A refused update is logged as a warning naming the path
  and the reason, and the previous bundle keeps scoring. Each document passes
  the step exactly once, so none is lost or scored twice across a switch.
  State survives worker restarts, so a worker that starts after an update
  scores with the newest accepted bundle.
* The documents then get back their windows and timestamps (the window
  rides in the element; `_CarriedWindows` assigns it back), so windowed
  pipelines see the same windows as without updates.
"""

import hashlib
import logging
import threading
from typing import Any, Iterator, Optional, Sequence

import apache_beam as beam
from apache_beam.coders import FloatCoder, StrUtf8Coder
from apache_beam.io.fileio import MatchContinuously
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms import window
from apache_beam.transforms.core import Windowing
from apache_beam.transforms.userstate import (BagStateSpec,
                                             ReadModifyWriteStateSpec)
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from model import storage
from model.bundle import MANIFEST, BundleError, forget_bundle, load_bundle
from transforms.metrics import NAMESPACE

_LOGGER = logging.getLogger(__name__)

UPDATE_SHARDS = 16
"""Shards of the assignment step: each keeps its own current bundle, so the
step is not one key on one worker. Every update is sent to each shard."""
_DOC = 'doc'
_UPDATE = 'update'


def check_bundle_update(path: str, *, output_names: Sequence[str],
                        mecab_args: str, batch_tokens: int) -> None:
  """Validates a bundle that would replace the running one.

  Loads the bundle with every check (`model.bundle.load_bundle` with
  ``check_model`` and ``probe_model``: files, checksums, a probe through the
  model), checks this machine's MeCab dictionary against it, and refuses a
  bundle that could not take the running one's place.

  Args:
    path: the new bundle's directory.
    output_names: the running bundle's output names (the scores' fields).
    mecab_args: the running bundle's MeCab arguments (documents are segmented
      once, before the bundle is chosen).
    batch_tokens: the token budget of one inference batch.

  Raises:
    BundleError: naming the file or setting and what is wrong.
  """
  bundle = load_bundle(path, check_model=True, probe_model=True)
  bundle.check_environment()
  where = FileSystems.join(bundle.path, MANIFEST)
  if bundle.output_names != list(output_names):
    raise BundleError(
        f'{where}: expected the outputs {list(output_names)} of the running '
        f'bundle; received {bundle.output_names}.')
  if bundle.mecab_args != mecab_args:
    raise BundleError(
        f'{where}: expected the MeCab arguments {mecab_args!r} of the running '
        f'bundle; received {bundle.mecab_args!r}.')
  if bundle.maxlen > batch_tokens:
    raise BundleError(
        f'{where}: maxlen {bundle.maxlen} does not fit the batch budget of '
        f'{batch_tokens} tokens.')


# Verdicts on updates in this process, by (path, manifest digest): None for
# accepted, else the reason. Every shard sees every update; a bundle is
# validated (and its refusal logged) once per process, and a refused one is
# not tried again until its manifest changes.
_VERDICTS: dict[tuple[str, str], Optional[str]] = {}
_VERDICTS_LOCK = threading.Lock()


class _AssignBundle(beam.DoFn):
  """Keeps a shard's current bundle; gives each document that bundle.

  Input: ``(shard, ('update', path))`` or ``(shard, ('doc', (window,
  timestamp, key, wakati)))`` in the global window. Output: ``InWindow(window,
  (key, (bundle_path, wakati)))`` stamped with the document's timestamp.
  """
  CURRENT = ReadModifyWriteStateSpec('bundle_path', StrUtf8Coder())

  def __init__(self, initial_path: str, *, output_names: Sequence[str],
               mecab_args: str, batch_tokens: int):
    self._initial = initial_path
    self._checks = {'output_names': list(output_names),
                    'mecab_args': mecab_args, 'batch_tokens': batch_tokens}
    self._accepted = Metrics.counter(NAMESPACE, 'model_updates_accepted')
    self._refused = Metrics.counter(NAMESPACE, 'model_updates_refused')

  def process(self, element: tuple[int, tuple[str, Any]],
              current=beam.DoFn.StateParam(CURRENT)) -> Iterator[Any]:
    _, (kind, value) = element
    bundle_path = current.read() or self._initial
    if kind == _UPDATE:
      if value != bundle_path and self._accepts(value, bundle_path):
        current.write(value)
      return
    doc_window, timestamp, key, wakati = value
    yield window.TimestampedValue(
        InWindow(doc_window, (key, (bundle_path, wakati))), timestamp)

  def _accepts(self, path: str, running: str) -> bool:
    try:
      digest = hashlib.sha256(storage.read_bytes(
          FileSystems.join(path.rstrip('/'), MANIFEST))).hexdigest()
    except Exception as e:  # pylint: disable=broad-except
      digest = f'unreadable: {e}'
    # One validation at a time per process: shards on other threads wait
    # for the verdict instead of loading the same bundle again.
    with _VERDICTS_LOCK:
      if (path, digest) in _VERDICTS:
        return _VERDICTS[(path, digest)] is None
      try:
        check_bundle_update(path, **self._checks)
        reason = None
      except Exception as e:  # pylint: disable=broad-except
        reason = str(e) or type(e).__name__
        forget_bundle(path)  # Its model may have loaded before a check.
      _VERDICTS[(path, digest)] = reason
      if reason is None:
        self._accepted.inc()
        _LOGGER.info('Model update: bundle %s scores the documents that '
                     'follow (replacing %s).', path, running)
      else:
        self._refused.inc()
        _LOGGER.warning('Model update refused: bundle %s: %s %s keeps '
                        'scoring.', path, reason.rstrip('.') + '.', running)
      return reason is None


class _ShardDocuments(beam.DoFn):
  """``(key, wakati)`` -> ``(shard, ('doc', (window, timestamp, key,
  wakati)))``: the window rides along, to be given back after."""
  def __init__(self, shards: int):
    self._shards = shards
    self._next = 0

  def process(self, element: tuple[Any, str], w=beam.DoFn.WindowParam,
              timestamp=beam.DoFn.TimestampParam) -> Iterator[Any]:
    key, wakati = element
    self._next = (self._next + 1) % self._shards
    yield self._next, (_DOC, (w, timestamp, key, wakati))


def _broadcast_update(path: Any, shards: int) -> Iterator[Any]:
  if not isinstance(path, str) or not path:
    Metrics.counter(NAMESPACE, 'model_updates_refused').inc()
    _LOGGER.warning('Model update refused: expected a bundle path (a '
                    'non-empty string); received %r.', path)
    return
  for shard in range(shards):
    yield shard, (_UPDATE, path)


class InWindow:
  """An element on its way back to its window (`RestoreWindows`)."""
  __slots__ = ('window', 'value')

  def __init__(self, w: window.BoundedWindow, value: Any):
    self.window = w
    self.value = value

  def __reduce__(self):
    return InWindow, (self.window, self.value)


class _CarriedWindows(window.WindowFn):
  """Assigns each `InWindow` element the window it carries.

  Any other element (a record restamped further on) gets the windows the
  original window function assigns it; everything else (window coder,
  merging, output times) is the original's too, so a windowed pipeline
  keeps its windows.
  """
  def __init__(self, windowfn: window.WindowFn):
    self._windowfn = windowfn

  def assign(self, context):
    if isinstance(context.element, InWindow):
      return [context.element.window]
    return self._windowfn.assign(context)

  def get_window_coder(self):
    return self._windowfn.get_window_coder()

  def is_merging(self) -> bool:
    return self._windowfn.is_merging()

  def merge(self, merge_context):
    return self._windowfn.merge(merge_context)

  def get_transformed_output_time(self, w, input_timestamp):
    return self._windowfn.get_transformed_output_time(w, input_timestamp)

  def __eq__(self, other):
    return (type(self) is type(other)
            and self._windowfn == other._windowfn)

  def __hash__(self):
    return hash((type(self), self._windowfn))


def _into_windowing(windowing: Windowing, windowfn: window.WindowFn
                    ) -> beam.WindowInto:
  """``WindowInto`` with ``windowing``'s trigger and modes, and ``windowfn``.
  """
  if windowing.is_default() and isinstance(windowfn, window.GlobalWindows):
    return beam.WindowInto(window.GlobalWindows())
  return beam.WindowInto(
      windowfn, trigger=windowing.triggerfn,
      accumulation_mode=windowing.accumulation_mode,
      timestamp_combiner=windowing.timestamp_combiner,
      allowed_lateness=windowing.allowed_lateness)


def _restored_windowfn(windowing: Windowing) -> window.WindowFn:
  if isinstance(windowing.windowfn, window.GlobalWindows):
    return window.GlobalWindows()
  return _CarriedWindows(windowing.windowfn)


class RestoreWindows(beam.PTransform):
  """`InWindow` elements back in their windows, as their values.

  Args:
    windowing: the windowing the elements had (``pcoll.windowing``).
  """
  def __init__(self, windowing: Windowing, label: Optional[str] = None):
    super().__init__(label)
    self._windowing = windowing

  def expand(self, pcoll):
    return (pcoll
            | 'IntoCarriedWindows' >> _into_windowing(
                self._windowing, _restored_windowfn(self._windowing))
            | 'DropCarriedWindows' >> beam.Map(lambda element: element.value))


class CarryWindows(beam.PTransform):
  """Elements in the same windows, in the windowing `RestoreWindows` gives:
  for outputs flattened with restored ones.

  Args:
    windowing: the windowing the elements have.
  """
  def __init__(self, windowing: Windowing, label: Optional[str] = None):
    super().__init__(label)
    self._windowing = windowing

  def expand(self, pcoll):
    return (pcoll
            | 'AttachWindows' >> beam.Map(
                lambda element, w=beam.DoFn.WindowParam: InWindow(w, element))
            | 'Restore' >> RestoreWindows(self._windowing))


class AssignBundles(beam.PTransform):
  """Gives each ``(key, wakati)`` the bundle that will score it.

  Input: segmented documents, in any windowing. Output: ``(key,
  (bundle_path, wakati))`` with each document's window and timestamp.
  ``bundle_path`` is ``initial_path`` until an update from ``model_updates``
  passes `check_bundle_update`; from then on, documents that reach the step
  get the new bundle.

  Args:
    model_updates: a PCollection of bundle paths (strings).
    initial_path: the bundle that scores before any update.
    output_names: the running bundle's output names.
    mecab_args: the running bundle's MeCab arguments.
    batch_tokens: the inference token budget.
    shards: keys of the stateful step (`UPDATE_SHARDS`).
  """
  def __init__(self, model_updates: beam.PCollection, initial_path: str, *,
               output_names: Sequence[str], mecab_args: str,
               batch_tokens: int, shards: int = UPDATE_SHARDS,
               label: Optional[str] = None):
    super().__init__(label)
    if shards < 1:
      raise ValueError(f'shards must be at least 1; received {shards}.')
    self._updates = model_updates
    self._initial = initial_path
    self._checks = {'output_names': list(output_names),
                    'mecab_args': mecab_args, 'batch_tokens': batch_tokens}
    self._shards = shards

  def expand(self, docs):
    windowing = docs.windowing
    sharded = (
        docs
        | 'ShardDocuments' >> beam.ParDo(
            _ShardDocuments(self._shards)).with_output_types(
                tuple[int, Any])
        | 'DocumentsToGlobalWindow' >> beam.WindowInto(
            window.GlobalWindows()))
    updates = (
        self._updates
        | 'UpdatesToGlobalWindow' >> beam.WindowInto(window.GlobalWindows())
        | 'BroadcastUpdates' >> beam.FlatMap(
            _broadcast_update, self._shards).with_output_types(
                tuple[int, Any]))
    return ((sharded, updates)
            | 'DocumentsAndUpdates' >> beam.Flatten()
            | 'AssignBundle' >> beam.ParDo(
                _AssignBundle(self._initial, **self._checks))
            | 'RestoreWindows' >> RestoreWindows(windowing))


class WatchBundles(beam.PTransform):
  """The bundle directories matching a pattern, as new ones appear.

  Watches ``<pattern>/manifest.json`` every ``interval`` seconds: a bundle
  writes its manifest last (`model.bundle.write_bundle`), so a directory is
  emitted once its bundle is complete. Each directory is emitted once, and
  only while the bundles come newer: one whose manifest is older than the
  newest emitted so far (or than the start of the watch, unless
  ``include_existing``) is passed over, so a late-listed older bundle never
  replaces a newer one. Publish each model version in a new directory; a
  bundle rewritten in place is not emitted again. Feed the output to
  ``ScoreDocuments(..., model_updates=...)``, which validates each bundle
  before it scores.

  The output is unbounded (``fileio.MatchContinuously``): use it in a
  streaming pipeline.

  Example::

    updates = p | WatchBundles('gs://bucket/models/*', interval=60)
    scores, errors = docs | ScoreDocuments('gs://bucket/models/v1',
                                           model_updates=updates)

  Args:
    pattern: a glob of bundle directories on any Beam filesystem (``*``,
      ``?``, ``[...]``), without the trailing ``/``.
    interval: seconds between two matches.
    include_existing: also emit the bundles already there when the watch
      starts (newest last where one poll lists several); by default only
      bundles written after it, since the pipeline names the bundle it
      starts with.
    start_timestamp: when to start watching (now by default).
    stop_timestamp: when to stop (never by default); the output is then
      complete, which lets a test pipeline finish.
  """
  def __init__(self, pattern: str, interval: float = 60.0, *,
               include_existing: bool = False,
               start_timestamp: Optional[Timestamp] = None,
               stop_timestamp: Timestamp = MAX_TIMESTAMP,
               label: Optional[str] = None):
    super().__init__(label)
    if not isinstance(pattern, str) or not pattern.strip('/'):
      raise ValueError(
          f'pattern must be a glob of bundle directories; received '
          f'{pattern!r}.')
    if interval <= 0:
      raise ValueError(
          f'interval must be a positive number of seconds; received '
          f'{interval!r}.')
    self._pattern = pattern.rstrip('/')
    self._interval = interval
    self._include_existing = include_existing
    self._start = start_timestamp
    self._stop = stop_timestamp

  def expand(self, pbegin):
    # MatchContinuously's own default start is the time Beam was imported.
    # Its deduplicating form (a Watch) does not run on the local runners, so
    # every poll's matches come out and `_NewBundles` keeps the new ones.
    start = Timestamp.now() if self._start is None else self._start
    since = None if self._include_existing else float(start)
    return (pbegin
            | 'MatchManifests' >> MatchContinuously(
                FileSystems.join(self._pattern, MANIFEST),
                interval=self._interval, has_deduplication=False,
                start_timestamp=start, stop_timestamp=self._stop)
            | 'BundleDirectories' >> beam.Map(
                _bundle_directory).with_output_types(
                    tuple[str, tuple[str, float]])
            | 'NewBundles' >> beam.ParDo(_NewBundles(since)))


class _NewBundles(beam.DoFn):
  """``('', (directory, manifest mtime))`` -> ``directory``, once, when it
  is not older than the newest emitted (and than ``since``).

  One key: the stream of matches is small, and one state orders it.
  """
  SEEN = BagStateSpec('seen', StrUtf8Coder())
  NEWEST = ReadModifyWriteStateSpec('newest', FloatCoder())

  def __init__(self, since: Optional[float]):
    self._since = since

  def process(self, element: tuple[str, tuple[str, float]],
              seen=beam.DoFn.StateParam(SEEN),
              newest=beam.DoFn.StateParam(NEWEST)) -> Iterator[str]:
    _, (directory, updated) = element
    if directory in set(seen.read()):
      return
    seen.add(directory)
    floor = newest.read()
    if floor is None:
      floor = self._since
    if floor is not None and updated < floor:
      _LOGGER.info('WatchBundles: passing over %s, older than the newest '
                   'bundle seen.', directory)
      return
    newest.write(updated)
    yield directory


def _bundle_directory(metadata: Any) -> tuple[str, tuple[str, float]]:
  directory, _ = FileSystems.split(metadata.path)
  return '', (directory, float(metadata.last_updated_in_seconds))
