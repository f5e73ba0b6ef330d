"""`retrieval-query`: asks a retrieval server for one user's candidates and prints rank, id, score and title.

Feature values are given as `--feature name=value` and converted with the kinds that GetServiceInfo
reports (lists are comma-separated); `--filter` keeps the items whose attributes pass every restrict (the
attributes the model exports: GetServiceInfo lists them); `--json` prints the whole response as JSON for
scripts.

examples (against retrieval-demo's MovieLens model):
  retrieval-query --target 127.0.0.1:50051 --user 42 -k 10 --feature gender=M --feature age=25 --exclude 50
  retrieval-query --target 127.0.0.1:50051 --user 42 --filter genre=Comedy --filter 'release_year>=1990'
  retrieval-query --target 127.0.0.1:50051 --similar-to 50 -k 10 --filter genre!=Sci-Fi --json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from google.protobuf import json_format

from model.console import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_STATUS_HELP,
    CommandParser,
    UsageError,
    add_standard_flags,
    run_command,
)
from service.client import FeatureLike, RetrievalClient, error_details, format_response
from service.filter_syntax import parse_checked_filter, parse_filter
from service.generated.retrieval.v1 import retrieval_pb2 as pb


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = CommandParser(
        prog="retrieval-query",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXIT_STATUS_HELP,
    )
    add_standard_flags(parser)
    parser.add_argument("--target", default="localhost:50051", help="server host:port")
    parser.add_argument("--user", default=None, help="user id (required unless --similar-to is given)")
    parser.add_argument(
        "--similar-to", action="append", default=[], metavar="ITEM",
        help="items similar to this item id instead of a user's candidates (repeatable: their mean)",
    )  # fmt: skip
    parser.add_argument("-k", type=int, default=10, help="number of candidates")
    parser.add_argument("--feature", action="append", default=[], metavar="NAME=VALUE", help="a user feature")
    parser.add_argument("--history", action="append", default=[], metavar="ITEM", help="a recent item id")
    parser.add_argument("--exclude", action="append", default=[], metavar="ITEM", help="an item id to exclude")
    parser.add_argument("--exclude-history", action="store_true", help="exclude the history items too")
    parser.add_argument(
        "--filter", action="append", default=[], metavar="EXPR",
        help="only items whose attributes pass EXPR: NAME=TOKEN, NAME!=TOKEN, or NAME<op>NUMBER with op one of "
        "< <= == >= > != (repeatable: every restrict must pass, but several NAME=TOKEN of one NAME: any of them), "
        "e.g. --filter genre=Comedy --filter 'release_year>=1990'",
    )  # fmt: skip
    parser.add_argument(
        "--display", action="append", default=None, metavar="NAME",
        help="a display attribute to show with each candidate (repeatable; default: all of them, '*')",
    )  # fmt: skip
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument(
        "--model-version",
        type=int,
        default=None,
        metavar="N",
        help="ask model version N (--version prints this program's)",
    )
    chosen.add_argument(
        "--version-label", default=None, metavar="LABEL", help="ask the version with this label, e.g. canary"
    )
    parser.add_argument("--token", default=None, help="bearer token")
    parser.add_argument("--ca-cert", type=Path, default=None, help="CA certificate (PEM): use TLS")
    parser.add_argument("--client-cert", type=Path, default=None, help="client certificate (PEM) for mTLS")
    parser.add_argument("--client-key", type=Path, default=None, help="client key (PEM) for mTLS")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="deadline of each call in seconds")
    parser.add_argument(
        "--json", action="store_true", help="print the response as JSON (proto field names) instead of a table"
    )
    args = parser.parse_args(argv)
    if args.user is None and not args.similar_to:
        parser.error("--user or --similar-to is required")
    try:
        parse_filter(args.filter)  # the syntax, before any call (the kinds come from the server)
    except ValueError as error:
        parser.error(f"--{error}")
    return args


def filter_from_flags(expressions: Sequence[str], kinds: Mapping[str, int]) -> pb.ItemFilter | None:
    """The `--filter` expressions as an ItemFilter for a model with these attribute kinds; None when none given.

    Raises:
        UsageError: naming the expression that does not parse or does not fit the model's attributes.
    """
    if not expressions:
        return None
    try:
        return parse_checked_filter(expressions, kinds)
    except ValueError as error:
        raise UsageError(f"--{error}") from None


def convert_features(raw: Sequence[str], kinds: Mapping[str, int]) -> dict[str, FeatureLike]:
    """`name=value` strings to typed values by the server's feature kinds; unknown names stay strings."""
    features: dict[str, FeatureLike] = {}
    for item in raw:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--feature expects NAME=VALUE, got {item!r}")
        try:
            features[name] = _convert(value, kinds.get(name, pb.FEATURE_KIND_STRING))
        except ValueError:
            expected = pb.FeatureKind.Name(kinds[name]).removeprefix("FEATURE_KIND_").lower().replace("_", " ")
            raise UsageError(f"--feature {name}={value!r}: feature {name!r} expects {expected}") from None
    return features


def _convert(value: str, kind: int) -> FeatureLike:
    """One feature value from its text, by the server's kind (lists comma-separated)."""
    if kind == pb.FEATURE_KIND_FLOAT:
        return float(value)
    if kind == pb.FEATURE_KIND_INT64:
        return int(value)
    if kind == pb.FEATURE_KIND_STRING_LIST:
        return [v for v in value.split(",") if v]
    if kind == pb.FEATURE_KIND_INT64_LIST:
        return [int(v) for v in value.split(",") if v]
    if kind == pb.FEATURE_KIND_FLOAT_LIST:
        return [float(v) for v in value.split(",") if v]
    return value


def _client(args: argparse.Namespace) -> RetrievalClient:
    def read(path: Path | None) -> bytes | None:
        return path.read_bytes() if path is not None else None

    return RetrievalClient(
        args.target,
        root_certificates=read(args.ca_cert),
        client_certificate=read(args.client_cert),
        client_key=read(args.client_key),
        token=args.token,
        timeout_s=args.timeout_s,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("retrieval-query", lambda: query(args), debug=args.debug)


def query(args: argparse.Namespace) -> int:
    """Asks the server and prints the answer; a gRPC error is one line naming its code and reason (exit 1)."""
    try:
        with _client(args) as client:
            response: pb.RetrieveCandidatesResponse | pb.RetrieveSimilarItemsResponse
            item_filter = None
            if args.filter:  # the kinds of the version asked for
                info = client.service_info(version=args.model_version, version_label=args.version_label)
                item_filter = filter_from_flags(args.filter, {a.name: a.kind for a in info.filterable_attributes})
            if args.similar_to:
                response = client.similar_items(
                    args.similar_to, args.k, exclude=args.exclude, display=args.display or ["*"],
                    filter=item_filter, version=args.model_version, version_label=args.version_label,
                )  # fmt: skip
            else:
                kinds = {f.name: f.kind for f in client.service_info().features} if args.feature else {}
                response = client.retrieve(
                    args.user,
                    args.k,
                    features=convert_features(args.feature, kinds),
                    history=args.history,
                    exclude=args.exclude,
                    exclude_history=args.exclude_history,
                    display=args.display or ["*"],
                    filter=item_filter,
                    version=args.model_version,
                    version_label=args.version_label,
                )
    except grpc.RpcError as error:
        details = error_details(error)
        reason = f" (reason {details.reason})" if details.reason else ""
        print(f"retrieval-query: error: {details.code}: {details.message}{reason}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(
            json_format.MessageToJson(
                response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=2
            )
        )
    else:
        print("\n".join(format_response(response)))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
