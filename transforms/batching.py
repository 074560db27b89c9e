"""Puts documents of similar length next to each other before batching.

RunInference's ``BatchElements`` batches in arrival order. This DoFn holds a
bounded buffer of documents (counted in tokens), and when it is full, or at
the end of a bundle, emits it sorted by length, so that consecutive elements,
and so the batches cut from them, have similar lengths and little padding.
Memory stays bounded by ``buffer_tokens`` whatever the corpus size. Flushes
alternate between ascending and descending order so that the seam between
two flushes joins documents of similar length.

In a streaming pipeline a bundle can last long (a file read whole, a runner
that closes bundles every second or every thousand elements), and
``BatchElements`` then holds documents until a batch is full. `CutBatches`
does the sorting and the batching in one step, and also emits once its
oldest document has waited ``max_wait_secs``. The bound is checked as
documents arrive: Beam gives a DoFn no wall-clock timer without per-key
state, and the state-and-timer route (``BatchElements(
max_batch_duration_secs=...)``) lost documents whose window closed while
they waited on the DirectRunner, which holds no watermark for a timer.
When no document arrives, the bundle's end flushes.
"""

import time
from typing import Any, Callable, Iterator, Optional

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from model.text import budget_batches

DEFAULT_BUFFER_TOKENS = 1 << 23


class SortByLength(beam.DoFn):
  """Re-orders elements by length within a bounded buffer.

  Args:
    length_fn: maps an element to its length in tokens.
    buffer_tokens: how many tokens to hold before emitting.
  """
  def __init__(self, length_fn: Callable[[Any], int], *,
               buffer_tokens: int = DEFAULT_BUFFER_TOKENS):
    self._length_fn = length_fn
    self._buffer_tokens = buffer_tokens
    self._buffer: list = []
    self._held = 0
    self._ascending = True

  def start_bundle(self):
    self._buffer, self._held = [], 0

  def process(self, element, window=beam.DoFn.WindowParam,
              timestamp=beam.DoFn.TimestampParam):
    n = self._length_fn(element)
    self._buffer.append((n, element, timestamp, window))
    self._held += max(n, 1)
    if self._held >= self._buffer_tokens:
      yield from self._flush()

  def finish_bundle(self):
    yield from self._flush()

  def _flush(self) -> Iterator[WindowedValue]:
    buffered = sorted(self._buffer, key=lambda item: item[0],
                      reverse=not self._ascending)
    self._ascending = not self._ascending
    self._buffer, self._held = [], 0
    for _, element, timestamp, window in buffered:
      yield WindowedValue(element, timestamp, (window,))


class CutBatches(beam.DoFn):
  """Sorts keyed sequences by length and cuts them into batches, with a
  bound on how long any of them waits.

  For streaming pipelines, in place of `SortByLength` followed by
  RunInference's own batching (``BatchElements``), which holds elements
  until a batch is full or the bundle ends (and always holds its last
  batch until the next element comes). Elements are ``(key, ids)``; each
  output is one batch, a list of them, for a RunInference that skips its
  own batching (``with_no_batching()``), in its elements' window, stamped
  with their earliest timestamp.

  The buffer (one per window) is emitted when it holds ``buffer_tokens``,
  when its oldest element has waited ``max_wait_secs`` (checked as elements
  arrive), and at the end of a bundle; each emission is cut, shortest first,
  into batches whose padded size (rows x longest) stays within
  ``batch_tokens``.

  Args:
    batch_tokens: the padded-token budget of one batch.
    max_wait_secs: the longest an element waits once others keep arriving.
    buffer_tokens: how many tokens to hold at most.
    row_length: the padded row length of fixed-length bundles (None: each
      batch's longest).
    length_fn: maps an element's ``ids`` to its length in tokens.
    clock: seconds, for the wait bound (tests pass their own).

  Raises:
    ValueError: ``max_wait_secs`` is not a positive number.
  """
  def __init__(self, *, batch_tokens: int, max_wait_secs: float,
               buffer_tokens: int = DEFAULT_BUFFER_TOKENS,
               row_length: Optional[int] = None,
               length_fn: Callable[[Any], int] = len,
               clock: Callable[[], float] = time.monotonic):
    if not max_wait_secs > 0:
      raise ValueError(f'max_wait_secs must be a positive number of seconds; '
                       f'received {max_wait_secs!r}.')
    self._batch_tokens = batch_tokens
    self._max_wait_secs = max_wait_secs
    self._buffer_tokens = buffer_tokens
    self._row_length = row_length
    self._length_fn = length_fn
    self._clock = clock
    self._windows: dict = {}
    self._held = 0
    self._oldest = 0.0

  def start_bundle(self):
    self._windows, self._held = {}, 0

  def process(self, element, window=beam.DoFn.WindowParam,
              timestamp=beam.DoFn.TimestampParam):
    if not self._held:
      self._oldest = self._clock()
    n = self._length_fn(element[1])
    self._windows.setdefault(window, []).append((element, timestamp, n))
    self._held += max(n, 1)
    if (self._held >= self._buffer_tokens or
        self._clock() - self._oldest >= self._max_wait_secs):
      yield from self._flush()

  def finish_bundle(self):
    yield from self._flush()

  def _flush(self) -> Iterator[WindowedValue]:
    windows, self._windows, self._held = self._windows, {}, 0
    for window, held in windows.items():
      lengths = [n for _, _, n in held]
      order = sorted(range(len(held)), key=lengths.__getitem__)
      for batch in budget_batches(order, lengths,
                                  batch_tokens=self._batch_tokens,
                                  row_length=self._row_length):
        yield WindowedValue([held[i][0] for i in batch],
                            min(held[i][1] for i in batch), (window,))
