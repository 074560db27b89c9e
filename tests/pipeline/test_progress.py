"""Progress counts across processes and the progress line."""

import multiprocessing
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import progress


def test_line_leaves_out_percent_without_bytes():
  line = progress.progress_line({'scored': 1500, 'tokens': 90000}, 30.0,
                                total_bytes=10_000)
  assert line == '[30s] scored 1,500 documents (90,000 tokens), 50.0 docs/s'
  assert 'input' not in progress.progress_line(
      {'scored': 1, 'bytes_read': 10}, 1.0, total_bytes=None)


def test_line_gives_percent_and_time_left_from_bytes():
  line = progress.progress_line(
      {'scored': 100, 'tokens': 1000, 'errors': 2, 'bytes_read': 2500}, 90.0,
      total_bytes=10_000)
  # Reading a quarter of the input is a quarter of READ_SHARE of the work.
  assert line == ('[1m30s] scored 100 documents (1,000 tokens, 2 errors), '
                  '1.1 docs/s, 25% of the input read, about 6m36s left')
  read = progress.progress_line({'scored': 5, 'bytes_read': 10_000}, 5.0,
                                total_bytes=10_000)
  assert read.endswith('100% of the input read, about 2s left')
  done = progress.progress_line(
      {'scored': 90, 'errors': 10, 'records_read': 100, 'bytes_read': 10_000},
      5.0, total_bytes=10_000)
  assert done.endswith('100% of the input read')


def test_no_counts_yet_is_not_called_nothing_scored():
  """A cluster's SDK workers report no counts while the job runs."""
  assert progress.progress_line({}, 70.0, total_bytes=10_000) == (
      '[1m10s] running; no counts from the workers yet')
  assert progress.progress_line({'scored': 0}, 10.0, None).startswith(
      '[10s] scored 0 documents')


def test_line_gives_records_read_when_counted():
  """Worker processes segment all their ranges before they score: the
  records read show the job moving while few documents are scored."""
  line = progress.progress_line(
      {'scored': 0, 'tokens': 0, 'records_read': 5120, 'bytes_read': 6000},
      30.0, total_bytes=10_000)
  assert line == ('[30s] scored 0 documents (0 tokens), 0.0 docs/s, '
                  '5,120 records read, 60% of the input read, about 38s left')
  assert 'records read' not in progress.progress_line({'scored': 3}, 1.0,
                                                      total_bytes=None)


@pytest.mark.parametrize('read,estimate', [(1, False), (134, False),
                                           (136, True), (5_000, True)])
def test_time_left_waits_for_one_percent_of_the_work(read, estimate):
  """At 10 s and a few bytes read, the time so far is start-up."""
  line = progress.progress_line({'scored': 0, 'bytes_read': read}, 10.0,
                                total_bytes=10_000)
  assert line.endswith(' left') is estimate
  assert 'of the input read' in line


def test_time_left_counts_the_scoring_still_to_come():
  """Workers read everything, then score: once the input is read, half the
  documents scored is not nearly done (the old estimate said so)."""
  counts = {'records_read': 320_000, 'bytes_read': 1000, 'scored': 0}
  assert progress.work_done(counts, 1000) == pytest.approx(
      progress.READ_SHARE)
  counts['scored'] = 160_000
  assert progress.work_done(counts, 1000) == pytest.approx(
      progress.READ_SHARE + (1 - progress.READ_SHARE) / 2)
  half = {'records_read': 137_600, 'bytes_read': 430, 'scored': 0}
  assert progress.work_done(half, 1000) == pytest.approx(
      0.43 * progress.READ_SHARE)
  assert progress.work_done({'scored': 3}, 1000) is None
  assert progress.work_done({'bytes_read': 3}, None) is None


@given(total=st.integers(1, 10**9), read=st.integers(1, 10**9),
       records=st.integers(0, 10**6), scored=st.integers(0, 10**6),
       more_read=st.integers(0, 10**6), more_scored=st.integers(0, 10**6))
def test_work_done_is_a_share_that_grows_with_the_work(
    total, read, records, scored, more_read, more_scored):
  read = min(read, total)
  scored = min(scored, records)
  before = {'bytes_read': read, 'records_read': records, 'scored': scored}
  after = {'bytes_read': min(total, read + more_read),
           'records_read': records,
           'scored': min(records, scored + more_scored)}
  w0, w1 = progress.work_done(before, total), progress.work_done(after, total)
  assert 0 <= w0 <= w1 <= 1


def _child(directory):
  os.environ[progress.PROGRESS_DIR_ENV] = directory
  progress.tally(scored=3, tokens=30)
  progress.flush()


def test_counts_of_every_process_add_up(tmp_path, monkeypatch):
  directory = str(tmp_path)
  monkeypatch.setenv(progress.PROGRESS_DIR_ENV, directory)
  progress.tally(scored=2, tokens=5, bytes_read=100)
  progress.flush()
  context = multiprocessing.get_context('spawn')
  workers = [context.Process(target=_child, args=(directory,))
             for _ in range(2)]
  for w in workers:
    w.start()
  for w in workers:
    w.join(60)
  assert progress.read_counts(directory) == {
      'scored': 8, 'tokens': 65, 'bytes_read': 100}
  # A new run (another directory) starts from zero in this process.
  other = tmp_path / 'next'
  other.mkdir()
  monkeypatch.setenv(progress.PROGRESS_DIR_ENV, str(other))
  progress.tally(scored=1)
  progress.flush()
  assert progress.read_counts(str(other)) == {'scored': 1}


def test_without_a_directory_nothing_is_written(tmp_path, monkeypatch):
  monkeypatch.setenv(progress.PROGRESS_DIR_ENV, str(tmp_path / 'elsewhere'))
  progress.tally(scored=1)
  progress.flush()
  assert not (tmp_path / 'elsewhere').exists()


def test_reporter_takes_a_running_job_s_metrics(tmp_path, monkeypatch):
  monkeypatch.setenv(progress.PROGRESS_DIR_ENV, str(tmp_path))
  progress.tally(scored=4)
  progress.flush()
  reporter = progress.ProgressReporter(0, str(tmp_path))
  assert reporter.counts() == {'scored': 4}
  reporter.use_metrics(lambda: {'scored': 10, 'bytes_read': 7})
  assert reporter.counts() == {'scored': 10, 'bytes_read': 7}

  def cannot_answer():
    raise NotImplementedError('metrics while running')
  reporter.use_metrics(cannot_answer)
  assert reporter.counts() == {'scored': 4}
