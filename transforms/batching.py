"""Puts documents of similar length next to each other before batching.

RunInference's ``BatchElements`` batches in arrival order. This DoFn holds a
bounded buffer of documents (counted in tokens), and when it is full, or at
the end of a bundle, emits it sorted by length, so that consecutive elements,
and so the batches cut from them, have similar lengths and little padding.
Memory stays bounded by ``buffer_tokens`` whatever the corpus size. Flushes
alternate between ascending and descending order so that the seam between
two flushes joins documents of similar length.
"""

from typing import Any, Callable, Iterator

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

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
