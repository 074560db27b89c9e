"""Cuts input files into ranges that different workers read.

Why this module exists: one large file must be scored by every worker, not
by the one that happens to open it.

* JSONL and text files larger than ``split_bytes`` are cut into byte ranges.
  A range owns the lines that *start* inside it (the reader seeks to the byte
  before its start and skips the partial line), so every line is read exactly
  once whatever the cut points. To keep ``FILE:LINE`` ids and error sources,
  a cheap first pass counts the newlines of each range in parallel
  (`count_newlines`), and `number_ranges` gives each range the number of
  its first line.
* Parquet files are cut into groups of whole row groups.
* Compressed files cannot be split (a codec stream has no random access), and
  neither can files in UTF-16/UTF-32 (found by their BOM): they are read
  whole. CSV is read whole as well: a quoted field may hold newlines, so the
  record that a byte offset falls into cannot be told without reading the
  file from its start.
"""

import math
import typing
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline.io.formats import (INPUT_FORMATS, input_format_of, is_compressed,
                                 wide_encoding)
from transforms.metrics import NAMESPACE

DEFAULT_SPLIT_BYTES = 64 << 20
_READ_CHUNK = 8 << 20


class FileRange(typing.NamedTuple):
  """A part of one input file that one worker reads.

  Attributes:
    path: the file.
    fmt: its input format.
    start: first byte (line formats) or first row group (Parquet).
    stop: end byte or row group, exclusive; -1 for the end of the file.
    first_line: number of the first line (or row) the range owns, from 1.
    encoding: ``utf-8``, or ``utf-16``/``utf-32`` for files read whole.
  """
  path: str
  fmt: str
  start: int
  stop: int
  first_line: int = 1
  encoding: str = 'utf-8'

  @property
  def whole(self) -> bool:
    return self.start == 0 and self.stop < 0


def _parquet_ranges(path: str, split_bytes: int) -> list[FileRange]:
  import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED
                        ) as f:
    meta = pq.ParquetFile(f).metadata
  ranges, first, row, size, first_row = [], 0, 0, 0, 1
  for i in range(meta.num_row_groups):
    group = meta.row_group(i)
    size += group.total_byte_size
    row += group.num_rows
    if size >= split_bytes or i == meta.num_row_groups - 1:
      ranges.append(FileRange(path, 'parquet', first, i + 1, first_row))
      first, size, first_row = i + 1, 0, row + 1
  return ranges or [FileRange(path, 'parquet', 0, -1)]


class PlanRanges(beam.DoFn):
  """Cuts each matched file into ranges (see the module docstring).

  Main output: `FileRange` s ready to read. Output ``blocks``: byte ranges of
  large line files whose first line numbers `CountNewlines` and
  `number_ranges` still have to work out.

  Args:
    input_format: a format of `INPUT_FORMATS`, or ``auto`` (by extension).
    split_bytes: the size of one range.
  """
  BLOCKS = 'blocks'

  def __init__(self, input_format: str = 'auto', *,
               split_bytes: int = DEFAULT_SPLIT_BYTES):
    if input_format not in INPUT_FORMATS + ('auto',):
      raise ValueError(f'input format must be one of {INPUT_FORMATS} or '
                       f'"auto"; received {input_format!r}.')
    if split_bytes < 1:
      raise ValueError(f'split_bytes must be positive; received {split_bytes}.')
    self._format = input_format
    self._split_bytes = split_bytes
    self._files = Metrics.counter(NAMESPACE, 'input_files')
    self._ranges = Metrics.counter(NAMESPACE, 'input_ranges')

  def process(self, metadata) -> Iterator[Any]:
    path, size = metadata.path, metadata.size_in_bytes
    fmt = input_format_of(path) if self._format == 'auto' else self._format
    self._files.inc()
    compressed = is_compressed(path)
    whole = FileRange(path, fmt, 0, -1)
    if compressed or fmt == 'csv' or size <= self._split_bytes:
      self._ranges.inc()
      yield whole
      return
    if fmt == 'parquet':
      try:
        ranges = _parquet_ranges(path, self._split_bytes)
      except Exception:  # pylint: disable=broad-except
        ranges = [whole]  # ReadRanges reports what is wrong with the file.
      self._ranges.inc(len(ranges))
      yield from ranges
      return
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED
                          ) as f:
      encoding = wide_encoding(f.read(4))
    if encoding:
      self._ranges.inc()
      yield whole._replace(encoding=encoding)
      return
    bounds = byte_ranges(size, self._split_bytes)
    self._ranges.inc(len(bounds))
    for start, stop in bounds:
      yield beam.pvalue.TaggedOutput(self.BLOCKS, FileRange(
          path, fmt, start, stop, 0))


def byte_ranges(size: int, split_bytes: int) -> list[tuple[int, int]]:
  """Cuts ``size`` bytes into ``(start, stop)`` ranges of about equal size.

  As few ranges as keep each within ``split_bytes``, all of one size but the
  last (shorter by less than the number of ranges): a remainder range would
  make ranges unequal, and runners that deal ranges by count (the
  DirectRunner) would give one worker more bytes than another.
  """
  n = math.ceil(size / split_bytes)
  step = math.ceil(size / n)
  return [(i * step, min(size, (i + 1) * step)) for i in range(n)]


def count_newlines(block: FileRange) -> tuple[str, tuple[int, int, bool]]:
  """``(path, (start, newlines in the block, whether it ends with one))``."""
  newlines, last = 0, b''
  with FileSystems.open(block.path,
                        compression_type=CompressionTypes.UNCOMPRESSED) as f:
    f.seek(block.start)
    left = block.stop - block.start
    while left > 0:
      chunk = f.read(min(_READ_CHUNK, left))
      if not chunk:
        break
      newlines += chunk.count(b'\n')
      left -= len(chunk)
      last = chunk[-1:]
  return block.path, (block.start, newlines, last == b'\n')


def number_ranges(blocks: tuple[str, Iterable[tuple[int, int, bool]]],
                  fmt: str) -> Iterator[FileRange]:
  """Turns one file's counted blocks into ranges that know their first line.

  A range that starts right after a newline owns the line starting at its
  first byte; any other range's first line starts after its first newline.
  """
  path, counted = blocks
  counted = sorted(counted)
  seen, after_newline = 0, True
  for i, (start, newlines, ends_with_newline) in enumerate(counted):
    stop = counted[i + 1][0] if i + 1 < len(counted) else -1
    first = seen + 1 if after_newline else seen + 2
    yield FileRange(path, fmt, start, stop, first)
    seen += newlines
    after_newline = ends_with_newline
