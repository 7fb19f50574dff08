# The image of the compose stack's `trainer` (the MLX demo run) and
# `alert-sink` services: mlx_otel with MLX's CPU build.
#   docker build -t mlx-otel .
#   docker run --rm -p 127.0.0.1:9464:9464 mlx-otel demo --host 0.0.0.0
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Metadata first, so editing code does not invalidate the dependency layer.
COPY pyproject.toml README.md hatch_build.py docker-compose.yml ./
COPY mlx_otel ./mlx_otel
# The monitoring files the wheel carries (hatch_build.py puts them in).
COPY prometheus ./prometheus
COPY grafana ./grafana
COPY docs/runbooks.md ./docs/runbooks.md
RUN pip install ".[charts]"

# Run as an unprivileged user; demo outputs go to a volume it owns.
# /secrets: where `alert-sink --create-token` writes its token (a volume).
RUN groupadd --gid 10001 mlx \
    && useradd --create-home --uid 10001 --gid 10001 mlx \
    && mkdir -p /outputs /secrets \
    && chown mlx:mlx /outputs /secrets
USER mlx
WORKDIR /outputs

EXPOSE 9464 9095
ENTRYPOINT ["mlx-otel"]
CMD ["demo", "--host", "0.0.0.0", "--port", "9464", "--output-dir", "/outputs"]
