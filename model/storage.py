"""Bundle I/O through ``apache_beam.io.filesystems`` only.

Bundles live on local disk, gs:// or hdfs://; workers must never read the
submitting machine's disk with ``open()``. TensorFlow needs a local directory
to load a SavedModel from any Beam filesystem, so whole directories are copied
to a local temporary directory and back.
"""

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from typing import Iterator

from apache_beam.io.filesystems import FileSystems

_LOGGER = logging.getLogger(__name__)
_CHUNK = 1 << 20


def read_bytes(path: str) -> bytes:
  """Reads a whole file from any Beam filesystem."""
  with FileSystems.open(path) as f:
    return f.read()


def _make_parent(path: str) -> None:
  parent, _ = FileSystems.split(path)
  if parent and not FileSystems.exists(parent):
    try:
      FileSystems.mkdirs(parent)
    except IOError:
      pass  # Object stores have no directories; a race with another writer.


def write_bytes(path: str, data: bytes) -> None:
  """Writes a whole file to any Beam filesystem, creating its directory."""
  _make_parent(path)
  with FileSystems.create(path) as f:
    f.write(data)


def list_tree(root: str) -> list[str]:
  """Relative paths (with ``/``) of all files below ``root``, sorted."""
  root = root.rstrip('/')
  results = FileSystems.match([FileSystems.join(root, '**')])[0].metadata_list
  rels = []
  for meta in results:
    rel = meta.path[len(root):].lstrip('/').replace(os.sep, '/')
    if rel:
      rels.append(rel)
  return sorted(rels)


def copy_tree_file(src: str, dst: str, rel: str) -> None:
  """Copies ``src/rel`` to ``dst/rel`` (``rel`` uses ``/``)."""
  parts = rel.split('/')
  target = FileSystems.join(dst, *parts)
  _make_parent(target)
  with FileSystems.open(FileSystems.join(src, *parts)) as fin:
    with FileSystems.create(target) as fout:
      while True:
        chunk = fin.read(_CHUNK)
        if not chunk:
          break
        fout.write(chunk)


def copy_tree(src: str, dst: str) -> None:
  """Copies every file below ``src`` to the same place below ``dst``."""
  for rel in list_tree(src):
    copy_tree_file(src, dst, rel)


def tree_sha256(root: str) -> str:
  """A checksum of every file's relative path and content below ``root``."""
  digest = hashlib.sha256()
  for rel in list_tree(root):
    digest.update(rel.encode('utf-8') + b'\0')
    with FileSystems.open(FileSystems.join(root, *rel.split('/'))) as f:
      file_digest = hashlib.sha256()
      while True:
        chunk = f.read(_CHUNK)
        if not chunk:
          break
        file_digest.update(chunk)
    digest.update(file_digest.digest())
  return digest.hexdigest()


def remove_tree(path: str) -> None:
  """Deletes everything below ``path`` (object stores have no directories
  to delete, so the files are listed and deleted one by one)."""
  files = [FileSystems.join(path, *rel.split('/')) for rel in list_tree(path)]
  if files:
    FileSystems.delete(files)
  if FileSystems.exists(path):
    FileSystems.delete([path])


@contextlib.contextmanager
def local_copy(path: str, *, directory: bool = False) -> Iterator[str]:
  """Gives a local path holding ``path`` (a file, or a directory tree).

  Local paths are used in place; anything else is copied through Beam's
  filesystems to a temporary directory, removed on exit. A copied file keeps
  its name, whose suffix may tell its format.
  """
  if '://' not in path:
    yield path
    return
  tmp = tempfile.mkdtemp(prefix='local-copy-')
  try:
    _LOGGER.info('Copying %s to %s', path, tmp)
    if directory:
      copy_tree(path, tmp)
      yield tmp
    else:
      parent, name = FileSystems.split(path)
      copy_tree_file(parent, tmp, name)
      yield os.path.join(tmp, name)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
