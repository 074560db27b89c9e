"""Real engines the cluster tier and the benchmark start on this machine.

Each module starts one kind of cluster from what the package registries
serve (PyPI, Maven Central), as separate processes on free ports, and stops
it again: `tests.clusters.flink` (a Flink session cluster), `tests.clusters.spark`
(a Spark standalone master and worker), `tests.clusters.gcs` (a GCS emulator);
`tests.clusters.launch` holds what starting any of them takes.
Their logs stay in the folder the caller gives.
"""
