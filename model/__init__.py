"""Model bundles for the masked Embedding -> LSTM -> Dense document scorer.

Everything that decides a document's scores lives here, with no Beam in it
except Beam's filesystems for I/O: the text rules (MeCab segmentation and the
Keras-compatible tokenizer), the network, training, importing, and the bundle
format that carries all of it from training to scoring. It imports nothing
of `transforms` or `pipeline`; process plumbing it needs (TensorFlow's
import) comes from `runtime`.
"""

# First: the console drops Beam's import notices before model.bundle imports
# Beam (the ``python -m model.*`` commands run through here).
from runtime import console  # pylint: disable=unused-import  # isort: skip
from model.bundle import Bundle, BundleError, load_bundle
from model.text import Segmenter, TokenizerConfig, Vocabulary

__all__ = [
    'Bundle', 'BundleError', 'load_bundle', 'Segmenter', 'TokenizerConfig',
    'Vocabulary'
]
