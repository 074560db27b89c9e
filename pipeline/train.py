"""``python -m pipeline.train``: the training command (`pipeline.cli.train`)."""

if __name__ == '__main__':
  from pipeline.cli import entry_points
  entry_points.train()
