"""Bundles and model files on a non-local Beam filesystem (``memfs://``)."""

import os

import numpy as np
import pytest

import tests.memfs as memfs
from model import storage
from model.bundle import load_bundle


def test_bundle_loads_and_scores_from_a_remote_filesystem(trained_bundle):
  remote = 'memfs://bucket/bundles/trained'
  memfs.upload_tree(trained_bundle.path, remote)
  bundle = load_bundle(remote)  # checksums, probe: all through Beam
  assert bundle.vocabulary.tokens == trained_bundle.vocabulary.tokens
  ids = np.arange(1, 30, dtype=np.int32)[None, :]
  np.testing.assert_array_equal(bundle.load_signature()(ids),
                                trained_bundle.load_signature()(ids))


@pytest.mark.slow
def test_import_writes_a_bundle_to_a_remote_filesystem(classic, wakati):
  remote = 'memfs://bucket/imported'
  with open(classic.h5_path, 'rb') as f:
    memfs.put('memfs://bucket/src/classic.h5', f.read())
  with open(classic.tokenizer_path, 'rb') as f:
    memfs.put('memfs://bucket/src/tokenizer.json', f.read())
  from model.import_keras import import_keras_model
  bundle = import_keras_model('memfs://bucket/src/classic.h5',
                              'memfs://bucket/src/tokenizer.json', remote,
                              maxlen=classic.maxlen)
  written = memfs.paths(remote + '/')
  assert f'{remote}/manifest.json' in written
  assert f'{remote}/saved_model/saved_model.pb' in written
  text = '猫が日なたで眠っている。'
  ids, _ = bundle.vocabulary.lookup(bundle.tokenizer.words(wakati(text)))
  reloaded = load_bundle(remote)
  np.testing.assert_allclose(reloaded.load_signature()(reloaded.pad([ids])),
                             classic.predict([text]), atol=1e-5)
  # Overwriting replaces every file, also on a store without directories.
  memfs.put(f'{remote}/stale.txt', b'old')
  import_keras_model('memfs://bucket/src/classic.h5',
                     'memfs://bucket/src/tokenizer.json', remote,
                     maxlen=classic.maxlen, overwrite=True)
  assert f'{remote}/stale.txt' not in memfs.paths(remote + '/')


def test_tree_checksum_sees_every_file(tmp_path):
  root = 'memfs://bucket/tree'
  memfs.put(f'{root}/a.txt', b'1')
  memfs.put(f'{root}/d/b.txt', b'2')
  first = storage.tree_sha256(root)
  assert storage.list_tree(root) == ['a.txt', 'd/b.txt']
  memfs.put(f'{root}/d/b.txt', b'3')
  assert storage.tree_sha256(root) != first
  with storage.local_copy(root, directory=True) as local:
    with open(os.path.join(local, 'd', 'b.txt'), 'rb') as f:
      assert f.read() == b'3'
