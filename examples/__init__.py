"""Examples of using the package; a package so the benchmark can import them.

``examples.make_corpus`` holds the Japanese sentences the benchmark strings
into documents. setup.py does not ship this package.
"""
