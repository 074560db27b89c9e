"""What only a job on this machine needs.

`machine` holds the cores and the local-workers rule (standard library
only); `scaling` plans a job's workers, TensorFlow threads and ranges;
`warm_workers` starts the DirectRunner's worker processes ahead of the job;
`processes` finds them; `watchdog` keeps a dead worker from hanging a run.
"""
