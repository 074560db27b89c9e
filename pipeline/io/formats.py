"""Input and output formats: names, file extensions, compression, encodings.

Why this module exists: the command, the readers, the writers and the kept
fields' column types all speak of formats; each fact about one is here once.
"""

import codecs
import posixpath
from typing import Optional

from apache_beam.io.filesystem import CompressionTypes

INPUT_FORMATS = ('jsonl', 'text', 'csv', 'parquet')
OUTPUT_FORMATS = ('jsonl', 'csv', 'parquet', 'tfrecord')
_EXTENSIONS = {
    '.jsonl': 'jsonl', '.json': 'jsonl', '.ndjson': 'jsonl', '.txt': 'text',
    '.text': 'text',
    '.csv': 'csv', '.tsv': 'csv', '.parquet': 'parquet'
}
# The integers every output format can write (Parquet's and TFRecord's
# int64), and so the integers an id or a kept integer column may hold.
INT64_RANGE = (-(1 << 63), (1 << 63) - 1)
UTF8_BOM = codecs.BOM_UTF8
# Longest first: the UTF-32 LE BOM starts with the UTF-16 LE one.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, 'utf-32'), (codecs.BOM_UTF32_BE, 'utf-32'),
              (codecs.BOM_UTF16_LE, 'utf-16'), (codecs.BOM_UTF16_BE, 'utf-16'))


def is_compressed(path: str) -> bool:
  """Whether Beam reads ``path`` through a decompressor (by its suffix)."""
  return (CompressionTypes.detect_compression_type(path) !=
          CompressionTypes.UNCOMPRESSED)


def format_from_extension(path: str) -> Optional[str]:
  """The input format a file name says (compression suffix ignored), if any."""
  name = path.lower()
  if is_compressed(name):
    name = posixpath.splitext(name)[0]
  for ext, fmt in _EXTENSIONS.items():
    if name.endswith(ext):
      return fmt
  return None


def input_format_of(path: str) -> str:
  """Guesses an input format from a file name; unknown names are text."""
  return format_from_extension(path) or 'text'


def wide_encoding(head: bytes) -> Optional[str]:
  """``utf-16`` or ``utf-32`` when ``head`` starts with their BOM, else None."""
  for bom, encoding in _WIDE_BOMS:
    if head.startswith(bom):
      return encoding
  return None
