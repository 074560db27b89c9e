"""Packaging for the Japanese document scorer.

Also the ``--setup_file`` Beam stages to Dataflow and portable runners: the
packages ``model``, ``transforms`` and ``pipeline`` reach the workers with
their dependencies.
"""

import setuptools

REQUIRED = [
    # tfrecord: the CRC library Beam's TFRecord sink needs (--format tfrecord).
    'apache-beam[tfrecord]>=2.77.0,<3',
    'tensorflow>=2.20,<2.22',
    'mecab-python3>=1.0.6,<2',
    'unidic-lite>=1.0.8,<2',
    'gensim>=4.3,<5',
    'numpy>=1.26,<3',
]

setuptools.setup(
    name='ja-doc-scorer',
    version='0.1.0',
    description='Score Japanese documents at scale with a masked '
    'Embedding->LSTM->Dense Keras model on Apache Beam.',
    packages=['model', 'transforms', 'pipeline'],
    python_requires='>=3.10',
    install_requires=REQUIRED,
    extras_require={
        'test': ['tf-keras>=2.20,<2.22', 'pytest>=8'],
        # The benchmark's baseline is the classic tf-keras pipeline; its
        # plot needs matplotlib.
        'bench': ['tf-keras>=2.20,<2.22', 'matplotlib>=3.8'],
        'gcp': ['apache-beam[gcp]>=2.77.0,<3'],
    },
    entry_points={
        # Namespaced only: a bare `import` would shadow ImageMagick's tool.
        'console_scripts': [
            'ja-doc-score = pipeline.score:main',
            'ja-doc-train = model.train:main',
            'ja-doc-import = model.import_keras:main',
        ],
    },
)
