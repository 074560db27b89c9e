"""Runnable pipelines: ``pipeline.score``, ``pipeline.train`` and their
file formats. Nothing imports from this package."""
