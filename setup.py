"""Packaging for the Japanese document scorer.

Also the ``--setup_file`` Beam stages to Dataflow and portable runners: the
packages ``runtime``, ``model``, ``transforms`` and ``pipeline`` (with their
sub-packages, found by `find_packages`) reach the workers with their
dependencies.
"""

import setuptools

# Flink and Spark (pipeline/job_servers.py): Maven fetches Beam's job server
# for this apache-beam (beam-runners-flink-1.19-job-server:<version>,
# beam-runners-spark-3-job-server:<version>) where the registry serves it.
# Where it does not (for 2.77.0 the project's registry serves neither jar),
# the job server is assembled from Beam Java 2.62.0's runner artifacts: the
# newest release whose Flink runner and job service both resolve there.
# Python SDK 2.77 with Java job servers 2.62 passes the Flink and Spark
# tests: the two sides speak Beam's portable job and Fn APIs. Flink is 1.19,
# not 2.x: file sinks finalize through side inputs, which failed on Flink 2's
# batch path (apache/beam#37583) and are rebuilt over and over there
# (#39866).
REQUIRED = [
    # tfrecord: the CRC library Beam's TFRecord sink needs (--format tfrecord).
    'apache-beam[tfrecord]>=2.77.0,<3',
    'tensorflow>=2.20,<2.22',
    'mecab-python3>=1.0.6,<2',
    'unidic-lite>=1.0.8,<2',
    'gensim>=4.3,<5',
    'numpy>=1.26,<3',
    # The local jobs' worker processes: found, counted and stopped.
    'psutil>=5.9',
]

setuptools.setup(
    name='ja-doc-scorer',
    version='0.1.0',
    description='Score Japanese documents at scale with a masked '
    'Embedding->LSTM->Dense Keras model on Apache Beam.',
    packages=setuptools.find_packages(
        include=['runtime', 'runtime.*', 'model', 'model.*', 'transforms',
                 'transforms.*', 'pipeline', 'pipeline.*']),
    python_requires='>=3.10',
    install_requires=REQUIRED,
    extras_require={
        # ReadFromCsv and beam.dataframe (pandas): the ETL example and tests.
        'etl': ['apache-beam[dataframe]>=2.77.0,<3'],
        # Reading the outputs with pandas (pyarrow comes with Beam): the
        # pandas version Beam's dataframe support works with.
        'pandas': ['apache-beam[dataframe]>=2.77.0,<3'],
        # import-linter: the layering contract in .importlinter.
        # apache-beam[gcp] and gcp-storage-emulator: gs:// on a local GCS
        # emulator and Dataflow's dry run (tests/pipeline/test_gcs.py,
        # test_dataflow.py, tests/clusters/gcs.py).
        'test': ['tf-keras>=2.20,<2.22', 'pytest>=8', 'hypothesis>=6.100',
                 'apache-beam[dataframe]>=2.77.0,<3', 'import-linter>=2.1',
                 'apache-beam[gcp]>=2.77.0,<3',
                 'gcp-storage-emulator>=2026.7'],
        # The benchmark's baseline is the classic tf-keras pipeline; its
        # plot needs matplotlib.
        'bench': ['tf-keras>=2.20,<2.22', 'matplotlib>=3.8'],
        # gs:// paths and --runner DataflowRunner.
        'gcp': ['apache-beam[gcp]>=2.77.0,<3'],
    },
    entry_points={
        # Namespaced only: a bare `import` would shadow ImageMagick's tool.
        'console_scripts': [
            'ja-doc-score = pipeline.cli.entry_points:score',
            'ja-doc-train = pipeline.cli.entry_points:train',
            'ja-doc-import = pipeline.cli.entry_points:import_keras',
        ],
    },
)
