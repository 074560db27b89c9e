"""TensorFlow imported for scoring without Keras, in fresh processes."""

import json
import subprocess
import sys

import numpy as np
import pytest

_PROBE = r'''
import json, sys
import numpy as np
PRELOAD
from model.bundle import load_bundle
bundle = load_bundle(sys.argv[1])
ids = np.asarray(json.loads(sys.argv[2]), np.int32)
scores = bundle.load_signature()(ids)
keras_after_scoring = 'keras' in sys.modules
import tensorflow as tf
layer = tf.keras.layers.Dense(2)  # Keras still loads when asked for
print(json.dumps({'scores': scores.tolist(),
                  'keras_after_scoring': keras_after_scoring,
                  'optimizers': 'keras.src.optimizers' in sys.modules,
                  'blocked': [k for k, v in sys.modules.items() if v is None
                              and 'optimizers' in k],
                  'dense': type(layer).__name__}))
'''

# Each import is a fresh process.
pytestmark = pytest.mark.slow


def _run(bundle_path, ids, preload=''):
  out = subprocess.run(
      [sys.executable, '-c', _PROBE.replace('PRELOAD', preload), bundle_path,
       json.dumps(ids)], capture_output=True, text=True, check=False,
      timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def ids(trained_bundle):
  size = trained_bundle.vocabulary.size
  return [[1, 2, 3, size, 0, 0], [size, 7, 1, 1, 1, 5]]


def test_scoring_does_not_load_keras_and_scores_the_same(trained_bundle, ids):
  fresh = _run(trained_bundle.path, ids)
  assert fresh['keras_after_scoring'] is False
  assert fresh['blocked'] == []  # the mark is gone after the import
  assert fresh['optimizers'] and fresh['dense'] == 'Dense'
  expected = trained_bundle.load_signature()(np.asarray(ids, np.int32))
  np.testing.assert_array_equal(np.asarray(fresh['scores'], np.float32),
                                expected)


def test_a_process_that_loaded_keras_first_keeps_it(trained_bundle, ids):
  with_keras = _run(trained_bundle.path, ids, preload='import keras')
  assert with_keras['keras_after_scoring'] and with_keras['optimizers']
  assert with_keras['blocked'] == []
  np.testing.assert_array_equal(
      np.asarray(with_keras['scores'], np.float32),
      trained_bundle.load_signature()(np.asarray(ids, np.int32)))


_GC_PROBE = r'''
import gc, json
import apache_beam  # What a scoring process has imported before TensorFlow.
from runtime.tensorflow_import import import_tensorflow
started = []
gc.callbacks.append(
    lambda phase, info: phase == 'start' and started.append(info))
CALLER
import_tensorflow()
print(json.dumps({'collections': len(started), 'enabled': gc.isenabled()}))
'''


@pytest.mark.parametrize('caller,enabled', [('', True),
                                            ('gc.disable()', False)])
def test_the_collector_pauses_for_the_import_only(caller, enabled):
  """No automatic collection walks TensorFlow's import (they made it 1.5 s
  slower; unpaused, the import starts hundreds of them), at most the one that
  the first allocation after it starts; the caller's collector state is
  restored."""
  out = subprocess.run(
      [sys.executable, '-c', _GC_PROBE.replace('CALLER', caller)],
      capture_output=True, text=True, check=False, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  probe = json.loads(out.stdout.strip().splitlines()[-1])
  assert probe['collections'] <= 1 and probe['enabled'] == enabled, probe
