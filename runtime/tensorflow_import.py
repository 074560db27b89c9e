"""Imports TensorFlow for scoring without the Keras import it drags along.

``import tensorflow`` (2.16 and later) ends with an eager import of Keras'
optimizers "so that SavedModel registrations happen", and Keras 3 in turn
imports matplotlib, pyarrow and its whole layer library. Scoring needs none
of it: a bundle's SavedModel is loaded with ``tf.saved_model.load`` and holds
no Keras optimizer. Measured on the project's 2-core machine, a bare
``import tensorflow`` took 6.5 to 7.6 s and this import 3.4 to 4.3 s; every
scoring process (each Beam worker) pays it once.

TensorFlow wraps that eager import in ``try/except ImportError``, so marking
the module as absent for the duration of the import skips it. The mark is
removed afterwards: ``tf.keras`` and ``import keras`` still work later, they
just load Keras when first used. When Keras is already loaded (a process that
trains or imports a model) nothing is changed.

Python's cyclic garbage collector is paused for the import as well. The
import creates some 200,000 objects that live as long as the process, and
each time the collector's thresholds trip it walks all that have piled up so
far: on the project's 2-core machine the import took 4.9 to 5.5 s with the
collector running and 3.6 to 3.8 s with it paused (after Beam's import, four
runs each). Nothing is leaked: the collector resumes afterwards and collects
whatever cycles the import left.
"""

import logging
import sys
import threading
from types import ModuleType
from typing import Optional

from runtime import collector
from runtime.internals import EAGER_KERAS_MODULES

_LOGGER = logging.getLogger(__name__)

_LOCK = threading.Lock()
# The module once imported: callers on hot paths (one TFRecord example per
# record) then take no lock.
_imported: Optional[ModuleType] = None


def import_tensorflow() -> ModuleType:
  """Returns the ``tensorflow`` module, imported without Keras if need be."""
  global _imported  # pylint: disable=global-statement
  if _imported is not None:
    return _imported
  with _LOCK:
    if 'tensorflow' in sys.modules:
      # Imported already (or being imported by another thread: the import
      # statement waits for it).
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      _imported = tf
      return tf
    blocked = [name for name in EAGER_KERAS_MODULES
               if name.split('.')[0] not in sys.modules and
               name not in sys.modules]
    for name in blocked:
      sys.modules[name] = None  # type: ignore[assignment]
    try:
      with collector.paused():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
    finally:
      for name in blocked:
        if name in sys.modules and sys.modules[name] is None:
          del sys.modules[name]
    _LOGGER.debug('Imported TensorFlow %s without %s', tf.__version__,
                  ', '.join(blocked) or 'changes')
    _imported = tf
    return tf
