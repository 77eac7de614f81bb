"""The ``etcdlite`` command: etcd's flags, etcd's environment variables, etcd's logs.

Flags parse the way Go's flag package (and so etcd) parses them: ``-name v``,
``--name v``, ``--name=v``; booleans as ``--flag`` or ``--flag=false``. Every flag can also
come from ``ETCD_<FLAG_IN_UPPER_SNAKE>`` (``--data-dir`` <- ``ETCD_DATA_DIR``); a flag on
the command line wins over its variable. Flags etcd has but etcdlite does not implement
yet are accepted with a one-line warning, so existing scripts start; unknown flags are
an error, as in etcd.

Example::

    etcdlite --name n1 --data-dir /tmp/n1.etcd \\
        --listen-client-urls http://127.0.0.1:0 --advertise-client-urls http://127.0.0.1:0
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from etcdlite.server.clock import SystemClock
from etcdlite.server.config import EtcdConfig
from etcdlite.server.log import LEVELS, Logger
from etcdlite.server.runner import ConfigError, Runner
from etcdlite.server.version import ETCD_VERSION, ETCDLITE_VERSION
from etcdlite.storage.dirlock import DirectoryInUse
from etcdlite.storage.errors import StorageError

IMPLEMENTED_VALUE_FLAGS = (
    "name", "data-dir", "listen-client-urls", "advertise-client-urls",
    "initial-advertise-peer-urls", "initial-cluster-token", "max-txn-ops",
    "max-request-bytes", "log-level", "logger", "log-outputs",
    "experimental-watch-progress-notify-interval", "election-timeout", "heartbeat-interval",
    "wal-dir", "snapshot-count", "quota-backend-bytes",
    "auth-token", "auth-token-ttl", "bcrypt-cost", "cert-file", "key-file", "trusted-ca-file",
)
IMPLEMENTED_BOOL_FLAGS = ("version", "help", "unsafe-no-fsync", "client-cert-auth")

# Every other flag of etcd 3.4/3.5: accepted, warned about, ignored.
PENDING_VALUE_FLAGS = (
    "listen-peer-urls",
    "listen-client-http-urls", "max-snapshots", "max-wals",
    "backend-bbolt-freelist-type", "backend-batch-interval", "backend-batch-limit",
    "grpc-keepalive-min-time", "grpc-keepalive-interval", "grpc-keepalive-timeout",
    "max-concurrent-streams", "initial-cluster", "initial-cluster-state", "discovery",
    "discovery-fallback", "discovery-proxy", "discovery-srv", "discovery-srv-name",
    "auto-compaction-retention", "auto-compaction-mode", "v2-deprecation",
    "client-crl-file", "client-cert-allowed-hostname", "peer-cert-file", "peer-key-file",
    "peer-trusted-ca-file", "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname", "self-signed-cert-validity", "peer-crl-file",
    "cipher-suites", "cors", "host-whitelist", "tls-min-version", "tls-max-version",
    "metrics", "listen-metrics-urls",
    "log-rotation-config-json", "log-package-levels", "proxy", "proxy-failure-wait",
    "proxy-refresh-interval", "proxy-dial-timeout", "proxy-write-timeout",
    "proxy-read-timeout", "config-file", "experimental-corrupt-check-time",
    "experimental-compaction-batch-limit",
    "experimental-warning-apply-duration", "experimental-bootstrap-defrag-threshold-megabytes",
    "experimental-distributed-tracing-address", "experimental-distributed-tracing-service-name",
    "experimental-distributed-tracing-instance-id",
    "experimental-distributed-tracing-sampling-rate", "experimental-downgrade-check-time",
    "experimental-compact-hash-check-time", "experimental-snapshot-catchup-entries",
    "experimental-backend-bbolt-freelist-type", "experimental-compaction-sleep-interval",
    "experimental-max-learners", "experimental-wait-cluster-ready-timeout",
    "experimental-warning-unary-request-duration", "experimental-enable-v2v3",
)
PENDING_BOOL_FLAGS = (
    "initial-election-tick-advance", "socket-reuse-port", "socket-reuse-address",
    "strict-reconfig-check", "pre-vote", "enable-v2", "auto-tls",
    "peer-client-cert-auth", "peer-auto-tls", "enable-pprof", "enable-log-rotation", "debug",
    "force-new-cluster", "enable-grpc-gateway",
    "experimental-initial-corrupt-check", "experimental-enable-lease-checkpoint",
    "experimental-enable-lease-checkpoint-persist",
    "experimental-peer-skip-client-san-verification", "experimental-memory-mlock",
    "experimental-txn-mode-write-with-shared-buffer",
    "experimental-enable-distributed-tracing", "experimental-compact-hash-check-enabled",
    "experimental-stop-grpc-service-on-defrag",
)
BOOL_FLAGS = frozenset(IMPLEMENTED_BOOL_FLAGS + PENDING_BOOL_FLAGS)
ALL_FLAGS = frozenset(IMPLEMENTED_VALUE_FLAGS + PENDING_VALUE_FLAGS) | BOOL_FLAGS
IMPLEMENTED = frozenset(IMPLEMENTED_VALUE_FLAGS + IMPLEMENTED_BOOL_FLAGS)
_IGNORED_ENV = frozenset({"ETCD_UNSUPPORTED_ARCH"})
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class UsageError(Exception):
    """Bad flags or variables: print, exit 2 (as Go's flag package does)."""


@dataclass
class Parsed:
    values: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def env_name(flag: str) -> str:
    return "ETCD_" + flag.upper().replace("-", "_")


def parse_bool(flag: str, text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f'invalid boolean value "{text}" for -{flag}')


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> Parsed:
    """Flags from ``argv`` over variables from ``environ``; warnings for unimplemented ones."""
    out = Parsed()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            raise UsageError(f"'{arg}' is not a valid flag")
        name = arg.lstrip("-")
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name in ("h",):
            name = "help"
        if name not in ALL_FLAGS:
            raise UsageError(f"flag provided but not defined: -{name}")
        if name in BOOL_FLAGS:
            value = "true" if value is None else str(parse_bool(name, value)).lower()
        elif value is None:
            if i >= len(argv):
                raise UsageError(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        out.values[name] = value
    for var, value in environ.items():
        if not var.startswith("ETCD_") or var in _IGNORED_ENV:
            continue
        flag = var[5:].lower().replace("_", "-")
        if flag not in ALL_FLAGS:
            out.warnings.append(f"unrecognized environment variable {var}={value}")
            continue
        if flag in out.values:
            out.warnings.append(
                f"recognized environment variable {var}, but unused: shadowed by "
                "corresponding flag"
            )
            continue
        if flag in BOOL_FLAGS:
            value = str(parse_bool(flag, value)).lower()
        out.values[flag] = value
    for flag in sorted(out.values):
        if flag not in IMPLEMENTED:
            out.warnings.append(f"--{flag} is not implemented in etcdlite yet; ignoring it")
    return out


def _urls(text: str) -> list[str]:
    return [u.strip() for u in text.split(",") if u.strip()]


def _int(flag: str, text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f'invalid value "{text}" for flag -{flag}: parse error') from None


def _uint(flag: str, text: str) -> int:
    n = _int(flag, text)
    if n < 0:
        raise UsageError(f'invalid value "{text}" for flag -{flag}: value out of range')
    return n


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(flag: str, text: str) -> float:
    """A Go duration ("10m", "1.5s", "1h30m", "100ms") in seconds.

    >>> parse_duration("x", "1m30s"), parse_duration("x", "250ms")
    (90.0, 0.25)
    """
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise UsageError(f'invalid value "{text}" for flag -{flag}: parse error')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise UsageError(f'invalid value "{text}" for flag -{flag}: parse error')
    return total


def to_config(values: Mapping[str, str]) -> EtcdConfig:
    cfg = EtcdConfig()
    if "name" in values:
        cfg.name = values["name"]
    if "data-dir" in values:
        cfg.data_dir = Path(values["data-dir"])
    if "listen-client-urls" in values:
        cfg.listen_client_urls = _urls(values["listen-client-urls"])
    if "advertise-client-urls" in values:
        cfg.advertise_client_urls = _urls(values["advertise-client-urls"])
    if "initial-advertise-peer-urls" in values:
        cfg.initial_advertise_peer_urls = _urls(values["initial-advertise-peer-urls"])
    if "initial-cluster-token" in values:
        cfg.initial_cluster_token = values["initial-cluster-token"]
    if "max-txn-ops" in values:
        cfg.max_txn_ops = _uint("max-txn-ops", values["max-txn-ops"])
    if "heartbeat-interval" in values:
        cfg.heartbeat_interval_ms = _uint("heartbeat-interval", values["heartbeat-interval"]) or 1
    if "election-timeout" in values:
        cfg.election_timeout_ms = _uint("election-timeout", values["election-timeout"])
    if "max-request-bytes" in values:
        cfg.max_request_bytes = _uint("max-request-bytes", values["max-request-bytes"])
    if "experimental-watch-progress-notify-interval" in values:
        flag = "experimental-watch-progress-notify-interval"
        cfg.watch_progress_notify_interval_s = parse_duration(flag, values[flag])
    if values.get("wal-dir"):
        cfg.wal_dir = Path(values["wal-dir"])
    if "snapshot-count" in values:
        cfg.snapshot_count = _uint("snapshot-count", values["snapshot-count"])
    if "quota-backend-bytes" in values:
        cfg.quota_backend_bytes = _int("quota-backend-bytes", values["quota-backend-bytes"])
    if "unsafe-no-fsync" in values:
        cfg.unsafe_no_fsync = values["unsafe-no-fsync"] == "true"
    if "auth-token" in values:
        cfg.auth_token = values["auth-token"]
    if "auth-token-ttl" in values:
        cfg.auth_token_ttl_s = _uint("auth-token-ttl", values["auth-token-ttl"])
    if "bcrypt-cost" in values:
        cfg.bcrypt_cost = _uint("bcrypt-cost", values["bcrypt-cost"])
    for flag in ("cert-file", "key-file", "trusted-ca-file"):
        if values.get(flag):  # "" is etcd's default: none
            setattr(cfg, flag.replace("-", "_"), Path(values[flag]))
    if "client-cert-auth" in values:
        cfg.client_cert_auth = values["client-cert-auth"] == "true"
    level = values.get("log-level", "info")
    if level not in LEVELS:
        raise UsageError(f'invalid value "{level}" for flag -log-level')
    cfg.log_level = level
    return cfg


USAGE = """Usage: etcdlite [flags]

etcdlite speaks the etcd v3 API (as etcd {etcd}); it takes etcd's flags and ETCD_*
variables. Implemented now: --{implemented}.
Other etcd flags are accepted with a warning.
"""


SNAPSHOT_USAGE = """Usage: etcdlite snapshot restore FILE --data-dir DIR [flags]

Creates DIR from a snapshot saved with `etcdctl snapshot save` from etcdlite. Flags:
  --data-dir DIR                      the new data directory (default: <name>.etcd)
  --name, --initial-advertise-peer-urls, --initial-cluster-token
                                      the new member, as for starting etcdlite
  --skip-hash-check                   accept a file without its SHA-256 trailer
"""


def snapshot_main(argv: Sequence[str]) -> int:
    """``etcdlite snapshot restore FILE --data-dir DIR``: see ``etcdlite.server.restore``."""
    from etcdlite.server.restore import RestoreError, restore

    if len(argv) < 2 or argv[0] != "restore" or argv[1].startswith("-"):
        print(SNAPSHOT_USAGE, file=sys.stderr)
        return 2
    flags = list(argv[2:])
    skip = False
    for arg in list(flags):
        if arg.lstrip("-").split("=", 1)[0] == "skip-hash-check":
            skip = parse_bool("skip-hash-check", arg.split("=", 1)[1]) if "=" in arg else True
            flags.remove(arg)
    try:
        parsed = parse_args(flags, {})
        cfg = to_config(parsed.values)
        restore(Path(argv[1]), cfg.resolved_data_dir(), skip_hash_check=skip)
    except (UsageError, RestoreError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, RestoreError) else 2
    print(f"restored snapshot {argv[1]} into {cfg.resolved_data_dir()}")
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    if argv[:1] == ["snapshot"]:
        return snapshot_main(argv[1:])
    try:
        parsed = parse_args(argv, environ)
        if "help" in parsed.values:
            print(USAGE.format(etcd=ETCD_VERSION, implemented=", --".join(sorted(IMPLEMENTED))))
            return 0
        if "version" in parsed.values:
            print(f"etcdlite Version: {ETCDLITE_VERSION}\netcd API Version: {ETCD_VERSION}\n"
                  f"Python Version: {sys.version.split()[0]}")
            return 0
        cfg = to_config(parsed.values)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    stream = sys.stdout if parsed.values.get("log-outputs") == "stdout" else sys.stderr
    logger = Logger(cfg.log_level, stream)
    for warning in parsed.warnings:
        logger.warn(warning)
    if parsed.values.get("logger", "zap") != "zap":
        logger.warn("only the zap logger is implemented; logging JSON lines",
                    logger=parsed.values["logger"])
    try:
        return asyncio.run(_serve(cfg, logger))
    except KeyboardInterrupt:
        return 130


async def _serve(cfg: EtcdConfig, logger: Logger) -> int:
    runner = Runner(cfg, logger, SystemClock())
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        logger.info("received signal; shutting down", signal=sig.name)
        stop_requested.set()

    # Handlers go in before the listeners open: a signal right after "ready" must
    # still mean a clean stop.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await runner.start()
    except ConfigError as exc:
        logger.fatal("failed to start etcdlite", error=str(exc))
        return 1
    except DirectoryInUse as exc:
        logger.fatal("refusing to start: the data directory is in use",
                     **{"data-dir": str(cfg.resolved_data_dir()), "error": str(exc)})
        return 1
    except StorageError as exc:
        logger.fatal(
            "refusing to start: the data directory is damaged or not etcdlite's",
            **{"data-dir": str(cfg.resolved_data_dir()), "error": str(exc)},
        )
        return 1
    stopper = loop.create_task(_stop_when(stop_requested, runner))
    await runner.wait_stopped()  # a signal, or a fatal error
    stopper.cancel()
    return 1 if runner.fatal_error is not None else 0


async def _stop_when(requested: asyncio.Event, runner: Runner) -> None:
    await requested.wait()
    await runner.stop()


if __name__ == "__main__":
    sys.exit(main())
