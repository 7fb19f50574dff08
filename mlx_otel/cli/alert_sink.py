"""``mlx-otel alert-sink``: receive Alertmanager's notifications, print them, forward them to WandB.

    mlx-otel alert-sink --port 9095
    mlx-otel alert-sink --host 0.0.0.0 --bearer-token-file secrets/alert_sink_token

Secrets never travel on the command line (``ps`` shows it to every user):
the token and the basic-auth password come from a file or from the
environment (``MLX_OTEL_ALERT_SINK_TOKEN``, ``MLX_OTEL_ALERT_SINK_PASSWORD``).
Alertmanager presents the same token with ``http_config: authorization:
credentials_file:`` (the shipped prometheus/alertmanager.yml does).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from mlx_otel.assets.stack import ensure_token_file
from mlx_otel.cli.options import port
from mlx_otel.config import ALERT_SINK_PASSWORD_VARIABLE, ALERT_SINK_TOKEN_VARIABLE
from mlx_otel.errors import ConfigError, MlxOtelError
from mlx_otel.integrations.alert_sink import AlertSink

__all__ = ["add_parser", "run_alert_sink"]


def add_parser(subparsers: Any) -> None:
    """Register ``alert-sink`` on an argparse subparsers object.

    >>> parser = argparse.ArgumentParser(prog="mlx-otel")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["alert-sink", "--port", "0"]).port
    0
    """
    p = subparsers.add_parser(
        "alert-sink",
        help="receive Alertmanager notifications: print them, forward them to WandB",
        description=(
            "Serve an Alertmanager webhook receiver on http://HOST:PORT/alerts. Each alert "
            "is printed with its time of receipt; with --wandb, firing alerts also become "
            "WandB alerts. Runs until Ctrl-C or SIGTERM. With a bearer token or basic auth, "
            "posts without them are refused (401)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=9095, help="port (default 9095; 0 = free)")
    p.add_argument(
        "--wandb",
        choices=("offline", "online", "disabled"),
        default="disabled",
        help="forward firing alerts as WandB alerts (default disabled)",
    )
    p.add_argument("--wandb-project", default="mlx-otel-alerts", help="WandB project")
    p.add_argument("--run-name", default="alert-sink", help="WandB run name")
    auth = p.add_argument_group("authentication (secrets from files or the environment)")
    auth.add_argument(
        "--bearer-token-file",
        type=Path,
        metavar="FILE",
        help=f"posts must carry the token in FILE (or in ${ALERT_SINK_TOKEN_VARIABLE})",
    )
    auth.add_argument(
        "--create-token",
        action="store_true",
        help="with --bearer-token-file: write a new random token there if it does not exist "
        "(readable by its owner and group, for a receiver run with that group)",
    )
    auth.add_argument("--basic-auth-user", metavar="USER", help="accept basic auth as USER")
    auth.add_argument(
        "--basic-auth-password-file",
        type=Path,
        metavar="FILE",
        help=f"the basic-auth password (or ${ALERT_SINK_PASSWORD_VARIABLE})",
    )
    auth.add_argument("--certfile", type=Path, metavar="PEM", help="serve https with this certificate")
    auth.add_argument("--keyfile", type=Path, metavar="PEM", help="the certificate's private key")
    p.set_defaults(func=run_alert_sink)


def _read_secret(path: Path, what: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"the {what} file {path} is empty")
    return value


def _credentials(args: argparse.Namespace) -> tuple[str | None, tuple[str, str] | None]:
    """(bearer token, basic auth) from the flags' files and the environment."""
    token = None
    if args.bearer_token_file is not None:
        if args.create_token:
            # Group-readable: in compose, Alertmanager reads it as a member of the group.
            token = ensure_token_file(args.bearer_token_file, mode=0o640)
        else:
            token = _read_secret(args.bearer_token_file, "bearer token")
    elif args.create_token:
        raise ConfigError("--create-token needs --bearer-token-file FILE (where to write it)")
    elif os.environ.get(ALERT_SINK_TOKEN_VARIABLE, "").strip():
        token = os.environ[ALERT_SINK_TOKEN_VARIABLE].strip()
    basic = None
    if args.basic_auth_password_file is not None:
        password: str | None = _read_secret(args.basic_auth_password_file, "password")
    else:
        password = os.environ.get(ALERT_SINK_PASSWORD_VARIABLE) or None
    if args.basic_auth_user is not None:
        if password is None:
            raise ConfigError(
                f"--basic-auth-user needs a password: --basic-auth-password-file FILE or "
                f"${ALERT_SINK_PASSWORD_VARIABLE}"
            )
        basic = (args.basic_auth_user, password)
    elif args.basic_auth_password_file is not None:
        raise ConfigError("--basic-auth-password-file needs --basic-auth-user USER")
    if args.keyfile is not None and args.certfile is None:
        raise ConfigError("--keyfile needs --certfile: TLS needs the certificate")
    return token, basic


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_alert_sink(args: argparse.Namespace) -> int:
    """Run the sink of ``mlx-otel alert-sink`` until Ctrl-C or SIGTERM; the exit code."""
    try:
        token, basic = _credentials(args)
    except MlxOtelError as exc:
        print(f"mlx-otel alert-sink: {exc}", file=sys.stderr)
        return 2
    if token is None and basic is None and not _is_loopback(args.host):
        print(
            f"mlx-otel alert-sink: warning: listening on {args.host} without credentials; "
            "anyone who reaches the port can post alerts (use --bearer-token-file)",
            file=sys.stderr,
        )
    logger: Any = None
    if args.wandb != "disabled":
        from mlx_otel.integrations.wandb_bridge import EnhancedWandBLogger

        logger = EnhancedWandBLogger(
            project=args.wandb_project, name=args.run_name, mode=args.wandb
        )
    try:
        sink = AlertSink(
            args.host, args.port, wandb_logger=logger, bearer_token=token, basic_auth=basic,
            certfile=args.certfile, keyfile=args.keyfile,
        )  # fmt: skip
        sink.start()
    except (OSError, ValueError) as exc:
        print(
            f"mlx-otel alert-sink: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        if logger is not None:
            logger.finish()
        return 2
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # Docker and systemd stop with SIGTERM; treat it like Ctrl-C.
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    needs = " (credentials required)" if sink.authenticated else ""
    print(f"mlx-otel alert-sink: receiving Alertmanager webhooks at {sink.url}{needs}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sink.stop()
        if logger is not None:
            logger.finish()
    print("mlx-otel alert-sink: stopped", flush=True)
    return 0
