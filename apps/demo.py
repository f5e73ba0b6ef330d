"""`retrieval-demo`: the whole product on one machine, with no external service.

Trains the two-tower model on MovieLens-100K (shipped inside the `recbole` wheel), exports a bundle, starts the
gRPC server on localhost, asks it for a few users' candidates (excluding the movies they already rated), for the
first user's comedies released in 1990 or later (an item filter on the bundle's `genre` and `release_year`
attributes), and for the movies most like Star Wars, prints the answers with titles, and keeps serving until
Ctrl-C. It then prints `retrieval-query` commands that ask the same from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from model.bundle.reserved import DEFAULT_MODEL_NAME
from model.console import (
    EXIT_OK,
    EXIT_STATUS_HELP,
    CommandParser,
    add_standard_flags,
    import_tensorflow_quietly,
    quiet_tensorflow,
    run_command,
)

if TYPE_CHECKING:  # imported where used, so that --help answers without loading TensorFlow
    from service.generated.retrieval.v1 import retrieval_pb2 as pb

DEMO_USERS = ("1", "42", "314")
SIMILAR_TO = "50"  # MovieLens-100K's Star Wars (1977): the demo's "more like this" example
# The demo's item filter: comedies released in 1990 or later (attributes exported by export.filterable).
DEMO_FILTER = ("genre=Comedy", "release_year>=1990")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = CommandParser(
        prog="retrieval-demo",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=EXIT_STATUS_HELP,
    )
    add_standard_flags(parser)
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="where the bundle is exported")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="model name of the bundle (models/<name>/)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="the training run's outputs")
    parser.add_argument("--port", type=int, default=50051, help="gRPC port on 127.0.0.1; 0 picks a free port")
    parser.add_argument("--epochs", type=int, default=20, help="most training epochs (early stopping may end sooner)")
    parser.add_argument("--reuse-bundle", action="store_true", help="serve the newest existing bundle if there is one")
    parser.add_argument("--users", default=",".join(DEMO_USERS), help="comma-separated MovieLens user ids")
    parser.add_argument("-k", type=int, default=10, help="candidates per user")
    parser.add_argument("--exit-after-queries", action="store_true", help="stop instead of serving until Ctrl-C")
    return parser.parse_args(argv)


def train_bundle(args: argparse.Namespace) -> None:
    """Runs the training job on MovieLens-100K with the project's defaults and exports a bundle."""
    from model.training.config import build_config
    from model.training.filterable import MOVIELENS_FILTERABLE
    from model.training.job import run

    config = build_config(
        {
            "data": {"source": "movielens-100k"},
            "train": {"epochs": args.epochs, "verbose": 2},
            "export": {
                "models_dir": str(args.models_dir),
                "name": args.model_name,
                "filterable": list(MOVIELENS_FILTERABLE),  # genre=genres, release_year: what DEMO_FILTER needs
            },
            "output_dir": str(args.run_dir),
        }
    )
    result = run(config)
    print((result.run_dir / "summary.md").read_text(), flush=True)


def demo_requests(users: Sequence[str], k: int) -> list[pb.RetrieveCandidatesRequest]:
    """Requests carrying each user's MovieLens side features, excluding every movie the user rated."""
    import numpy as np

    from model.data import load_movielens_100k
    from service.client import FeatureLike, build_request

    movielens = load_movielens_100k()
    rows = movielens.users.lookup(np.array(users, dtype=object))
    log = movielens.interactions
    requests = []
    for i, user in enumerate(users):
        features: dict[str, FeatureLike] = {}
        for name, values in rows.items():
            value = values[i]
            if isinstance(value, float | np.floating):
                if np.isfinite(value):
                    features[name] = float(value)
            elif value != "":
                features[name] = str(value)
        order = np.argsort(log.timestamps[log.user_ids == user], kind="stable")
        seen = log.item_ids[log.user_ids == user][order].tolist()
        requests.append(
            build_request(
                user, k, features=features, history=seen[-20:], exclude=seen, request_id=f"demo-{user}", display=["*"]
            )
        )
    return requests


def follow_up_query(target: str, request: pb.RetrieveCandidatesRequest, k: int) -> str:
    """A `retrieval-query` command asking what the demo asked for `request`'s user, and what it leaves out."""
    features = "".join(f" --feature {name}={_text(value)}" for name, value in sorted(request.user_features.items()))
    return (
        f"retrieval-query --target {target} --user {request.user_id} -k {k}{features}\n"
        f"(the demo's request for user {request.user_id}, less its --exclude of the "
        f"{len(request.exclude_item_ids)} movies they rated: some of those may rank among the answers)"
    )


