"""An in-memory Beam filesystem for tests, shaped like an object store.

``memfs://`` paths have no directories (as on gs://): it lets the tests prove
that bundles and corpora are read and written only through Beam's
filesystems. Importing this module registers the scheme with Beam.
"""

import io
import threading
import time

from apache_beam.io.filesystem import (BeamIOError, FileMetadata, FileSystem)

_FILES: dict[str, tuple[bytes, float]] = {}
_LOCK = threading.Lock()


class _Writer(io.BytesIO):
  def __init__(self, path: str):
    super().__init__()
    self._path = path

  def close(self):
    if not self.closed:
      with _LOCK:
        _FILES[self._path] = (self.getvalue(), time.time())
    super().close()


class MemoryFileSystem(FileSystem):
  """A dict-backed Beam ``FileSystem`` for the ``memfs`` scheme."""
  @classmethod
  def scheme(cls):
    return 'memfs'

  def join(self, basepath, *paths):
    return '/'.join([basepath.rstrip('/')] + [p.strip('/') for p in paths])

  def split(self, path):
    head, _, tail = path.rstrip('/').rpartition('/')
    return head, tail

  def mkdirs(self, path):
    pass

  def has_dirs(self):
    return False

  def _list(self, dir_or_prefix):
    with _LOCK:
      items = list(_FILES.items())
    for path, (data, updated) in items:
      if path.startswith(dir_or_prefix):
        yield FileMetadata(path, len(data), updated)

  def create(self, path, mime_type='application/octet-stream',
             compression_type=None):
    return _Writer(path)

  def open(self, path, mime_type='application/octet-stream',
           compression_type=None):
    with _LOCK:
      if path not in _FILES:
        raise BeamIOError('open failed', {path: FileNotFoundError(path)})
      return io.BytesIO(_FILES[path][0])

  def copy(self, source_file_names, destination_file_names):
    with _LOCK:
      for src, dst in zip(source_file_names, destination_file_names):
        _FILES[dst] = (_FILES[src][0], time.time())

  def rename(self, source_file_names, destination_file_names):
    with _LOCK:
      for src, dst in zip(source_file_names, destination_file_names):
        _FILES[dst] = (_FILES.pop(src)[0], time.time())

  def exists(self, path):
    with _LOCK:
      return path in _FILES

  def size(self, path):
    return len(_FILES[path][0])

  def last_updated(self, path):
    return _FILES[path][1]

  def checksum(self, path):
    return str(hash(_FILES[path][0]))

  def metadata(self, path):
    data, updated = _FILES[path]
    return FileMetadata(path, len(data), updated)

  def delete(self, paths):
    with _LOCK:
      for path in paths:
        prefix = path.rstrip('/') + '/'
        for key in [k for k in _FILES if k == path or k.startswith(prefix)]:
          del _FILES[key]


def put(path: str, data: bytes) -> None:
  with _LOCK:
    _FILES[path] = (data, time.time())


def get(path: str) -> bytes:
  with _LOCK:
    return _FILES[path][0]


def paths(prefix: str) -> list[str]:
  with _LOCK:
    return sorted(k for k in _FILES if k.startswith(prefix))


def upload_tree(local_dir: str, remote: str) -> None:
  """Copies a local directory tree to ``remote`` (a ``memfs://`` path)."""
  import os  # pylint: disable=import-outside-toplevel
  for root, _, files in os.walk(local_dir):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, local_dir).replace(os.sep, '/')
      with open(path, 'rb') as f:
        put(f'{remote}/{rel}', f.read())
