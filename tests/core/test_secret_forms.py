"""The forms of a secret the redactor masks besides its configured value (the end-to-end proof,
through the real daemon, is tests/ops/test_echoed_secrets_leak.py)."""

from __future__ import annotations

import base64
import subprocess
import sys

import httpx
import pytest
from pydantic import SecretStr

from forwarder.redaction import clip, register_secrets, register_token, scrub, scrub_value
from forwarder.secrets import AWS_VARIABLES, PROXY_VARIABLES, collect_secrets
from forwarder.sources.configcat.source import ConfigCatConfig
from sinks.sentinel.auth import token_of


def test_a_username_and_password_pair_yields_its_basic_credential() -> None:
    config = ConfigCatConfig(
        type="configcat",
        username="forms-user",
        password=SecretStr("forms-password-8c1f"),
        organizations=["0a3c4b52-7f1e-4d2a-9b61-5c8e2f7d9a10"],
    )
    basic = base64.b64encode(b"forms-user:forms-password-8c1f").decode()
    assert {"forms-user", "forms-password-8c1f", basic} <= collect_secrets(config)  # the generated user name too


def test_a_url_with_a_password_yields_it_decoded_and_as_basic(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, *AWS_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    found = collect_secrets(
        {"url": "https://ops:p%40ss-word-77@api.example.com/v1", "other": "https://api.example.com"}
    )
    assert found == {"p%40ss-word-77", "p@ss-word-77", base64.b64encode(b"ops:p@ss-word-77").decode()}


def test_base64_of_a_registered_secret_is_masked() -> None:
    register_secrets({"forms-b64-secret-31d0"})
    encoded = base64.b64encode(b"forms-b64-secret-31d0").decode()
    assert scrub(f"got {encoded}") == "got ***"


def test_a_cut_never_leaves_the_beginning_of_a_secret() -> None:
    register_secrets({"forms-cut-secret-5e2a9b"})
    text = "." * 190 + " forms-cut-secret-5e2a9b"
    assert "forms-cut" not in clip(text, 200)
    assert "forms-cut" in text[:200]  # the cut the old code made


def test_a_database_error_cut_to_its_first_line_never_leaves_the_beginning_of_a_password() -> None:
    from forwarder.journal.postgres.connection import first_line

    register_secrets({"forms-pg-password-9a7c1e"})
    error = RuntimeError("x" * 280 + " password=forms-pg-password-9a7c1e\nsecond line")  # straddles 300
    assert "forms-pg" not in first_line(error) and first_line(error).startswith("x" * 280)


def test_an_entra_token_is_masked_once_obtained() -> None:
    token = "forms-entra-token-4b7e0c2d"
    assert token in scrub(f"refused {token}")
    assert token_of({"access_token": token, "expires_in": 3599}) == (token, 3599.0)
    assert scrub(f"refused {token}") == "refused ***"


def test_only_the_latest_obtained_tokens_are_kept() -> None:
    """An hourly refresh for a year must not grow every scrub."""
    for i in range(100):
        register_token(f"forms-rotating-token-{i:04d}")
    assert scrub("forms-rotating-token-0099") == "***"
    assert scrub("forms-rotating-token-0000") == "forms-rotating-token-0000"


def test_a_credential_header_quoted_as_a_mapping_key_is_masked() -> None:
    """A receiver's echo of the request headers, as JSON (escaped once or not) or a Python dict:
    the value goes even when the forwarder never knew it (a proxy's credential)."""
    for echoed in (
        '{"Authorization": "Basic dW5rbm93bjpjcmVk"}',
        "{'proxy-authorization': 'Basic dW5rbm93bjpjcmVk'}",
        '{\\"api-token\\": \\"dW5rbm93bjpjcmVk\\"}',
    ):
        assert "dW5rbm93bjpjcmVk" not in scrub(echoed), echoed


def test_the_environments_proxy_password_and_aws_secret_key_are_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://squid:proxy-pass-6f0d@127.0.0.1:3128")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "forms-aws-secret-19be")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "forms-aws-session-7a2c")
    found = collect_secrets({})
    assert {"proxy-pass-6f0d", base64.b64encode(b"squid:proxy-pass-6f0d").decode()} <= found
    assert {"forms-aws-secret-19be", "forms-aws-session-7a2c"} <= found


def test_a_logged_object_rendered_as_text_is_scrubbed_as_that_text() -> None:
    """The JSON renderer writes str() of what it cannot encode (a URL, a path): after the
    redaction processor, so that text is what must be scrubbed."""
    register_secrets({"forms-object-secret-2d6a"})
    url = httpx.URL("https://ops:forms-object-secret-2d6a@api.example.com/v1")
    assert scrub_value({"url": url, "n": 3, "when": None}) == {
        "url": "https://ops:***@api.example.com/v1",
        "n": 3,
        "when": None,
    }
    plain = httpx.URL("https://api.example.com/v1")
    assert scrub_value(plain) is plain


def test_a_suppression_notice_never_quotes_the_beginning_of_a_secret() -> None:
    """The rate limit's notices name the message they suppress, cut to 200 characters: here a
    library's warning (``warnings`` logs the whole text as its template) with a secret at the cut."""
    secret = "forms-notice-secret-0c5b7e91"
    code = (
        "import logging, warnings\n"
        "from forwarder.logs import configure_logging\n"
        "from forwarder.redaction import register_secrets\n"
        f"register_secrets({{{secret!r}}})\n"
        "configure_logging('info', 'json')\n"
        "warnings.simplefilter('always')\n"
        "for _ in range(12):\n"
        f"    warnings.warn('.' * 160 + ' {secret}')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "similar log lines are suppressed" in result.stderr, result.stderr[-2000:]
    assert secret[:12] not in result.stderr, result.stderr[-2000:]
