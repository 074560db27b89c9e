"""`transforms.batching.CutBatches`: the wait bound, the budget, windows.

The DoFn is driven directly with a clock the test moves, so the bound is
checked without sleeping.
"""

import numpy as np
import pytest
from apache_beam.transforms import window

from transforms.batching import CutBatches


class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def _doc(name, n):
  return (name, np.ones(n, np.int32))


def _names(outputs):
  return [[key for key, _ in wv.value] for wv in outputs]


W1 = window.IntervalWindow(0, 60)
W2 = window.IntervalWindow(60, 120)


def _cutter(clock, **args):
  cut = CutBatches(**{'batch_tokens': 1000, 'max_wait_secs': 1.0,
                      'clock': clock, **args})
  cut.start_bundle()
  return cut


def _send(cut, doc, win=W1, ts=10):
  return list(cut.process(doc, window=win, timestamp=ts))


def test_nothing_leaves_before_the_bound_then_all_that_waits():
  clock = _Clock()
  cut = _cutter(clock)
  assert _send(cut, _doc('a', 30)) == []
  clock.now = 0.6
  assert _send(cut, _doc('b', 10)) == []
  clock.now = 1.0  # 'a' has waited the bound as 'c' arrives.
  out = _send(cut, _doc('c', 20))
  assert _names(out) == [['b', 'c', 'a']]  # shortest first
  # The wait starts again with the next document.
  clock.now = 1.5
  assert _send(cut, _doc('d', 5)) == []
  clock.now = 2.4
  assert _send(cut, _doc('e', 5)) == []
  assert _names(cut.finish_bundle()) == [['d', 'e']]


@pytest.mark.parametrize('lengths', [[1] * 50, [900, 10, 500, 499, 1, 1000],
                                     list(range(1, 120, 7)), [0, 0, 3]])
def test_batches_keep_to_the_budget_and_lose_nothing(lengths):
  clock = _Clock()
  cut = _cutter(clock, row_length=None)
  out = []
  for i, n in enumerate(lengths):
    out += _send(cut, _doc(f'd{i}', n))
  out += list(cut.finish_bundle())
  names = [name for batch in _names(out) for name in batch]
  assert sorted(names) == sorted(f'd{i}' for i in range(len(lengths)))
  for wv in out:
    widths = [max(len(ids), 1) for _, ids in wv.value]
    assert widths == sorted(widths)
    assert len(widths) == 1 or len(widths) * max(widths) <= 1000


def test_the_buffer_budget_emits_without_waiting():
  cut = _cutter(_Clock(), buffer_tokens=100)
  assert _send(cut, _doc('a', 60)) == []
  assert _names(_send(cut, _doc('b', 40))) == [['b', 'a']]


def test_each_window_gets_its_own_batches_and_earliest_timestamp():
  cut = _cutter(_Clock())
  _send(cut, _doc('a', 5), W1, ts=30)
  _send(cut, _doc('b', 5), W2, ts=70)
  _send(cut, _doc('c', 5), W1, ts=12)
  out = list(cut.finish_bundle())
  got = {tuple(sorted(k for k, _ in wv.value)): (wv.windows, float(wv.timestamp))
         for wv in out}
  assert got == {('a', 'c'): ((W1,), 12.0), ('b',): ((W2,), 70.0)}


def test_fixed_length_rows_count_the_row_length():
  cut = _cutter(_Clock(), row_length=400)
  for i in range(5):
    _send(cut, _doc(f'd{i}', 3))
  assert [len(wv.value) for wv in cut.finish_bundle()] == [2, 2, 1]


@pytest.mark.parametrize('wait', [0, -1, float('nan')])
def test_a_wait_bound_must_be_positive(wait):
  with pytest.raises(ValueError, match='max_wait_secs must be a positive'):
    CutBatches(batch_tokens=10, max_wait_secs=wait)
