"""OpenTelemetry provider, instruments built from the catalogue, and where they go.

Every instrument is built from the catalogue (``instruments.py``) and read
at collection time from the part that holds its value; MLX and psutil are
read here too (``mlx_memory.py``, ``memory_readings.py``). The Prometheus
scrape endpoint (TLS, basic auth), the Pushgateway push, OTLP and file_sd
registration live here; nothing here knows of WandB or charts.
"""
