"""The background worker and the sinks it feeds (statistics, files, WandB, charts).

The training thread hands plain records to the worker; sinks turn batches of
them into statistics, files and WandB calls, off the training thread.
"""
