"""retrieval-query against an in-process server, retrieval-serve flags, and retrieval-serve as a process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service import cli, query_cli
from service.client import RetrievalClient, feature_value
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from tests.service.helpers import MODEL, ServerThread


def test_query_cli_prints_ranked_ids_and_scores(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--target", server.target, "--user", "u1", "-k", "3", "--feature", "age=31", "--feature", "genres=drama"]
    assert query_cli.main([*argv, "--exclude", "item0001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"model {MODEL} version 1"
    rows = [line.split() for line in lines[1:]]
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert all(re.fullmatch(r"item\d{4}", r[1]) for r in rows) and "item0001" not in [r[1] for r in rows]
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_query_cli_reports_errors(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    assert query_cli.main(["--target", server.target, "--user", "u1", "-k", "0"]) == 1
    assert "INVALID_ARGUMENT: num_candidates" in (err := capsys.readouterr().err) and "(reason INVALID_FIELD)" in err
    assert query_cli.main(["--target", server.target, "--user", "u1", "--feature", "age"]) == 2


def test_feature_conversion() -> None:
    kinds = {"age": pb.FEATURE_KIND_FLOAT, "genres": pb.FEATURE_KIND_STRING_LIST, "n": pb.FEATURE_KIND_INT64}
    converted = query_cli.convert_features(["age=3.5", "genres=a,b", "n=4", "country=DE"], kinds)
    assert converted == {"age": 3.5, "genres": ["a", "b"], "n": 4, "country": "DE"}
    assert feature_value([1, 2.5]).float_list.values == [1.0, 2.5]
    assert feature_value(["x"]).string_list.values == ["x"]
    assert feature_value(7).int64_value == 7
    with pytest.raises(TypeError):
        feature_value(True)


def test_serve_flags_build_the_config(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("a\n\nb\n")
    args = cli.parse_args(
        ["--models-dir", str(tmp_path), "--model-name", "m", "--port", "0", "--max-batch-size", "8",
         "--max-k", "20", "--pin-version", "3", "--auth-token-file", str(tokens), "--gpu-device", "-1",
         "--index-mmap", "on", "--shard-index-across-gpus"]
    )  # fmt: skip
    config = cli.config_from_args(args)
    assert (config.index_mmap, config.shard_index_across_gpus) == ("on", True)
    defaults = cli.config_from_args(cli.parse_args(["--models-dir", ".", "--model-name", "m"]))
    assert (defaults.index_mmap, defaults.shard_index_across_gpus) == ("auto", False)
    assert (config.port, config.pinned_version, config.gpu_device, config.auth_tokens) == (0, 3, -1, ("a", "b"))
    assert (config.batcher.max_batch_size, config.limits.max_k) == (8, 20)
    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        cli.config_from_args(cli.parse_args(["--models-dir", ".", "--model-name", "m", "--tls-cert", "c.pem"]))


def test_serve_usage_errors_exit_2_naming_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--models-dir", str(tmp_path), "--model-name", "m"]
    missing = tmp_path / "no-such-tokens"
    assert cli.main([*base, "--auth-token-file", str(missing)]) == 2
    assert f"--auth-token-file {missing}: No such file or directory" in capsys.readouterr().err
    assert cli.main([*base, "--tls-cert", "c.pem"]) == 2
    assert cli.main([*base, "--workers", "0"]) == 2
    with pytest.raises(SystemExit) as bad_level:
        cli.parse_args([*base, "--log-level", "chatty"])
    assert bad_level.value.code == 2 and "choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR'" in capsys.readouterr().err
    assert cli.parse_args([*base, "--log-level", "debug"]).log_level == "DEBUG"
    with pytest.raises(SystemExit) as bad_mmap:
        cli.parse_args([*base, "--index-mmap", "always"])
    assert bad_mmap.value.code == 2 and "choose from 'auto', 'on', 'off'" in capsys.readouterr().err


def test_every_serve_flag_is_documented_and_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.parse_args(["--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0 and "(default: 1)" in text and "Exit status" in text
    flags = re.findall(r"^  (--[a-z-]+)", text, flags=re.MULTILINE)
    assert len(flags) >= 25
    for flag in flags:  # each flag's line (or the next) carries a help text
        assert re.search(rf"^  {flag}\b.*\n?\s+\S", text, flags=re.MULTILINE), flag
    with pytest.raises(SystemExit) as version:
        cli.parse_args(["--version"])
    assert version.value.code == 0 and re.match(r"retrieval-serve \S+", capsys.readouterr().out)


@pytest.mark.slow
def test_serve_process_answers_and_stops_on_sigterm(bundle_path: Path) -> None:
    command = [
        sys.executable, "-m", "service.cli", "--models-dir", str(bundle_path.parent.parent), "--model-name", MODEL,
        "--host", "127.0.0.1", "--port", "0", "--grace-period-s", "1",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert process.stdout is not None
        match = re.search(r"listening on (\S+:\d+)", process.stdout.readline())
        assert match, "no listening line"
        with RetrievalClient(match.group(1)) as client:
            deadline = time.monotonic() + 60
            while client.health() != "SERVING":  # the model loads after the port opens
                assert time.monotonic() < deadline, "never became SERVING"
                time.sleep(0.1)
            response = client.retrieve("u1", 2, timeout_s=60, request_id="cli")
            assert (len(response.candidates), response.request_id) == (2, "cli")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "shutting down" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_query_cli_json_prints_the_response_for_scripts(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--target", server.target, "--user", "u1", "-k", "3", "--exclude", "item0001", "--json"]
    assert query_cli.main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["model_name"], answer["model_version"]) == (MODEL, "1")  # int64 is a string in proto JSON
    assert [c["rank"] for c in answer["candidates"]] == [0, 1, 2]  # zeros printed too
    ids = [c["item_id"] for c in answer["candidates"]]
    assert len(ids) == 3 and "item0001" not in ids
    scores = [c["score"] for c in answer["candidates"]]
    assert scores == sorted(scores, reverse=True)


def test_query_cli_names_the_feature_it_cannot_convert(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert query_cli.main(["--target", server.target, "--user", "u1", "--feature", "age=abc"]) == 2
    assert capsys.readouterr().err == "retrieval-query: error: --feature age='abc': feature 'age' expects float\n"


def test_serve_exits_1_naming_the_address_it_cannot_bind(tmp_path: Path) -> None:
    with socket.socket() as holder:  # the port is taken, without SO_REUSEPORT
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        command = [
            sys.executable, "-m", "service.cli", "--models-dir", str(tmp_path), "--host", "127.0.0.1",
            "--port", str(port),
        ]  # fmt: skip
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.splitlines() == [f"retrieval-serve: error: cannot bind 127.0.0.1:{port}: Address already in use"]
    assert "listening" not in done.stdout  # one line, no traceback and no gRPC C++ log line
