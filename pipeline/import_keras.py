"""``python -m pipeline.import_keras``: the import command
(`pipeline.cli.import_model`)."""

if __name__ == '__main__':
  from pipeline.cli import entry_points
  entry_points.import_keras()
