"""The gRPC floor: a bare grpc.aio server answering RetrieveCandidates with a canned k-candidate response.

No interceptors, no validation, no batching, no model: what Python gRPC itself costs per call on this machine,
with the same response size as the real service. The serving benchmark drives it with the same load generator;
its throughput bounds what any Python grpc.aio service can answer here, whatever its model costs. Prints
`PORT <n>` once it serves; stops on SIGTERM (SIGUSR1 from the load generator is ignored).

    python -m bench.noop_server --k 100
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc

from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc


def canned_response(k: int) -> pb.RetrieveCandidatesResponse:
    response = pb.RetrieveCandidatesResponse(model_name="noop", model_version="1")
    for rank in range(k):
        response.candidates.add(item_id=f"item{rank:07d}", score=1.0 - rank / k, rank=rank)
    return response


class CannedServicer(pb_grpc.RetrievalServiceServicer):
    def __init__(self, response: pb.RetrieveCandidatesResponse) -> None:
        self._response = response

    async def RetrieveCandidates(
        self, request: pb.RetrieveCandidatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetrieveCandidatesResponse:
        return self._response


async def _serve(k: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_RetrievalServiceServicer_to_server(CannedServicer(canned_response(k)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"PORT {port} index_device=none query_device=none", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    await stop.wait()
    await server.stop(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
