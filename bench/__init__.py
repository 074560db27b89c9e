"""The benchmark: this project's scorer against the classic Keras scoring.

It lives beside its results (``bench/results``), outside the packages users
install: setup.py does not ship it. Run it from the repository root with
``python -m bench.run`` (see `bench.run`).
"""
