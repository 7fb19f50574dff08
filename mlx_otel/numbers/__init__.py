"""Plain numbers: statistics, memory snapshots and leak detection, gradient norms.

No exporter, no WandB, no charts: everything here can be used and tested on
its own. The exporter and the pipeline consume what these modules compute.
"""
