"""The bytes of RetrieveCandidatesResponse messages for a batch of results, built in the compute thread.

Candidates come from `CandidateEncoder` (one vectorised pass over the whole batch); the few other fields of each
response are encoded by protobuf and appended. A response whose request selected display attributes is built
as a protobuf message instead (the display maps are per candidate): the rarer, human-facing path.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.results import RetrievalResult
from service.wire import CandidateEncoder, length_delimited

_RESPONSES_1 = 0x0A  # RetrieveCandidatesBatchResponse.responses: field 1, length-delimited


def encode_responses(
    results: Sequence[RetrievalResult], request_ids: Sequence[str], encoder: CandidateEncoder
) -> list[bytes]:
    """One serialised RetrieveCandidatesResponse per result, echoing `request_ids[i]`."""
    plain = [i for i, result in enumerate(results) if not result.display]
    candidates = encoder.encode([results[i].rows for i in plain], [results[i].scores for i in plain])
    encoded: list[bytes] = [b""] * len(results)
    for i, body in zip(plain, candidates, strict=True):
        result = results[i]
        rest = pb.RetrieveCandidatesResponse(
            model_name=result.model_name,
            model_version=str(result.model_version),
            truncated=result.truncated,
            request_id=request_ids[i],
        )
        encoded[i] = body + rest.SerializeToString()
    for i, result in enumerate(results):
        if result.display:
            encoded[i] = response_message(result, request_ids[i]).SerializeToString()
    return encoded


def response_message(result: RetrievalResult, request_id: str) -> pb.RetrieveCandidatesResponse:
    """The response as a protobuf message, display attributes included."""
    response = pb.RetrieveCandidatesResponse(
        model_name=result.model_name,
        model_version=str(result.model_version),
        truncated=result.truncated,
        request_id=request_id,
    )
    # `candidates.add` builds each message in place: half the cost of constructing Candidate objects and
    # copying them in.
    add = response.candidates.add
    for rank, (item_id, score) in enumerate(zip(result.item_ids, result.scores.tolist(), strict=True)):
        add(item_id=item_id, score=score, rank=rank)
    if result.display:
        for candidate, display in zip(response.candidates, result.display, strict=True):
            candidate.display.update(display)
    return response


def batch_response(responses: Sequence[bytes]) -> bytes:
    """A serialised RetrieveCandidatesBatchResponse holding the serialised responses, in order."""
    return b"".join(length_delimited(_RESPONSES_1, response) for response in responses)
