"""serve refuses an exposed address without a token, before it opens anything."""

from __future__ import annotations

import pytest

from imagen_actors.cli import exitcodes
from imagen_actors.cli.main import main
from imagen_actors.web.security import parse_bind


def test_a_non_loopback_bind_without_a_token_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--bind", "0.0.0.0:8080"]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert "--token-env NAME" in err and "not a loopback address" in err


def test_an_unset_token_variable_is_a_config_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGEN_DASH_TOKEN_UNSET", raising=False)
    code = main(["serve", "--bind", "0.0.0.0:8080", "--token-env", "IMAGEN_DASH_TOKEN_UNSET"])
    assert code == exitcodes.CONFIG
    assert "export IMAGEN_DASH_TOKEN_UNSET" in capsys.readouterr().err
    monkeypatch.setenv("IMAGEN_DASH_TOKEN_UNSET", "short")
    code = main(["serve", "--bind", "0.0.0.0:8080", "--token-env", "IMAGEN_DASH_TOKEN_UNSET"])
    assert code == exitcodes.CONFIG


def test_bind_addresses() -> None:
    assert parse_bind("127.0.0.1:8080").loopback
    assert parse_bind("[::1]:9000").loopback
    assert parse_bind("[::1]:9000").hypercorn() == "[::1]:9000"
    assert parse_bind("localhost:1").loopback
    assert not parse_bind("0.0.0.0:8080").loopback
    assert not parse_bind("192.168.1.5:8080").loopback
    for bad in ("8080", "host:", "host:http", "1.2.3.4:70000"):
        assert main(["serve", "--bind", bad]) == exitcodes.USAGE
