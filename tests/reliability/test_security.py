"""Scenario 9: TLS, mutual TLS and bearer tokens (with expiry) on a real `retrieval-serve` process.

Certificates come from the openssl CLI: a CA, a server certificate, a client certificate, and a second,
unrelated CA with its own client certificate. Wrong CA, missing client certificate, plaintext: the handshake
fails (UNAVAILABLE). Missing, unknown or expired tokens: UNAUTHENTICATED. Health needs no token. The
server runs at DEBUG log level, and its whole output must contain no token and no private key.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from service.auth import BearerToken, parse_token_lines
from service.client import RetrievalClient
from service.config import ServerConfig
from tests.reliability.helpers import Results, ServeProcess, wait_for

SCENARIO = "security"
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

GOOD, LATER, EXPIRED, WRONG = "tok-good-7f3a9c", "tok-later-51be02", "tok-expired-c0ffee", "tok-wrong-deadbe"
OUTCOMES: dict[str, str] = {}


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(cwd: Path, name: str) -> None:
    _openssl(cwd, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
    _openssl(
        cwd, "req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}"
    )


def _signed(cwd: Path, name: str, ca: str, cn: str, extensions: str) -> None:
    _openssl(cwd, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
    _openssl(cwd, "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl(
        cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-out", f"{name}.pem", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("certs")
    _ca(cwd, "ca")
    _ca(cwd, "other-ca")
    _signed(
        cwd, "server", "ca", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    _signed(cwd, "client", "ca", "client", "extendedKeyUsage=clientAuth\n")
    _signed(cwd, "rogue", "other-ca", "rogue", "extendedKeyUsage=clientAuth\n")
    return cwd


@pytest.fixture(scope="module")
def server(reliability_bundle: Path, certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """mTLS (client certificates signed by ca.pem) and tokens: one unlimited, one valid for a day, one expired."""
    now = datetime.now(UTC)
    tokens = tmp_path_factory.mktemp("auth") / "tokens.txt"
    tokens.write_text(
        f"{GOOD}\n{LATER} expires={(now + timedelta(days=1)).isoformat()}\n"
        f"{EXPIRED} expires={(now - timedelta(minutes=1)).isoformat()}\n"
    )
    args = (
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--tls-client-ca", str(certs / "ca.pem"), "--auth-token-file", str(tokens), "--log-level", "DEBUG",
    )  # fmt: skip
    process = ServeProcess(reliability_bundle.parent.parent, tmp_path_factory.mktemp("serve") / "serve.log", *args,
                           wait_serving=False)  # fmt: skip
    with process:
        yield process


def _client(
    server: ServeProcess, certs: Path, *, ca: str = "ca", cert: str | None = "client", token: str | None = None
):  # type: ignore[no-untyped-def]
    return RetrievalClient(
        server.target,
        root_certificates=(certs / f"{ca}.pem").read_bytes(),
        client_certificate=(certs / f"{cert}.pem").read_bytes() if cert else None,
        client_key=(certs / f"{cert}.key").read_bytes() if cert else None,
        token=token,
        server_name="localhost",
        timeout_s=5,
    )


def _outcome(name: str, call) -> str:  # type: ignore[no-untyped-def]
    try:
        result = call()
    except grpc.RpcError as error:
        outcome = f"{error.code().name}: {error.details()}"
    else:
        outcome = f"OK {result}" if isinstance(result, str) else f"OK {len(result.candidates)} candidates"
    OUTCOMES[name] = outcome
    return outcome


def test_mtls_and_tokens(server: ServeProcess, certs: Path) -> None:
    with _client(server, certs, token=GOOD) as client:
        wait_for(lambda: client.health() == "SERVING", timeout_s=60)
    cases = {
        "mTLS + valid token": (dict(token=GOOD), "OK"),
        "mTLS + token valid for a day": (dict(token=LATER), "OK"),
        "mTLS + expired token": (dict(token=EXPIRED), "UNAUTHENTICATED: bearer token expired"),
        "mTLS + unknown token": (dict(token=WRONG), "UNAUTHENTICATED: missing or invalid bearer token"),
        "mTLS + no token": (dict(), "UNAUTHENTICATED: missing or invalid bearer token"),
        "no client certificate": (dict(cert=None, token=GOOD), "UNAVAILABLE"),
        "client certificate from another CA": (dict(cert="rogue", token=GOOD), "UNAVAILABLE"),
        "client trusts another CA (wrong server CA)": (dict(ca="other-ca", token=GOOD), "UNAVAILABLE"),
    }
    for name, (kwargs, expected) in cases.items():
        with _client(server, certs, **kwargs) as client:
            assert _outcome(name, lambda c=client: c.retrieve("u1", 3)).startswith(expected), (name, OUTCOMES[name])
    with _client(server, certs) as client:  # a client certificate, no token
        assert _outcome("health without a token", client.health) == "OK SERVING"
    with RetrievalClient(server.target, token=GOOD, timeout_s=5) as plaintext:
        assert _outcome("plaintext + valid token", lambda: plaintext.retrieve("u1", 3)).startswith("UNAVAILABLE")


def test_no_secrets_in_logs(server: ServeProcess, certs: Path, results: Results) -> None:
    log = server.log()
    secrets = [GOOD, LATER, EXPIRED, WRONG]
    key_lines = [
        line for name in ("server", "client", "ca") for line in (certs / f"{name}.key").read_text().splitlines()[1:-1]
    ]
    leaked = [s for s in [*secrets, *key_lines, "PRIVATE KEY"] if s in log]
    results.record(
        SCENARIO,
        outcomes=dict(OUTCOMES),
        server_log_lines=len(log.splitlines()),
        secrets_searched=len(secrets) + len(key_lines) + 1,
        secrets_found_in_log=len(leaked),
        rejections_logged=log.count("unauthenticated call rejected"),
    )
    assert "unauthenticated call rejected" in log and "reason=expired" in log
    assert not leaked, f"{len(leaked)} secrets appear in the server log"


def test_token_file_format_expiry_and_reprs() -> None:
    tokens = parse_token_lines(
        f"{GOOD}\n\n  two words \n{LATER} expires=2030-01-01T00:00:00Z\n{EXPIRED} expires=2020-01-01\n"
    )
    assert tokens[:2] == (GOOD, "two words")
    assert tokens[2] == BearerToken(LATER, datetime(2030, 1, 1, tzinfo=UTC))
    assert isinstance(tokens[3], BearerToken) and tokens[3].expires_at == datetime(2020, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="line 1") as error:
        parse_token_lines(f"{GOOD} expires=soon")
    assert GOOD not in str(error.value)
    assert GOOD not in repr(BearerToken(GOOD)) and GOOD not in repr(ServerConfig(Path("."), "m", auth_tokens=(GOOD,)))
