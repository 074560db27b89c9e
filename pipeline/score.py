"""``python -m pipeline.score``: the scoring command (`pipeline.cli.score`).

Nothing is imported before the command line is read: local worker processes
start warming first (`pipeline.cli.entry_points.score`).
"""

if __name__ == '__main__':
  from pipeline.cli import entry_points
  entry_points.score()
