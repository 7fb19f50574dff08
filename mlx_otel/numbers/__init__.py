"""Plain numbers: statistics, memory figures and leak detection, gradient norms.

No exporter, no WandB, no charts, no reading of the machine (psutil, MLX's
memory counters live with the exporter): everything here can be used and
tested on figures given to it. The exporter and the pipeline consume what
these modules compute.
"""
