"""The commands: options, the checks before any work, the job, the summary.

`score`, `train` and `import_model` are the commands; `arguments` holds the
strict command-line rules they share, `options` the scoring command's
options, `preflight` the checks, `job` the scoring job's steps, `summary`
``_SUMMARY.json`` and `entry_points` the console scripts.
"""

# Before any command imports Beam: the console drops Beam's import notices.
from runtime import console as _console  # pylint: disable=unused-import  # isort: skip
