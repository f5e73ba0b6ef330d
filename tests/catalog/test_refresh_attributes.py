"""A catalog refresh keeps the parent's filterable attributes, with their values from the new item table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.bundle.attributes import AttributeColumn, AttributeKind
from model.bundle.reader import list_versions, open_bundle
from model.catalog_refresh import refresh_catalog
from model.catalog_table import CatalogTableError
from tests.catalog.helpers import export_item_bundle, item_rows, write_table
from tests.service.helpers import item_id

KEPT = list(range(100))
NEW = [1000, 1001, 1002]
SHELF_CHANGED = [5, 6]  # only their `shelf` attribute changes: the lineage counts them as changed


def _shelf(r: int) -> str | None:
    return None if r % 5 == 4 else f"shelf{r % 3}"


def _parent_attributes(num_items: int) -> dict[str, AttributeColumn]:
    columns = item_rows(range(num_items))
    return {
        "genre": AttributeColumn(AttributeKind.MULTI_CATEGORICAL, [g.split() for g in columns["genres"]]),
        "year": AttributeColumn(AttributeKind.NUMERIC, columns["year"]),  # also an item-tower feature
        "shelf": AttributeColumn(AttributeKind.CATEGORICAL, [_shelf(r) for r in range(num_items)]),
    }


def _new_table(seed: int = 3) -> dict[str, list]:
    """The new catalog: the tower's columns, and the attributes by name (`year` serves both)."""
    columns = item_rows(KEPT + NEW, seed=seed)
    columns["genre"] = [g.split() for g in columns["genres"]]
    rows = KEPT + NEW
    columns["shelf"] = [("moved" if r in SHELF_CHANGED else _shelf(r)) for r in rows]
    return columns


@pytest.fixture
def parent(tmp_path: Path) -> Path:
    path, _ = export_item_bundle(tmp_path / "models", num_items=120, filterable=_parent_attributes(120))
    return path


def test_the_new_version_carries_the_attributes_from_the_new_table(tmp_path: Path, parent: Path) -> None:
    columns = _new_table(seed=0)  # seed 0: the parent's genres and years for the kept items
    result = refresh_catalog(parent, write_table(tmp_path / "items.parquet", columns))

    bundle = open_bundle(result.path)
    assert bundle.manifest.filterable_attributes == open_bundle(parent).manifest.filterable_attributes
    attributes = bundle.load_items().attributes
    assert list(attributes) == ["genre", "year", "shelf"]
    assert attributes["genre"].type == pa.list_(pa.string()) and attributes["year"].type == pa.float64()
    assert attributes["genre"].to_pylist() == columns["genre"]
    assert attributes["year"].to_pylist() == columns["year"]
    assert attributes["shelf"].to_pylist() == columns["shelf"]
    assert result.lineage["examples"]["changed"] == [item_id(r) for r in SHELF_CHANGED]
    assert result.lineage["items_added"] == len(NEW)


def test_a_text_table_gives_a_multi_valued_attribute_as_space_separated_tokens(tmp_path: Path, parent: Path) -> None:
    columns = _new_table()
    text = {**columns, "genre": [" ".join(tokens) for tokens in columns["genre"]]}
    text["shelf"] = [s or "" for s in columns["shelf"]]
    result = refresh_catalog(parent, write_table(tmp_path / "items.csv", text))

    attributes = pq.read_table(result.path / "items.parquet").select(["genre", "year", "shelf"]).to_pydict()
    assert attributes["genre"] == columns["genre"] and any(len(tokens) == 2 for tokens in columns["genre"])
    assert attributes["year"] == columns["year"]
    assert attributes["shelf"] == columns["shelf"]  # an empty CSV field is no token, as at export


def test_a_table_without_an_attribute_column_is_refused_naming_it(tmp_path: Path, parent: Path) -> None:
    columns = _new_table()
    del columns["shelf"]
    with pytest.raises(CatalogTableError, match="shelf"):
        refresh_catalog(parent, write_table(tmp_path / "items.parquet", columns))
    assert list_versions(parent.parent) == [1]
