"""The background worker, the sinks it feeds (statistics, charts, WandB) and the run's end.

The training thread hands plain records to the worker; sinks turn batches of
them into statistics, charts and WandB calls, off the training thread. The
run's files are written from the statistics (``run_files``), and one end of
run (``run_end``) closes every sink by one deadline.
"""
