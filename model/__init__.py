"""Model bundles for the masked Embedding -> LSTM -> Dense document scorer.

Everything that decides a document's scores lives here, with no Beam in it
except Beam's filesystems for I/O: the text rules (MeCab segmentation and the
Keras-compatible tokenizer), the network, training, importing, and the bundle
format that carries all of it from training to scoring.
"""

# First: model.console drops Beam's notices before model.bundle imports Beam.
from model import console  # pylint: disable=unused-import
from model.bundle import Bundle, BundleError, load_bundle
from model.text import Segmenter, TokenizerConfig, Vocabulary

__all__ = [
    'Bundle', 'BundleError', 'load_bundle', 'Segmenter', 'TokenizerConfig',
    'Vocabulary'
]
