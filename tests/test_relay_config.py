"""RelayConfig: the environment variables, URL forms, TLS and keeping the token out of sight."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from flowengine.relay import RelayConfig

CREDS = {"SIGNALWIRE_PROJECT_ID": "proj-1", "SIGNALWIRE_API_TOKEN": "PT-s3cret"}


def test_nothing_set_means_no_config() -> None:
    assert RelayConfig.from_env(environ={}) is None


def test_credentials_alone_use_the_default_host() -> None:
    config = RelayConfig.from_env(environ=CREDS)
    assert config is not None
    assert config.url == "wss://relay.signalwire.com"
    assert config.authentication == {"project": "proj-1", "token": "PT-s3cret"}


@pytest.mark.parametrize(("space", "url"), [
    ("example.signalwire.com", "wss://example.signalwire.com"),
    ("127.0.0.1:8765", "wss://127.0.0.1:8765"),
    ("ws://127.0.0.1:8765", "ws://127.0.0.1:8765"),
    ("wss://example.signalwire.com/", "wss://example.signalwire.com"),
])
def test_space_accepts_a_host_host_port_or_url(space: str, url: str) -> None:
    config = RelayConfig.from_env(environ={**CREDS, "SIGNALWIRE_SPACE": space})
    assert config is not None and config.url == url


def test_relay_url_overrides_the_environment() -> None:
    environ = {**CREDS, "SIGNALWIRE_SPACE": "a.example", "FLOWENGINE_RELAY_URL": "ws://b:1"}
    assert RelayConfig.from_env(environ=environ).url == "ws://b:1"  # type: ignore[union-attr]
    assert RelayConfig.from_env("ws://c:2", environ=environ).url == "ws://c:2"  # type: ignore[union-attr]


def test_a_url_without_credentials_is_a_config() -> None:
    config = RelayConfig.from_env(environ={"FLOWENGINE_RELAY_URL": "ws://127.0.0.1:9"})
    assert config is not None and config.project == "" and config.token == ""


def test_jwt_replaces_project_and_token() -> None:
    config = RelayConfig.from_env(environ={"SIGNALWIRE_JWT_TOKEN": "jwt-s3cret"})
    assert config is not None
    assert config.authentication == {"jwt_token": "jwt-s3cret"}
    assert "jwt-s3cret" not in repr(config)


@pytest.mark.parametrize("environ", [{"SIGNALWIRE_PROJECT_ID": "p"},
                                     {"SIGNALWIRE_API_TOKEN": "PT-s3cret"}])
def test_half_the_credentials_is_an_error(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError) as info:
        RelayConfig.from_env(environ=environ)
    assert "PT-s3cret" not in str(info.value)


@pytest.mark.parametrize("url", ["http://example.com", "ws://", "example.com:notaport",
                                 "ws://user:PT-s3cret@example.com"])
def test_bad_urls_are_rejected_without_echoing_credentials(url: str) -> None:
    with pytest.raises(ValueError) as info:
        RelayConfig(url=url)
    assert "PT-s3cret" not in str(info.value)


def test_token_is_not_in_repr_or_str() -> None:
    config = RelayConfig.from_env(environ=CREDS)
    assert "PT-s3cret" not in repr(config) and "PT-s3cret" not in str(config)
    assert "proj-1" in repr(config)


def test_plain_ws_has_no_tls() -> None:
    assert RelayConfig(url="ws://127.0.0.1:1").ssl_context() is None


def test_wss_verifies_against_the_system_store_without_a_ca_file() -> None:
    # §1: the official SDK cannot reach wss without SIGNALWIRE_RELAY_CA_FILE; we can.
    context = RelayConfig(url="wss://example.signalwire.com").ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_ca_file_is_trusted_in_addition_to_the_system_store(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a CA")
    cert = tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(cert),
                    "-subj", "/CN=flowengine test CA"], check=True, capture_output=True)
    config = RelayConfig.from_env(environ={**CREDS, "SIGNALWIRE_RELAY_CA_FILE": str(cert)})
    assert config is not None and config.ca_file == str(cert)
    system_only = RelayConfig(url=config.url).ssl_context()
    context = config.ssl_context()
    assert context is not None and system_only is not None
    assert (context.cert_store_stats()["x509_ca"]
            == system_only.cert_store_stats()["x509_ca"] + 1)


def test_unreadable_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    config = RelayConfig(url="wss://x.example", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match=r"missing\.pem"):
        config.ssl_context()


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="request_timeout"):
        RelayConfig(url="ws://h:1", request_timeout=0)
