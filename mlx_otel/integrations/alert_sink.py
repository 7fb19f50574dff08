"""A small webhook receiver for Alertmanager: print alerts, forward them to WandB.

Alertmanager delivers notifications as HTTP POSTs of a JSON document
(webhook format version 4). :class:`AlertSink` accepts them on ``/alerts``
(and ``/``), prints one readable block per alert and, given a WandB logger,
forwards each firing alert as a WandB alert so it shows up next to the run.
It needs nothing beyond the standard library, which makes it a handy
receiver for a laptop, a docker-compose stack or a test::

    from mlx_otel import AlertSink

    with AlertSink(port=9095) as sink:          # Alertmanager posts to sink.url
        ...
        print(sink.notifications)               # every payload received so far

On the command line: ``mlx-otel alert-sink --port 9095 [--wandb offline]``
(:mod:`mlx_otel.cli.alert_sink`).

Whoever can post to the sink writes into the WandB run it forwards to, so
once it listens beyond loopback it should ask for a credential, as the
metrics endpoint does: a bearer token (Alertmanager's ``http_config:
authorization: credentials_file:``) or basic auth (``basic_auth:``), and TLS
with a certificate. A post without them is answered 401 and never read.

A malformed body (not JSON, no ``alerts`` list, wrong types) is answered
with HTTP 400 and a message that says what is wrong; the sink keeps serving.
``GET /healthz`` answers 200 for liveness probes, without credentials (it
tells nothing but that the sink runs).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, TextIO

__all__ = [
    "AlertSink",
    "InvalidPayload",
    "WandbAlerter",
    "format_alert",
    "receipt_time",
    "validate_payload",
    "wandb_level",
]

log = logging.getLogger(__name__)

#: Paths that accept Alertmanager's POSTs.
WEBHOOK_PATHS = ("/alerts", "/")
#: Bodies larger than this are refused: a webhook payload is a few KiB, and
#: Alertmanager truncates groups with ``max_alerts`` long before this.
MAX_BODY_BYTES = 8 * 1024 * 1024
_WANDB_LEVELS = {"critical": "ERROR", "warning": "WARN"}


class WandbAlerter(Protocol):
    """What the sink needs of a WandB logger (``EnhancedWandBLogger`` has it)."""

    def alert(self, title: str, text: str, level: str = ...) -> Any: ...


class InvalidPayload(ValueError):
    """A webhook body that is not an Alertmanager notification; says why."""


def validate_payload(payload: Any) -> dict[str, Any]:
    """Check that ``payload`` has the shape of an Alertmanager webhook notification.

    Only what the sink reads is required: an object with an ``alerts`` list
    of objects whose ``labels`` and ``annotations`` (if present) map strings
    to strings. Unknown fields are allowed, so newer Alertmanagers still work.
    Raises :class:`InvalidPayload` naming the first problem.

    >>> validate_payload({"version": "4", "alerts": [{"labels": {"alertname": "X"}}]})["version"]
    '4'
    """
    if not isinstance(payload, dict):
        raise InvalidPayload(f"the body must be a JSON object, not {type(payload).__name__}")
    if "alerts" not in payload:
        raise InvalidPayload("the body has no 'alerts' list")
    alerts = payload["alerts"]
    if not isinstance(alerts, list):
        raise InvalidPayload(f"'alerts' must be a list, not {type(alerts).__name__}")
    for field in ("status", "version", "receiver", "groupKey", "externalURL"):
        if field in payload and not isinstance(payload[field], str):
            raise InvalidPayload(f"'{field}' must be a string, not {type(payload[field]).__name__}")
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise InvalidPayload(f"alerts[{i}] must be an object, not {type(alert).__name__}")
        if not isinstance(alert.get("labels"), dict):
            raise InvalidPayload(f"alerts[{i}] has no 'labels' object")
        for field in ("labels", "annotations"):
            mapping = alert.get(field, {})
            if not isinstance(mapping, dict):
                raise InvalidPayload(
                    f"alerts[{i}].{field} must be an object, not {type(mapping).__name__}"
                )
            for key, value in mapping.items():
                if not isinstance(value, str):
                    raise InvalidPayload(
                        f"alerts[{i}].{field}.{key} must be a string, not {type(value).__name__}"
                    )
        for field in ("status", "startsAt", "endsAt", "generatorURL", "fingerprint"):
            if field in alert and not isinstance(alert[field], str):
                raise InvalidPayload(
                    f"alerts[{i}].{field} must be a string, not {type(alert[field]).__name__}"
                )
    return payload


def _status(alert: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    # Each alert carries its own status; a group's status is "firing" while
    # any of its alerts fires, so it is only the fallback.
    return str(alert.get("status") or payload.get("status") or "firing").lower()


def format_alert(
    alert: Mapping[str, Any],
    payload: Mapping[str, Any] | None = None,
    *,
    received: str | None = None,
) -> str:
    """One readable block for one alert of a notification (``received``: when it arrived).

    >>> print(format_alert({"status": "firing", "labels": {"alertname": "MLXTrainingStalled",
    ...     "severity": "warning", "run_id": "grpo-1"}, "annotations": {"summary": "Stalled."},
    ...     "startsAt": "2026-11-05T10:00:00Z"}))
    FIRING MLXTrainingStalled
      severity:    warning
      run_id:      grpo-1
      summary:     Stalled.
      description: -
      startsAt:    2026-11-05T10:00:00Z
    """
    labels: Mapping[str, str] = alert.get("labels") or {}
    annotations: Mapping[str, str] = alert.get("annotations") or {}
    status = _status(alert, payload or {})
    lines = [
        f"{status.upper()} {labels.get('alertname', '(no alertname)')}",
        f"  severity:    {labels.get('severity', '-')}",
        f"  run_id:      {labels.get('run_id', '-')}",
        f"  summary:     {annotations.get('summary', '-')}",
        f"  description: {annotations.get('description', '-')}",
        f"  startsAt:    {alert.get('startsAt', '-')}",
    ]
    if status == "resolved" and alert.get("endsAt"):
        lines.append(f"  endsAt:      {alert['endsAt']}")
    if received is not None:
        lines.append(f"  received:    {received}")
    return "\n".join(lines)


def receipt_time(now: datetime | None = None) -> str:
    """The time of receipt as printed: UTC, to the second, in Alertmanager's format.

    >>> receipt_time(datetime(2026, 11, 5, 10, 0, 42, 123456, tzinfo=timezone.utc))
    '2026-11-05T10:00:42Z'
    """
    now = now if now is not None else datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def wandb_level(severity: str | None) -> str:
    """WandB alert level of an alert's ``severity`` label.

    >>> wandb_level("critical"), wandb_level("warning"), wandb_level("info")
    ('ERROR', 'WARN', 'INFO')
    """
    return _WANDB_LEVELS.get((severity or "").lower(), "INFO")


class AlertSink:
    """Receive Alertmanager webhook notifications over HTTP.

    Use it as the receiver of a webhook config
    (``webhook_configs: [{url: http://host:9095/alerts}]``) when you want to
    see alerts in a terminal, keep them in a WandB run, or assert on them in
    a test. ``port=0`` picks a free port; ``.port`` and ``.url`` tell which.

        sink = AlertSink(port=0, wandb_logger=EnhancedWandBLogger(mode="offline")).start()
        ...
        sink.stop()

    Args:
        host: address to bind; 127.0.0.1 keeps it private to this machine.
        port: TCP port; 0 asks the system for a free one.
        wandb_logger: anything with ``.alert(title, text, level)``; each
            firing alert is forwarded to it (its failures are logged, never
            raised into the HTTP handler).
        out: where the readable alert blocks are written.
        bearer_token: posts must carry ``Authorization: Bearer <token>``.
        basic_auth: ``(username, password)`` posts may present instead.
            With neither, anyone who reaches the port may post.
        certfile, keyfile: serve https with this certificate (PEM) and key.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9095,
        *,
        wandb_logger: WandbAlerter | None = None,
        out: TextIO | None = None,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        if bearer_token is not None and not bearer_token.strip():
            raise ValueError("the bearer token is empty")
        if keyfile is not None and certfile is None:
            raise ValueError("keyfile is set but certfile is not: TLS needs the certificate")
        self.host = host
        self._requested_port = int(port)
        self.wandb_logger = wandb_logger
        # Resolved at call time rather than as a default argument, so a
        # redirected or captured sys.stdout is honoured.
        self.out = out if out is not None else sys.stdout
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._notifications: list[dict[str, Any]] = []
        # One condition guards the list and wakes wait_for(); one lock keeps
        # blocks printed by concurrent requests from interleaving.
        self._changed = threading.Condition()
        self._print_lock = threading.Lock()
        self._accepted = _accepted_authorizations(bearer_token, basic_auth)
        self._tls = _server_context(certfile, keyfile) if certfile is not None else None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> AlertSink:
        """Bind the port and serve in a background thread; returns ``self``."""
        if self._server is not None:
            return self
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer((self.host, self._requested_port), handler)
        self._server.daemon_threads = True
        if self._tls is not None:
            self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"alert-sink:{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("alert sink listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port; calling it twice is harmless."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> AlertSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    @property
    def url(self) -> str:
        """The webhook URL to give Alertmanager: ``http(s)://host:port/alerts``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host}:{self.port}/alerts"

    @property
    def authenticated(self) -> bool:
        """Whether posts must carry a credential."""
        return bool(self._accepted)

    def authorizes(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header value lets its request post alerts."""
        if not self._accepted:
            return True
        given = (header or "").strip().encode()
        # Every candidate is compared, so the time taken tells nothing.
        return sum(hmac.compare_digest(given, ok) for ok in self._accepted) > 0

    # ------------------------------------------------------------ received data

    @property
    def notifications(self) -> list[dict[str, Any]]:
        """Every valid payload received so far, oldest first (a copy)."""
        with self._changed:
            return list(self._notifications)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification, each with its own ``status`` set."""
        return [
            {**alert, "status": _status(alert, payload)}
            for payload in self.notifications
            for alert in payload["alerts"]
        ]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any] | None:
        """The first received alert for which ``predicate`` holds, waiting up to ``timeout``.

        ``None`` when none arrived in time. For one alert by name::

            sink.wait_for(lambda a: a["labels"]["alertname"] == "MLXTrainingStalled")
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for payload in self._notifications:
                    for alert in payload["alerts"]:
                        alert = {**alert, "status": _status(alert, payload)}
                        if predicate(alert):
                            return alert
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    # ------------------------------------------------------------ handling

    def handle(self, payload: dict[str, Any]) -> None:
        """Record, print (with the time of receipt) and forward one validated notification."""
        received = receipt_time()
        with self._changed:
            self._notifications.append(payload)
            self._changed.notify_all()
        blocks = [format_alert(alert, payload, received=received) for alert in payload["alerts"]]
        if blocks:
            with self._print_lock:
                try:
                    self.out.write("\n\n".join(blocks) + "\n\n")
                    self.out.flush()
                except (OSError, ValueError) as exc:  # a closed or broken stream
                    log.warning("alert sink could not print an alert: %s", exc)
        if self.wandb_logger is not None:
            for alert in payload["alerts"]:
                if _status(alert, payload) == "firing":
                    self._forward(alert)

    def _forward(self, alert: Mapping[str, Any]) -> None:
        labels: Mapping[str, str] = alert.get("labels") or {}
        annotations: Mapping[str, str] = alert.get("annotations") or {}
        name = labels.get("alertname", "Alert")
        run_id = labels.get("run_id")
        title = f"{name} ({run_id})" if run_id else name
        text = "\n".join(
            part
            for part in (
                annotations.get("summary"),
                annotations.get("description"),
                f"severity: {labels.get('severity', '-')}, since {alert.get('startsAt', '-')}",
                annotations.get("runbook_url"),
            )
            if part
        )
        try:
            assert self.wandb_logger is not None
            self.wandb_logger.alert(title, text, wandb_level(labels.get("severity")))
        except Exception as exc:  # the logger's failure must not cost the notification
            log.warning("alert sink could not forward %s to WandB: %s", title, exc)


def _accepted_authorizations(
    bearer_token: str | None, basic_auth: tuple[str, str] | None
) -> tuple[bytes, ...]:
    """The ``Authorization`` header values that may post (empty: no authentication)."""
    accepted = []
    if bearer_token is not None:
        accepted.append(f"Bearer {bearer_token.strip()}".encode())
    if basic_auth is not None:
        username, password = basic_auth
        if not username or not password:
            raise ValueError("basic auth needs both a username and a password")
        pair = base64.b64encode(f"{username}:{password}".encode()).decode()
        accepted.append(f"Basic {pair}".encode())
    return tuple(accepted)


def _server_context(certfile: Path, keyfile: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return context


def _make_handler(sink: AlertSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mlx-otel-alert-sink"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] in ("/healthz", "/-/healthy", "/-/ready"):
                self._reply(200, {"status": "ok"})
            else:
                self._reply(404, {"error": f"no such path {self.path}; POST alerts to /alerts"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?")[0] not in WEBHOOK_PATHS:
                self._reply(404, {"error": f"no such path {self.path}; POST alerts to /alerts"})
                return
            if not sink.authorizes(self.headers.get("Authorization")):
                # The body is never read: close rather than parse it.
                self.close_connection = True
                self._reply(
                    401,
                    {"error": "this alert sink needs credentials (bearer token or basic auth)"},
                    challenge=True,
                )
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                self._reply(400, {"error": "Content-Length is not a number"})
                return
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._reply(413, {"error": f"body of {length} bytes exceeds {MAX_BODY_BYTES}"})
                return
            body = self.rfile.read(length) if length > 0 else b""
            try:
                payload = validate_payload(json.loads(body.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                self._reply(400, {"error": f"the body is not JSON: {exc}"})
                return
            except InvalidPayload as exc:
                self._reply(400, {"error": str(exc)})
                return
            sink.handle(payload)
            self._reply(200, {"status": "ok", "alerts": len(payload["alerts"])})

        def _reply(
            self, code: int, document: Mapping[str, Any], *, challenge: bool = False
        ) -> None:
            data = (json.dumps(document) + "\n").encode()
            self.send_response(code)
            if challenge:
                self.send_header("WWW-Authenticate", 'Bearer realm="mlx_otel alert sink"')
                self.send_header("WWW-Authenticate", 'Basic realm="mlx_otel alert sink"')
            if self.close_connection:
                self.send_header("Connection", "close")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # The printed alert blocks are the output; access logs are debug.
            log.debug("alert sink %s: " + format, self.address_string(), *args)

    return Handler
