"""No secret in a trace (serving/redact.py): URLs keep scheme, host, port and path only,
in log lines, dead-letter headers, `resonate dlq` and problem responses."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from serving.redact import REDACTED, install_log_redaction, redact_text, redact_url
from streams.deadletter import DETAIL, Source, failure_headers, headers_dict

TOKEN = "X-Amz-Signature=deadbeefSECRET"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"https://cdn.example:8443/a/b.ogg?{TOKEN}",
            f"https://cdn.example:8443/a/b.ogg?{REDACTED}",
        ),
        ("https://u:SECRET@h/x.ogg", f"https://{REDACTED}@h/x.ogg"),
        ("http://h/x.ogg#SECRET", f"http://h/x.ogg#{REDACTED}"),
        ("http://[::1]:80/x?SECRET", f"http://[::1]:80/x?{REDACTED}"),
        ("file:///music/a.ogg", "file:///music/a.ogg"),
        ("http://h:99999/x?SECRET", "http://h:99999/x"),  # unparsable port: cut at '?'
    ],
)
def test_urls_keep_what_finds_the_object_and_lose_the_rest(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "SECRET" not in redact_url(url)


def test_urls_inside_text_are_redacted_and_other_text_is_kept() -> None:
    text = f"HTTP 404 from https://s3.example/b/k.ogg?{TOKEN}, then 'http://a/b?c=SECRET'."
    out = redact_text(text)
    assert "SECRET" not in out
    assert out.startswith("HTTP 404 from https://s3.example/b/k.ogg?")
    assert redact_text("no url here ?token=x") == "no url here ?token=x"


def test_every_log_record_is_redacted_whoever_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").info("GET %s failed", f"https://h/x.ogg?{TOKEN}")
        try:
            raise RuntimeError(f"boom at https://h/y.ogg?{TOKEN}")
        except RuntimeError:
            logging.getLogger("other").exception("failed")
    assert "SECRET" not in caplog.text
    assert "https://h/x.ogg?" in caplog.text


def test_the_dead_letter_detail_is_redacted_before_it_is_cut() -> None:
    # A token starting right before the 500-byte cut must not survive as a prefix.
    detail = "x" * 470 + f" https://h/k.ogg?{TOKEN}"
    src = Source(topic="t", partition=0, offset=1, key=None, value=b"{}")
    h = headers_dict(
        failure_headers(src, reason="r", error="E", detail=detail, attempts=1, now_ms=0)
    )
    assert "deadbeef" not in h[DETAIL] and "SECRET" not in h[DETAIL]


def test_dlq_listing_shows_no_token_from_old_letters_or_payloads() -> None:
    from infra.dlq import _letter

    value = f'{{"track_id": "t", "audio_uri": "https://h/a.ogg?{TOKEN}"}}'.encode()
    rec = SimpleNamespace(
        partition=0,
        offset=3,
        key=b"t",
        value=value,
        headers=[(DETAIL, f"HTTP 404 from https://h/a.ogg?{TOKEN}".encode())],
    )
    letter = _letter("x.dlq", rec)
    shown = str(letter.summary())
    assert "SECRET" not in shown and "deadbeef" not in shown
    assert letter.value == value  # the bytes themselves are kept for a republish


def test_problem_responses_carry_no_token() -> None:
    from serving.api.problems import problem_response

    request = SimpleNamespace(url=SimpleNamespace(path="/search/audio"))
    resp = problem_response(request, 422, f"cannot read https://h/a.ogg?{TOKEN}")  # type: ignore[arg-type]
    assert b"SECRET" not in resp.body
