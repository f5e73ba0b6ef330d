"""Item filters: the attribute table, the validated predicate and its row mask, errors naming the field, and the
restrict-string syntax of the client."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from model.bundle.attributes import AttributeColumn, AttributeKind, attribute_array
from service.attributes import AttributeTable
from service.errors import InvalidRequest
from service.filter_syntax import parse_filter
from service.filters import compile_filter
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from tests.service.helpers import LIMITS

OP = pb.NumericRestrict

# Five items: brand (categorical), genres (multi-valued), year (numeric; NaN: unknown).
BRANDS = ["acme", None, "zeta", "acme", "omega"]
GENRES = [["Comedy", "Drama"], ["Comedy"], [], ["Horror"], ["Drama", "Horror"]]
YEARS = [1995.0, 1980.0, math.nan, 2001.0, 1990.0]


def _table() -> AttributeTable:
    columns = {
        "brand": AttributeColumn(AttributeKind.CATEGORICAL, BRANDS),
        "genres": AttributeColumn(AttributeKind.MULTI_CATEGORICAL, GENRES),
        "year": AttributeColumn(AttributeKind.NUMERIC, YEARS),
    }
    return AttributeTable(5, {name: (c.kind, attribute_array(c)) for name, c in columns.items()})


def _rows(message: pb.ItemFilter) -> list[int]:
    table = _table()
    predicate = compile_filter(message, table.kinds, LIMITS)
    assert predicate is not None
    return np.flatnonzero(predicate.mask(table)).tolist()


def _cat(namespace: str, allow: tuple[str, ...] = (), deny: tuple[str, ...] = ()) -> pb.CategoricalRestrict:
    return pb.CategoricalRestrict(namespace=namespace, allow=allow, deny=deny)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (pb.ItemFilter(categorical=[_cat("genres", allow=("Comedy",))]), [0, 1]),
        (pb.ItemFilter(categorical=[_cat("genres", allow=("Comedy", "Horror"))]), [0, 1, 3, 4]),  # OR within allow
        (pb.ItemFilter(categorical=[_cat("genres", allow=("Comedy",), deny=("Drama",))]), [1]),  # deny wins
        (pb.ItemFilter(categorical=[_cat("genres", deny=("Horror",))]), [0, 1, 2]),  # no tokens pass a deny
        (pb.ItemFilter(categorical=[_cat("brand", allow=("acme", "nope"))]), [0, 3]),  # unknown tokens match nothing
        (pb.ItemFilter(categorical=[_cat("brand", deny=("acme",))]), [1, 2, 4]),
        (pb.ItemFilter(categorical=[_cat("brand", allow=("acme",)), _cat("genres", allow=("Horror",))]), [3]),  # AND
        (
            pb.ItemFilter(numeric=[pb.NumericRestrict(namespace="year", op=OP.OPERATOR_GREATER_EQUAL, value=1990)]),
            [0, 3, 4],
        ),
        (pb.ItemFilter(numeric=[pb.NumericRestrict(namespace="year", op=OP.OPERATOR_LESS, value=1990)]), [1]),
        (pb.ItemFilter(numeric=[pb.NumericRestrict(namespace="year", op=OP.OPERATOR_LESS_EQUAL, value=1990)]), [1, 4]),
        (pb.ItemFilter(numeric=[pb.NumericRestrict(namespace="year", op=OP.OPERATOR_EQUAL, value=2001)]), [3]),
        (pb.ItemFilter(numeric=[pb.NumericRestrict(namespace="year", op=OP.OPERATOR_GREATER, value=1995)]), [3]),
        # an item without a value fails even "≠"
        (
            pb.ItemFilter(numeric=[pb.NumericRestrict(namespace="year", op=OP.OPERATOR_NOT_EQUAL, value=1995)]),
            [1, 3, 4],
        ),
    ],
)
def test_masks_follow_the_proto_semantics(message: pb.ItemFilter, expected: list[int]) -> None:
    assert _rows(message) == expected


def test_an_empty_filter_compiles_to_none() -> None:
    assert compile_filter(pb.ItemFilter(), _table().kinds, LIMITS) is None


def _num(namespace: str, op: int, value: float) -> pb.ItemFilter:
    return pb.ItemFilter(numeric=[pb.NumericRestrict(namespace=namespace, op=op, value=value)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "field", "text"),
    [
        (pb.ItemFilter(categorical=[_cat("colour", allow=("red",))]), "filter.categorical[0].namespace", "unknown"),
        (
            pb.ItemFilter(categorical=[_cat("genres"), _cat("year", allow=("1990",))]),
            "filter.categorical[1].namespace",
            "numeric",
        ),
        (_num("genres", OP.OPERATOR_LESS, 1), "filter.numeric[0].namespace", "multi_categorical"),
        (pb.ItemFilter(numeric=[pb.NumericRestrict(namespace="year", value=1)]), "filter.numeric[0].op", "operator"),
        (_num("year", OP.OPERATOR_LESS, math.nan), "filter.numeric[0].value", "NaN"),
        (
            pb.ItemFilter(categorical=[_cat("genres", deny=("Drama", ""))]),
            "filter.categorical[0].deny[1]",
            "characters",
        ),
    ],
)  # fmt: skip
def test_bad_filters_name_the_field(message: pb.ItemFilter, field: str, text: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        compile_filter(message, _table().kinds, LIMITS)
    assert error.value.field == field and text in error.value.message


def test_token_lists_are_grouped_by_token() -> None:
    table = _table()
    assert np.flatnonzero(table.rows_with_any("genres", ["Drama"])).tolist() == [0, 4]
    assert np.flatnonzero(table.rows_with_any("brand", [])).tolist() == []
    np.testing.assert_array_equal(table.values("year"), np.array(YEARS))


def test_a_column_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ValueError, match="needs double"):
        AttributeTable(2, {"year": (AttributeKind.NUMERIC, pa.array(["1990", "2000"]))})


def test_restrict_strings_parse_into_an_item_filter() -> None:
    kinds = {"genres": pb.ATTRIBUTE_KIND_MULTI_CATEGORICAL, "year": pb.ATTRIBUTE_KIND_NUMERIC}
    message = parse_filter(["genres=Comedy", "genres=Drama", "genres!=Horror", "year>=1990", "year!=1995"], kinds)
    assert [(c.namespace, list(c.allow), list(c.deny)) for c in message.categorical] == [
        ("genres", ["Comedy", "Drama"], ["Horror"])
    ]
    assert [(n.namespace, n.op, n.value) for n in message.numeric] == [
        ("year", OP.OPERATOR_GREATER_EQUAL, 1990.0),
        ("year", OP.OPERATOR_NOT_EQUAL, 1995.0),
    ]
    assert parse_filter(["year=2001"], kinds).numeric[0].op == OP.OPERATOR_EQUAL
    assert list(parse_filter(["year=2001"]).categorical[0].allow) == ["2001"]  # kinds unknown: a token


@pytest.mark.parametrize(("text", "error"), [("genres", "expected NAME=TOKEN"), ("year>=new", "needs a number")])
def test_bad_restrict_strings_are_named(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_filter([text])
