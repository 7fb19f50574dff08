"""OpenTelemetry provider, instruments bound from the catalogue, and where they go.

The Prometheus scrape endpoint (TLS, basic auth), the Pushgateway push, OTLP
and file_sd registration live here; nothing here knows of WandB or charts.
"""