def filtered_request(request: pb.RetrieveCandidatesRequest, kinds: dict[str, int]) -> pb.RetrieveCandidatesRequest:
    """`request` asking only for the items that pass `DEMO_FILTER` (attribute kinds as GetServiceInfo reports)."""
    from service.filter_syntax import parse_checked_filter

    filtered = type(request)()
    filtered.CopyFrom(request)
    filtered.filter.CopyFrom(parse_checked_filter(DEMO_FILTER, kinds))
    filtered.request_id = f"{request.request_id}-filtered"
    return filtered


def filter_flags(restricts: Sequence[str]) -> str:
    """`retrieval-query --filter` flags for restricts, quoted for a shell."""
    import shlex

    return " ".join(f"--filter {shlex.quote(restrict)}" for restrict in restricts)


def _text(value: pb.FeatureValue) -> str:
    """A feature value as `retrieval-query --feature` takes it (lists comma-separated)."""
    kind = value.WhichOneof("value")
    held = getattr(value, kind) if kind else ""
    return ",".join(map(str, held.values)) if hasattr(held, "values") else str(held)


async def serve_and_query(args: argparse.Namespace) -> None:
    from service.client import RetrievalClient, format_response
    from service.server import ServerConfig, build_server

    config = ServerConfig(models_dir=args.models_dir, model_name=args.model_name, host="127.0.0.1", port=args.port)
    _, port, handles = await build_server(config)
    try:
        engine = await handles.wait_ready(120.0)
        target = f"127.0.0.1:{port}"
        print(f"serving {engine.manifest.model_name} version {engine.manifest.model_version} on {target}", flush=True)
        requests = demo_requests([u for u in args.users.split(",") if u], args.k)

        def ask() -> list[pb.RetrieveCandidatesResponse]:
            with RetrievalClient(target) as client:
                return [client.call(client.stub.RetrieveCandidates, request) for request in requests]

        for request, response in zip(requests, await asyncio.to_thread(ask), strict=True):
            print(f"\nuser {request.user_id} (excluding the {len(request.exclude_item_ids)} movies they rated):")
            print("\n".join(format_response(response)), flush=True)

        def filtered() -> pb.RetrieveCandidatesResponse | None:
            with RetrievalClient(target) as client:
                kinds = client.attribute_kinds()
                if not {"genre", "release_year"} <= set(kinds):
                    return None  # a bundle exported before the attributes (--reuse-bundle)
                return client.call(client.stub.RetrieveCandidates, filtered_request(requests[0], kinds))

        first = requests[0]
        print(
            f"\ncomedies released in 1990 or later for user {first.user_id} ({filter_flags(DEMO_FILTER)}, "
            f"excluding the {len(first.exclude_item_ids)} movies they rated):"
        )
        answer = await asyncio.to_thread(filtered)
        if answer is None:
            print("(this bundle has no genre and release_year attributes: run the demo without --reuse-bundle)")
        else:
            print("\n".join(format_response(answer)), flush=True)

        def similar() -> pb.RetrieveSimilarItemsResponse:
            with RetrievalClient(target) as client:
                return client.similar_items([SIMILAR_TO], args.k, display=["*"])

        print(f"\nmovies like item {SIMILAR_TO} (RetrieveSimilarItems, nearest item embeddings):")
        print("\n".join(format_response(await asyncio.to_thread(similar))), flush=True)
        if args.exit_after_queries:
            return
        follow_up = next((r for r in requests if r.user_id == "42"), requests[0])
        print(f"\nstill serving on {target}; try:\n{follow_up_query(target, follow_up, args.k)}", flush=True)
        print(f"retrieval-query --target {target} --similar-to {SIMILAR_TO} -k {args.k} {filter_flags(DEMO_FILTER)}")
        print("press Ctrl-C to stop", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await handles.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    def demo() -> int:
        import_tensorflow_quietly()
        from model.bundle.reader import latest_version

        if not (args.reuse_bundle and latest_version(args.models_dir / args.model_name) is not None):
            train_bundle(args)
        asyncio.run(serve_and_query(args))
        return EXIT_OK

    return run_command("retrieval-demo", demo, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
