"""`refresh_catalog` and `retrieval-catalog`: embeddings, index, lineage, refusals, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest

from model.bundle.index import IndexSpec, l2_normalize
from model.bundle.item_tower import ItemTowerMissingError, load_item_tower
from model.bundle.reader import list_versions, open_bundle
from model.catalog_cli import main
from model.catalog_refresh import refresh_catalog
from model.catalog_table import CatalogTableError
from model.evaluation import exact_top_k
from tests.catalog.helpers import ITEM_SPEC, export_item_bundle, item_rows, tower_features, write_table
from tests.service.helpers import item_id

KEPT = [r for r in range(250) if not 10 <= r < 20]
NEW = list(range(1000, 1040))  # ids the item tower never saw: the OOV id row, carried by genres and year
YEAR_CHANGED = [20, 21, 22, 23, 24]
TITLE_CHANGED = 30


def _new_catalog() -> dict[str, list]:
    columns = item_rows(KEPT + NEW)
    for r in YEAR_CHANGED:
        columns["year"][columns["item_id"].index(item_id(r))] = 2031.0
    columns["title"][columns["item_id"].index(item_id(TITLE_CHANGED))] = "A new title"
    return columns


def _hidden_entries(model_dir: Path) -> list[str]:
    return [p.name for p in model_dir.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_refresh_embeds_with_the_item_tower_and_records_lineage(tmp_path: Path, similarity: str) -> None:
    parent, tower = export_item_bundle(tmp_path / "models", similarity=similarity)
    columns = _new_catalog()
    result = refresh_catalog(parent, write_table(tmp_path / "items.parquet", columns))

    assert result.path == parent.parent / "2"
    bundle = open_bundle(result.path)  # checksums verified
    expected = np.asarray(tower(tower_features(columns), training=False), dtype=np.float32)
    expected = l2_normalize(expected) if similarity == "cosine" else expected
    np.testing.assert_allclose(bundle.load_item_embeddings(), expected, atol=1e-5)
    items = bundle.load_items()
    assert items.ids.tolist() == columns["item_id"]
    assert items.display["title"].tolist() == columns["title"]
    parent_popularity = open_bundle(parent).load_items().popularity
    np.testing.assert_array_equal(items.popularity, [parent_popularity[r] for r in KEPT] + [0] * len(NEW))

    manifest = bundle.manifest
    assert manifest.item_tower == ITEM_SPEC and manifest.query_tower == open_bundle(parent).manifest.query_tower
    assert manifest.item_count == len(KEPT) + len(NEW)
    lineage = manifest.lineage
    assert lineage is not None
    assert lineage["parent_version"] == 1 and lineage["source_table"] == "items.parquet"
    assert (lineage["items_added"], lineage["items_removed"], lineage["items_changed"]) == (40, 60, 6)
    assert lineage["items_unchanged"] == len(KEPT) - 6
    assert lineage["examples"]["changed"] == [item_id(r) for r in [*YEAR_CHANGED, TITLE_CHANGED]]
    changes = pq.read_table(result.path / "catalog_changes.parquet").to_pydict()
    by_kind = {kind: sorted(i for i, k in zip(changes["item_id"], changes["change"], strict=True) if k == kind)
               for kind in ("added", "removed", "changed")}  # fmt: skip
    assert by_kind["added"] == [item_id(r) for r in NEW]
    assert by_kind["removed"] == sorted(item_id(r) for r in [*range(10, 20), *range(250, 300)])
    assert by_kind["changed"] == [item_id(r) for r in [*YEAR_CHANGED, TITLE_CHANGED]]
    for tower_dir in ("query_tower", "item_tower"):
        assert (
            manifest.files[f"{tower_dir}/saved_model.pb"]
            == open_bundle(parent).manifest.files[f"{tower_dir}/saved_model.pb"]
        )


def test_refreshed_index_answers_like_exact_search_over_the_new_embeddings(tmp_path: Path) -> None:
    parent, _ = export_item_bundle(tmp_path / "models")
    path = refresh_catalog(parent, write_table(tmp_path / "items.csv", _new_catalog())).path
    bundle = open_bundle(path)
    embeddings = bundle.load_item_embeddings()
    queries = np.random.default_rng(3).standard_normal((20, embeddings.shape[1])).astype(np.float32)
    exact, _ = exact_top_k(queries, embeddings, 10, rng=np.random.default_rng(0))
    _, found = bundle.load_index().search(queries, 10)
    np.testing.assert_array_equal(found, exact)
    assert bundle.manifest.index_recall.recall == 1.0


def test_ivf_refresh_reuses_the_trained_quantizer_and_records_recall(tmp_path: Path) -> None:
    spec = IndexSpec("IVF6,Flat", nprobe=2)
    parent, _ = export_item_bundle(tmp_path / "models", index_spec=spec)
    path = refresh_catalog(parent, write_table(tmp_path / "items.parquet", _new_catalog())).path
    old, new = open_bundle(parent).load_index(), open_bundle(path).load_index()
    centroids = [faiss.extract_index_ivf(i).quantizer.reconstruct_n(0, 6) for i in (old, new)]
    np.testing.assert_array_equal(centroids[0], centroids[1])
    manifest = open_bundle(path).manifest
    assert manifest.index == spec and new.ntotal == manifest.item_count == 280
    assert manifest.lineage is not None and manifest.lineage["index_quantizer"] == "reused from the parent"
    embeddings = open_bundle(path).load_item_embeddings()
    exact, _ = exact_top_k(embeddings, embeddings, 100, rng=np.random.default_rng(0))
    _, found = new.search(embeddings, 100)
    recall = np.mean([len(np.intersect1d(a, b)) / 100 for a, b in zip(exact, found, strict=True)])
    assert manifest.index_recall.k == 100 and abs(manifest.index_recall.recall - recall) < 1e-9
    assert 0.3 < recall < 1.0


@pytest.mark.parametrize(
    ("edit", "column"),
    [
        (lambda c: c.pop("year"), "year"),
        (lambda c: c.pop("title"), "title"),
        (lambda c: c.update(year=["x", *c["year"][1:]]), "year"),
        (lambda c: c.update(item_id=[c["item_id"][1], *c["item_id"][1:]]), "item_id"),
        (lambda c: c.update(item_id=["", *c["item_id"][1:]]), "item_id"),
    ],
    ids=["missing-feature", "missing-display", "not-a-number", "duplicate-id", "empty-id"],
)
def test_a_bad_table_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path, edit, column: str) -> None:
    parent, _ = export_item_bundle(tmp_path / "models")
    columns = item_rows(range(50))
    columns["year"] = [str(year) for year in columns["year"]]  # a CSV holds text anyway
    edit(columns)
    table = write_table(tmp_path / "bad.csv", columns)
    with pytest.raises(CatalogTableError) as error:
        refresh_catalog(parent, table)
    message = str(error.value)
    assert "\n" not in message and str(table) in message and f"'{column}'" in message, message
    assert list_versions(parent.parent) == [1] and _hidden_entries(parent.parent) == []


def test_an_old_bundle_without_an_item_tower_still_loads_and_is_refused(tmp_path: Path) -> None:
    parent, _ = export_item_bundle(tmp_path / "models", item_tower=False)
    assert "item_tower" not in json.loads((parent / "manifest.json").read_text())
    bundle = open_bundle(parent)
    assert bundle.manifest.item_tower is None and bundle.load_item_embeddings().shape == (300, 16)
    with pytest.raises(ItemTowerMissingError, match="has no item tower"):
        load_item_tower(bundle)
    table = write_table(tmp_path / "items.parquet", item_rows(range(10)))
    with pytest.raises(ItemTowerMissingError, match="retrain and export"):
        refresh_catalog(parent, table)
    assert list_versions(parent.parent) == [1] and _hidden_entries(parent.parent) == []


def test_cli_writes_a_version_and_refuses_a_bad_table_with_exit_code_2(tmp_path: Path, capsys) -> None:
    parent, _ = export_item_bundle(tmp_path / "models")
    table = write_table(tmp_path / "items.parquet", _new_catalog())
    assert main([str(parent), str(table), "--batch-size", "7", "--new-version", "5"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {parent.parent / '5'}: parent version 1, 40 added, 60 removed, 6 changed" in out
    columns = item_rows(range(5))
    columns.pop("genres")
    assert main([str(parent), str(write_table(tmp_path / "bad.parquet", columns))]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("retrieval-catalog: ") and "'genres'" in err and "\n" not in err
    assert list_versions(parent.parent) == [1, 5]
