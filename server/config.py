"""EtcdConfig: everything a member needs to start, with etcd's defaults.

The CLI fills it from etcd's flags and ``ETCD_*`` variables; the embedding API from
keyword arguments. Fields are etcd's flags in snake case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_TXN_OPS = 128
DEFAULT_SNAPSHOT_COUNT = 100_000
DEFAULT_QUOTA_BACKEND_BYTES = 2 * 1024**3
DEFAULT_MAX_REQUEST_BYTES = 1_572_864
GRPC_OVERHEAD_BYTES = 512 * 1024
"""gRPC accepts messages this much larger than --max-request-bytes (as etcd does)."""


def receive_limit(max_request_bytes: int) -> int:
    """The largest request message accepted on the wire, and the size above which a
    watch response is split into fragments (etcd's rule for both)."""
    return max_request_bytes + GRPC_OVERHEAD_BYTES


@dataclass
class EtcdConfig:
    name: str = "default"
    data_dir: Path | None = None
    """None: ``<name>.etcd`` in the working directory."""
    listen_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    advertise_client_urls: list[str] | None = None
    """None: the listen URLs, with the ports actually bound."""
    initial_advertise_peer_urls: list[str] = field(
        default_factory=lambda: ["http://localhost:2380"]
    )
    initial_cluster_token: str = "etcd-cluster"
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    log_level: str = "info"
    election_timeout_ms: int = 1000
    """--election-timeout: sets the minimum lease TTL and the lease extension on a new
    leader (raft timing comes with the raft integration)."""
    heartbeat_interval_ms: int = 100
    """--heartbeat-interval: the tick the minimum lease TTL is counted in."""
    watch_progress_notify_interval_s: float = 600.0
    """--experimental-watch-progress-notify-interval (etcd's default: 10m)."""

    wal_dir: Path | None = None
    """--wal-dir: None keeps the WAL in ``<data-dir>/member/wal``."""
    snapshot_count: int = DEFAULT_SNAPSHOT_COUNT
    """--snapshot-count: applied entries between snapshots (0 means the default)."""
    quota_backend_bytes: int = 0
    """--quota-backend-bytes: 0 means 2 GiB; negative means no quota."""
    unsafe_no_fsync: bool = False
    """--unsafe-no-fsync: acknowledge writes before they reach the disk (a crash of the
    machine, not of the process, may lose them). Embedded servers on a temporary
    directory use it."""

    auth_token: str = "simple"
    """--auth-token: ``simple``, ``jwt,sign-method=...,priv-key=...,pub-key=...,ttl=...``
    or "" (no tokens); parsed by ``auth_tokens.parse_auth_token`` when the member starts."""
    auth_token_ttl_s: int = 300
    """--auth-token-ttl: seconds a simple token lives after its last use."""
    bcrypt_cost: int = 10
    """--bcrypt-cost: the password hashing cost (outside [4, 31] etcd warns and uses 10)."""
    cert_file: Path | None = None
    """--cert-file: the server's certificate (PEM) for https client URLs."""
    key_file: Path | None = None
    """--key-file: the certificate's private key (PEM)."""
    trusted_ca_file: Path | None = None
    """--trusted-ca-file: the CA bundle client certificates are verified against."""
    client_cert_auth: bool = False
    """--client-cert-auth: https clients must present a certificate signed by the trusted
    CA; with auth enabled, a request without a token acts as the certificate's CN."""

    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else Path(f"{self.name}.etcd")

    def resolved_wal_dir(self) -> Path:
        if self.wal_dir is not None:
            return self.wal_dir
        return self.resolved_data_dir() / "member" / "wal"

    def resolved_quota(self) -> int:
        """The backend quota in bytes, or 0 for none."""
        if self.quota_backend_bytes < 0:
            return 0
        return self.quota_backend_bytes or DEFAULT_QUOTA_BACKEND_BYTES

    def resolved_snapshot_count(self) -> int:
        return self.snapshot_count if self.snapshot_count > 0 else DEFAULT_SNAPSHOT_COUNT
