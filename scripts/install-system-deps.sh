#!/usr/bin/env bash
# Installs the binaries the tests run for real: Prometheus (with promtool),
# Alertmanager, the Pushgateway, and openssl for a test certificate.
# Debian/Ubuntu: apt-get; macOS: Homebrew.
set -euo pipefail

have_all() {
  command -v openssl >/dev/null && command -v prometheus >/dev/null && command -v promtool >/dev/null &&
    { command -v alertmanager >/dev/null || command -v prometheus-alertmanager >/dev/null; } &&
    { command -v pushgateway >/dev/null || command -v prometheus-pushgateway >/dev/null; }
}

if have_all; then
  echo "system deps: prometheus, promtool, alertmanager, pushgateway and openssl are installed"
  exit 0
fi

if command -v apt-get >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "system deps: installing prometheus and prometheus-alertmanager with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager prometheus-pushgateway openssl >/dev/null
elif command -v brew >/dev/null; then
  echo "system deps: installing prometheus and alertmanager with Homebrew"
  brew install prometheus alertmanager pushgateway openssl
else
  cat >&2 <<'MSG'
system deps: cannot install automatically on this system.
Install these and put them on PATH, then run `make test` again:
  - prometheus and promtool (https://prometheus.io/download/#prometheus)
  - alertmanager            (https://prometheus.io/download/#alertmanager)
  - pushgateway             (https://prometheus.io/download/#pushgateway)
  - openssl (the tests make a self-signed certificate for the TLS endpoint)
MSG
  exit 1
fi

if ! have_all; then
  echo "system deps: installation finished but a binary is still missing from PATH" >&2
  exit 1
fi
echo "system deps: ok"
