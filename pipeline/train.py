"""``python -m pipeline.train``: the training command (see `model.train`).

Training reads one file and fits one model, which needs no Beam; it lives in
`model.train` so that ``model/`` stays free of pipelines. This entry point
keeps the commands together under ``pipeline/``.
"""

import sys

from model.train import main

if __name__ == '__main__':
  sys.exit(main())
