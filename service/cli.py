"""`retrieval-serve`: runs the retrieval gRPC server until SIGTERM or SIGINT, then shuts down gracefully.

With `--workers N` (N > 1), N server processes share the port and a supervisor restarts any that dies
(service/workers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from model.bundle.reserved import DEFAULT_MODEL_NAME, INDEX_MMAP_MODES
from model.console import (
    EXIT_OK,
    EXIT_STATUS_HELP,
    EXIT_USAGE,
    CommandParser,
    add_standard_flags,
    import_tensorflow_quietly,
    quiet_tensorflow,
    run_command,
)
from service.auth import BearerToken, parse_token_lines
from service.batcher import BatcherConfig
from service.config import ServerConfig, ServiceLimits, TlsConfig
from service.cpu import tensorflow_thread_env
from service.logs import LOG_FORMATS, configure_logging
from service.versions import VersionPolicy

# The metrics port the Kubernetes manifests and the image use (the flag itself has no default: no endpoint).
IMAGE_METRICS_PORT = 9464
# Set unless the user set them, before TensorFlow or FAISS load: OpenMP threads sleep instead of spinning
# between searches (a spinning thread takes the core the event loop needs), and TensorFlow takes GPU memory as
# it needs it, leaving the rest to FAISS.
# TensorFlow's C++ start-up lines (oneDNN, CUDA stubs, CPU features) are hidden: level 2 keeps its errors.
SERVING_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "TF_FORCE_GPU_ALLOW_GROWTH": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults, limits, batching = ServerConfig(Path("."), "x"), ServiceLimits(), BatcherConfig()
    parser = CommandParser(
        prog="retrieval-serve",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=EXIT_STATUS_HELP,
    )
    add = parser.add_argument
    add_standard_flags(parser)
    add("--models-dir", type=Path, required=True, help="root holding <model-name>/<version>/ bundles")
    add(
        "--model-name", default=DEFAULT_MODEL_NAME,
        help="the model directory under --models-dir to serve (retrieval-train and retrieval-demo export there)",
    )  # fmt: skip
    add("--host", default=defaults.host, help="interface to bind: 0.0.0.0 all IPv4, [::] all, 127.0.0.1 local only")
    add("--port", type=int, default=defaults.port, help="gRPC port; 0 picks a free one")
    add(
        "--metrics-port", type=int, default=None,
        help=f"serve Prometheus /metrics over HTTP on this port (0 picks a free one; the images use "
        f"{IMAGE_METRICS_PORT}); none: no metrics endpoint",
    )  # fmt: skip
    add(
        "--workers", type=int, default=1,
        help="server processes sharing the port (SO_REUSEPORT), each with its own model; a supervisor restarts "
        "any that dies and serves one /metrics for all",
    )  # fmt: skip
    add("--pin-version", type=int, default=None, help="serve exactly this version (none: the newest good one)")
    add(
        "--versions", type=_version_policy, default=None, metavar="latest:N|V1,V2",
        help="versions to keep loaded side by side: the newest N good ones (latest:2) or these (3,5); versions "
        "that labels.json labels are loaded too; none: latest:1 (or --pin-version)",
    )  # fmt: skip
    add("--max-batch-size", type=int, default=batching.max_batch_size, help="most requests per batch")
    add(
        "--max-delay-us", type=int, default=batching.max_delay_us,
        help="longest wait of a forming batch for more requests; 0: a free compute thread starts at once",
    )  # fmt: skip
    add("--queue-size", type=int, default=batching.queue_size, help="most waiting requests (then RESOURCE_EXHAUSTED)")
    add(
        "--max-concurrent-batches", type=int, default=batching.max_concurrent_batches,
        help="batches processed at once, each by its own thread with its share of the CPU cores",
    )  # fmt: skip
    add("--max-k", type=int, default=limits.max_k, help="largest num_candidates of a request")
    add("--max-exclusions", type=int, default=limits.max_exclusions, help="most excluded item ids per request")
    add("--max-history", type=int, default=limits.max_history, help="most history_item_ids per request")
    add("--max-batch-requests", type=int, default=limits.max_batch_requests, help="most requests per batch call")
    add("--reload-interval-s", type=float, default=defaults.reload_interval_s, help="how often to look for versions")
    add("--max-connection-age-s", type=float, default=None, help="close connections after this age (rebalancing)")
    add("--grace-period-s", type=float, default=defaults.grace_period_s, help="shutdown: time for in-flight calls")
    add(
        "--drain-s", type=float, default=defaults.drain_s,
        help="at shutdown, answer new calls UNAVAILABLE for at least this long before closing the port",
    )  # fmt: skip
    add("--gpu-device", type=int, default=defaults.gpu_device, help="FAISS GPU for the index; -1 keeps the CPU")
    add(
        "--index-mmap", choices=INDEX_MMAP_MODES, default=defaults.index_mmap,
        help="memory-map index files where FAISS can (IVF lists, flat codes), so that a reload does not double "
        "memory: on; auto: files of 256 MiB and more; off: read into memory",
    )  # fmt: skip
    add(
        "--shard-index-across-gpus", action="store_true",
        help="with several GPUs, split the index across all of them (FAISS IndexShards) instead of copying it "
        "whole to --gpu-device; for catalogs larger than one GPU (serve with --workers 1)",
    )  # fmt: skip
    add("--tls-cert", type=Path, default=None, help="server certificate chain (PEM); with --tls-key enables TLS")
    add("--tls-key", type=Path, default=None, help="server private key (PEM)")
    add("--tls-client-ca", type=Path, default=None, help="require client certificates signed by this CA (mTLS)")
    add(
        "--auth-token-file", type=Path, default=None,
        help="accepted bearer tokens, one per line, each optionally followed by expires=<ISO-8601 time>",
    )  # fmt: skip
    add("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="logging level")
    add(
        "--log-format", default="text", choices=LOG_FORMATS,
        help="text lines, or one JSON object per line with request_id, trace_id and span_id where known",
    )  # fmt: skip
    return parser.parse_args(argv)


def _version_policy(text: str) -> VersionPolicy:
    try:
        return VersionPolicy.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Builds the frozen server configuration from parsed flags."""
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_client_ca and not args.tls_cert):
        raise ValueError("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")
    tls = TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    tokens: tuple[str | BearerToken, ...] = ()
    if args.auth_token_file is not None:
        try:
            tokens = parse_token_lines(args.auth_token_file.read_text())
        except OSError as error:
            raise ValueError(f"--auth-token-file {args.auth_token_file}: {error.strerror or error}") from error
    return ServerConfig(
        models_dir=args.models_dir,
        model_name=args.model_name,
        host=args.host,
        port=args.port,
        pinned_version=args.pin_version,
        batcher=BatcherConfig(args.max_batch_size, args.max_delay_us, args.queue_size, args.max_concurrent_batches),
        limits=ServiceLimits(
            max_k=args.max_k,
            max_exclusions=args.max_exclusions,
            max_history=args.max_history,
            max_batch_requests=args.max_batch_requests,
        ),
        reload_interval_s=args.reload_interval_s,
        max_connection_age_s=args.max_connection_age_s,
        grace_period_s=args.grace_period_s,
        drain_s=args.drain_s,
        gpu_device=args.gpu_device,
        index_mmap=args.index_mmap,
        shard_index_across_gpus=args.shard_index_across_gpus,
        tls=tls,
        auth_tokens=tokens,
        metrics_port=args.metrics_port,
        versions=args.versions,
    )


