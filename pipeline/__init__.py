"""Runnable scoring and training jobs on Apache Beam, in rooms by concern.

* `pipeline.cli`: the commands (score, train, import), their options, the
  checks before any work, the summary.
* `pipeline.io`: formats, readers, writers, kept fields, and the output
  folder (names, set-aside, restore and clean-up).
* `pipeline.local`: what only a run on this machine needs: the cores, the
  workers rule and plan, warm workers, the watchdog.
* `pipeline.job_servers`: Beam's Flink and Spark job servers.
* `pipeline.progress`: the progress line and the counting steps.

It imports from `transforms`, `model` and `runtime`; nothing imports from
it. The commands: ``python -m pipeline.score``, ``python -m
pipeline.train``, ``python -m pipeline.import_keras``.
"""
