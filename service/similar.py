"""RetrieveSimilarItems requests ("more like this"): validated into the queries the engine batches with the rest.

A similar-items query is a `Query` whose vector is the mean embedding of the given items' catalog rows instead of
the query tower's output; the given items are excluded from the answer like any exclusion. Every refusal is an
`InvalidRequest` naming the field, and unknown item ids are named all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from model.bundle.contract import AttributeKind
from service.config import ServiceLimits
from service.errors import InvalidRequest
from service.filters import compile_filter
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.query import Query
from service.validation import check_ids, check_k, check_string, display_selection


def validate_similar_request(
    request: pb.RetrieveSimilarItemsRequest,
    row_of: Callable[[str], int | None],
    limits: ServiceLimits,
    display_names: Collection[str] = (),
    attribute_kinds: Mapping[str, AttributeKind] | None = None,
) -> Query:
    """Checks `request` against the serving catalog (`row_of`: item id -> catalog row or None), the filterable
    attributes (`attribute_kinds`) and the limits.

    Raises:
        InvalidRequest: naming the first offending field (all unknown item ids at once).
    """
    check_string("request_id", request.request_id, limits, allow_empty=True)
    check_k(request.num_candidates, limits)
    if not request.item_ids:
        raise InvalidRequest("item_ids", "at least one item id is needed")
    check_ids("item_ids", request.item_ids, limits.max_exclusions, limits)
    check_ids("exclude_item_ids", request.exclude_item_ids, limits.max_exclusions, limits)
    count = len(request.item_ids) + len(request.exclude_item_ids)
    if count > limits.max_exclusions:
        raise InvalidRequest("exclude_item_ids", f"at most {limits.max_exclusions} ids counting item_ids, got {count}")
    rows = [row_of(item_id) for item_id in request.item_ids]
    unknown = [item_id for item_id, row in zip(request.item_ids, rows, strict=True) if row is None]
    if unknown:
        raise InvalidRequest("item_ids", f"not in the serving catalog: {unknown[:20]}")
    return Query(
        features={},
        k=request.num_candidates,
        exclude=frozenset(request.item_ids) | frozenset(request.exclude_item_ids),
        display=display_selection(request.display_attributes, display_names) if request.display_attributes else (),
        request_id=request.request_id,
        items=tuple(row for row in rows if row is not None),
        filter=compile_filter(request.filter, attribute_kinds or {}, limits),
    )
