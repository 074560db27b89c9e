"""Beam transforms that score Japanese documents with a model bundle.

``from transforms import ScoreDocuments`` is all a pipeline needs: it takes
``(id, text)`` pairs and returns scored records plus a dead-letter output.
"""

from transforms.handler import BundleModelHandler
from transforms.score import ScoreDocuments, ScoreDocumentsResult
from transforms.tokenize import LookUpTokenIds, SegmentText, TruncateTokenIds

__all__ = [
    'BundleModelHandler', 'LookUpTokenIds', 'ScoreDocuments',
    'ScoreDocumentsResult', 'SegmentText', 'TruncateTokenIds'
]
