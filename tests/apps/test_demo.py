"""`retrieval-demo`, the README's first command, end to end: train, export, serve, query, print titles."""

import os
import re
import subprocess
import sys

import pytest

from model.bundle.reader import open_bundle
from model.bundle.reserved import DEFAULT_MODEL_NAME
from model.data import load_movielens_100k


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_trains_serves_and_prints_candidates_with_titles(tmp_path):
    models = tmp_path / "models"
    args = ["--models-dir", str(models), "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--port", "0"]
    cmd = [sys.executable, "-m", "apps.demo", *args, "--users", "1,42", "-k", "5", "--exit-after-queries"]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=580, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert f"serving {DEFAULT_MODEL_NAME} version 1 on 127.0.0.1:" in out
    bundle = open_bundle(models / DEFAULT_MODEL_NAME / "1")
    titles = dict(
        zip(bundle.load_items().ids.tolist(), bundle.load_items().display["movie_title"].tolist(), strict=True)
    )
    log = load_movielens_100k().interactions
    for user in ("1", "42"):
        rated = set(log.item_ids[log.user_ids == user].tolist())
        block = out.split(f"user {user} (excluding the ")[1].split("\n\n")[0]
        lines = [line for line in block.splitlines() if re.match(r"\s+\d+\s", line)]
        assert len(lines) == 5
        for rank, line in enumerate(lines):
            position, item_id, _score, title = line.split(maxsplit=3)
            assert int(position) == rank and titles[item_id] == title
            assert item_id not in rated  # the demo excludes what the user already rated
    # the filtered answer: user 1's candidates among the comedies released in 1990 or later, none of them rated
    attributes = bundle.load_items().attributes
    genre = dict(zip(bundle.load_items().ids.tolist(), attributes["genre"].to_pylist(), strict=True))
    year = dict(zip(bundle.load_items().ids.tolist(), attributes["release_year"].to_pylist(), strict=True))
    header = "comedies released in 1990 or later for user 1 (--filter genre=Comedy --filter 'release_year>=1990', "
    filtered = out.split(header)[1].split("\n\n")[0]
    lines = [line for line in filtered.splitlines() if re.match(r"\s+\d+\s", line)]
    assert len(lines) == 5
    rated = set(log.item_ids[log.user_ids == "1"].tolist())
    for rank, line in enumerate(lines):
        position, item_id, _score, title = line.split(maxsplit=3)
        assert int(position) == rank and titles[item_id] == title and item_id not in rated
        assert "Comedy" in genre[item_id] and year[item_id] is not None and year[item_id] >= 1990
    similar = out.split("movies like item 50 ")[1].split("\n\n")[0]
    lines = [line for line in similar.splitlines() if re.match(r"\s+\d+\s", line)]
    assert len(lines) == 5
    for rank, line in enumerate(lines):
        position, item_id, _score, title = line.split(maxsplit=3)
        assert int(position) == rank and titles[item_id] == title and item_id != "50"


def test_follow_up_query_repeats_the_demo_request_and_says_what_it_leaves_out():
    from apps.demo import follow_up_query
    from service.client import build_request

    request = build_request("42", 10, features={"age": 36.0, "gender": "M"}, exclude=["50", "181"])
    text = follow_up_query("127.0.0.1:50051", request, 10)
    command, note = text.splitlines()
    assert command == "retrieval-query --target 127.0.0.1:50051 --user 42 -k 10 --feature age=36.0 --feature gender=M"
    assert note == (
        "(the demo's request for user 42, less its --exclude of the 2 movies they rated: "
        "some of those may rank among the answers)"
    )


def test_the_filtered_request_is_the_users_request_with_the_demo_filter():
    from apps.demo import DEMO_FILTER, filter_flags, filtered_request
    from service.client import build_request
    from service.generated.retrieval.v1 import retrieval_pb2 as pb

    request = build_request("1", 5, exclude=["50"], request_id="demo-1")
    kinds = {"genre": pb.ATTRIBUTE_KIND_MULTI_CATEGORICAL, "release_year": pb.ATTRIBUTE_KIND_NUMERIC}
    filtered = filtered_request(request, kinds)
    assert (filtered.user_id, list(filtered.exclude_item_ids), filtered.request_id) == ("1", ["50"], "demo-1-filtered")
    (genre,) = filtered.filter.categorical
    (year,) = filtered.filter.numeric
    assert (genre.namespace, list(genre.allow), list(genre.deny)) == ("genre", ["Comedy"], [])
    assert (year.namespace, year.op, year.value) == ("release_year", pb.NumericRestrict.OPERATOR_GREATER_EQUAL, 1990)
    assert not request.HasField("filter")  # the unfiltered request is left as it was
    assert filter_flags(DEMO_FILTER) == "--filter genre=Comedy --filter 'release_year>=1990'"
