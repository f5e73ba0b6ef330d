"""The server's configuration: frozen dataclasses built once at the edge (CLI flags) and passed in.

Kept apart from `service.server` and `service.validation` so that the command line and the worker supervisor
build a configuration without importing TensorFlow or FAISS (the command line sets OpenMP's environment before
FAISS loads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from model.bundle.reserved import IndexMmapMode
from service.auth import BearerToken
from service.batcher import BatcherConfig
from service.versions import VersionPolicy


@dataclass(frozen=True)
class ServiceLimits:
    """Bounds on what one request may ask for.

    Attributes:
        max_k: largest num_candidates.
        max_exclusions: largest number of excluded ids (exclude_item_ids plus history when exclude_history).
        max_history: largest number of history_item_ids.
        max_batch_requests: largest number of requests in one RetrieveCandidatesBatch call.
        max_string_length: longest user id, item id, feature string or request id, in characters.
    """

    max_k: int = 1000
    max_exclusions: int = 1000
    max_history: int = 1000
    max_batch_requests: int = 256
    max_string_length: int = 256

    def __post_init__(self) -> None:
        for name in ("max_k", "max_exclusions", "max_history", "max_batch_requests", "max_string_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServiceLimits.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class TlsConfig:
    """PEM files for TLS; with `client_ca_path` clients must present a certificate signed by it (mTLS)."""

    cert_path: Path
    key_path: Path
    client_ca_path: Path | None = None


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs, built once at the edge (CLI flags) and passed in.

    Attributes:
        models_dir: root holding `<model_name>/<version>/` bundles.
        model_name: the model to serve.
        host: interface to bind ("0.0.0.0" all IPv4, "[::]" all, "127.0.0.1" local only).
        port: port to bind; 0 picks a free one (see the port `build_server` returns).
        pinned_version: serve exactly this version (the policy of that one version); not with `versions`.
        versions: which versions to keep loaded (service/versions.py); None: the pinned version, else the newest
            good one (see `version_policy`).
        batcher: micro-batching limits (batch size, delay, queue size).
        limits: per-request limits.
        reload_interval_s: how often to look for a new version.
        keepalive_time_s: interval of server keepalive pings on idle connections.
        keepalive_timeout_s: how long to wait for a ping acknowledgement before closing.
        max_connection_age_s: close connections after this age (lets clients rebalance); None: never.
        max_connection_age_grace_s: time given to in-flight calls on an aged connection.
        max_receive_message_bytes: largest request message.
        max_send_message_bytes: largest response message.
        grace_period_s: how long shutdown waits for in-flight calls, from the signal to the closed server.
        drain_s: at shutdown, how long at least (within the grace period) the server keeps answering new calls
            with UNAVAILABLE before it closes its port, so that calls sent before clients saw NOT_SERVING are
            answered rather than cancelled by grpc-core.
        gpu_device: FAISS GPU id for the index; negative keeps it on the CPU.
        index_mmap: memory-map index files ("on"; "auto": files of 256 MiB and more; "off"), so that a hot reload
            of a large version does not hold two copies in private memory (model/bundle/index_mmap.py).
        shard_index_across_gpus: with two or more GPUs visible, shard the index across all of them (one id range
            each, FAISS `IndexShards`) instead of copying it whole to `gpu_device`; for catalogs larger than one
            GPU. Serve with one worker then (each worker of several sees one GPU).
        tls: TLS / mTLS files; None serves plaintext.
        auth_tokens: accepted bearer tokens (strings, or `BearerToken`s with an expiry); empty disables token
            auth.
        metrics_port: HTTP port of Prometheus `/metrics` on `host`; 0 picks a free one; None serves no metrics.
    """

    models_dir: Path
    model_name: str
    host: str = "0.0.0.0"
    port: int = 50051
    pinned_version: int | None = None
    batcher: BatcherConfig = field(default_factory=BatcherConfig)
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    reload_interval_s: float = 10.0
    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    max_connection_age_s: float | None = None
    max_connection_age_grace_s: float = 30.0
    max_receive_message_bytes: int = 4 * 1024 * 1024
    max_send_message_bytes: int = 16 * 1024 * 1024
    grace_period_s: float = 10.0
    drain_s: float = 0.5
    gpu_device: int = 0
    index_mmap: IndexMmapMode = "auto"
    shard_index_across_gpus: bool = False
    tls: TlsConfig | None = None
    auth_tokens: tuple[str | BearerToken, ...] = field(default=(), repr=False)  # secrets: never in reprs
    metrics_port: int | None = None
    versions: VersionPolicy | None = None

    @property
    def version_policy(self) -> VersionPolicy:
        """The versions to keep loaded: `versions`, else the pinned version alone, else the newest good one."""
        if self.versions is not None:
            return self.versions
        return VersionPolicy() if self.pinned_version is None else VersionPolicy.of_versions([self.pinned_version])

    def __post_init__(self) -> None:
        if self.limits.max_batch_requests > self.batcher.queue_size:
            raise ValueError(
                f"limits.max_batch_requests ({self.limits.max_batch_requests}) exceeds the queue size "
                f"({self.batcher.queue_size}): such batch calls could never be queued"
            )
        if self.reload_interval_s <= 0 or self.grace_period_s < 0 or self.drain_s < 0:
            raise ValueError(f"reload_interval_s must be > 0, grace_period_s and drain_s >= 0, got {self}")
        if self.versions is not None and self.pinned_version is not None:
            raise ValueError(
                f"a pinned version ({self.pinned_version}) and versions ({self.versions}) exclude each other"
            )
