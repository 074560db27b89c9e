"""Opens input files through their codec, and says so when one is truncated.

Why this module exists: Beam's filesystems decompress by extension, but a
stream that stops before its codec's end-of-stream marker (a truncated
download, a full disk) reads there like a normal end of file, and the
records after the cut would be lost without a word. Here each codec's
decompressor from the standard library (``zlib``, ``bz2``, ``lzma``; for
zstd, the ``zstandard`` package Beam uses) is fed the raw bytes that Beam's
filesystems give, and `EOFError` is raised, as ``gzip``, ``bz2`` and
``lzma`` raise it, when the input ends inside a stream. Concatenated streams
(``cat a.gz b.gz``) read as one file, as with Beam.
"""

import bz2
import io
import lzma
import zlib
from typing import Any, BinaryIO, Callable

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_RAW_CHUNK = 1 << 20


def _zstd():
  import zstandard  # pylint: disable=import-outside-toplevel
  # As Beam allows: frames written with windows up to 2 GiB.
  return zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj()


# Each codec Beam detects by extension, and a new decompressor for it.
DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    CompressionTypes.GZIP: lambda: zlib.decompressobj(zlib.MAX_WBITS | 16),
    CompressionTypes.DEFLATE: zlib.decompressobj,
    CompressionTypes.BZIP2: bz2.BZ2Decompressor,
    CompressionTypes.LZMA: lzma.LZMADecompressor,
    CompressionTypes.ZSTD: _zstd,
}


class _Decompressing(io.RawIOBase):
  """The decompressed bytes of ``raw``, a file of one or more ``codec``
  streams."""
  def __init__(self, raw: BinaryIO, codec: str):
    super().__init__()
    self._raw = raw
    self._codec = codec
    self._new = DECOMPRESSORS[codec]
    self._decompressor = self._new()
    self._started = False  # Whether the current stream has had input.
    self._done = False
    self._out = b''
    self._pos = 0

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    while self._pos >= len(self._out) and not self._done:
      self._out, self._pos = self._more(), 0
    n = min(len(buffer), len(self._out) - self._pos)
    buffer[:n] = memoryview(self._out)[self._pos:self._pos + n]
    self._pos += n
    return n

  def _more(self) -> bytes:
    """Decompresses the next chunk; b'' once the file has ended."""
    if self._decompressor.eof:
      rest = self._decompressor.unused_data or self._raw.read(_RAW_CHUNK)
      if not rest:
        self._done = True
        return b''
      # Another stream follows (concatenated files).
      self._decompressor, self._started = self._new(), False
      chunk = rest
    else:
      chunk = self._raw.read(_RAW_CHUNK)
      if not chunk:
        self._done = True
        if self._started:
          raise EOFError(f'the {self._codec} stream ends before its '
                         f'end-of-stream marker')
        return b''
    self._started = True
    return self._decompressor.decompress(chunk)

  def close(self) -> None:
    try:
      self._raw.close()
    finally:
      super().close()


def open_input(path: str) -> BinaryIO:
  """Opens ``path`` for reading, decompressed by its extension's codec.

  Reading a compressed file raises `EOFError` where it ends inside a
  stream (truncated).
  """
  codec = CompressionTypes.detect_compression_type(path)
  raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
  if codec == CompressionTypes.UNCOMPRESSED:
    return raw
  if codec not in DECOMPRESSORS:
    raw.close()
    raise ValueError(f'{path}: no decompressor for {codec!r}')
  return io.BufferedReader(_Decompressing(raw, codec), buffer_size=1 << 16)