def _listening(config: ServerConfig, port: int, metrics_port: int | None, workers: int = 1) -> None:
    metrics = f" metrics=http://{config.host}:{metrics_port}/metrics" if metrics_port else ""
    several = f" workers={workers}" if workers > 1 else ""
    print(f"retrieval-serve listening on {config.host}:{port} model={config.model_name}{several}{metrics}", flush=True)


async def serve(config: ServerConfig) -> None:
    """Runs the server until SIGTERM/SIGINT, then drains and stops."""
    import_tensorflow_quietly()  # after SERVING_ENV
    from service.server import build_server, freeze_startup_objects

    freeze_startup_objects()
    _, port, handles = await build_server(config)
    _listening(config, port, handles.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    print("retrieval-serve: signal received, shutting down", flush=True)
    await handles.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
    except ValueError as error:
        print(f"retrieval-serve: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_level.upper(), args.log_format)  # once the flags are known to be good
    quiet_tensorflow()
    for key, value in SERVING_ENV.items():
        os.environ.setdefault(key, value)
    if args.workers > 1:  # each worker sizes TensorFlow's threads to its own share of the cores
        from service.workers import Supervisor

        supervisor = Supervisor(config, args.workers, log_level=args.log_level.upper(), log_format=args.log_format)
        return supervisor.run(lambda port, metrics: _listening(config, port, metrics, args.workers))
    for key, value in tensorflow_thread_env(config.batcher.max_concurrent_batches).items():
        os.environ.setdefault(key, value)

    def run() -> int:
        asyncio.run(serve(config))
        return EXIT_OK

    return run_command("retrieval-serve", run, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
