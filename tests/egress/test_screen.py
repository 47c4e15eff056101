"""The outbound screen sees a known secret in the encodings a request could carry it in,
and says plainly (in the README) what it cannot see."""

from __future__ import annotations

import base64
import gzip

import pytest

from hermitcrab.egress.secrets import find_secret

VALUE = "ghp_s3cr3tT0kenV4lue"
RAW = VALUE.encode()


@pytest.mark.parametrize(
    "carried",
    [RAW, RAW.upper(), RAW.hex().encode(), RAW.hex().upper().encode(), RAW[::-1], b"%67hp_s3cr3tT0kenV4lue",
     base64.b64encode(RAW), base64.b64encode(b"x" + RAW), base64.b64encode(b"xy" + RAW),
     base64.urlsafe_b64encode(b"?" + RAW), b'{"t": "\\u0067\\u0068p_s3cr3tT0kenV4lue"}',
     gzip.compress(b"payload " + RAW)],
    ids=["raw", "upper", "hex", "HEX", "reversed", "percent", "base64", "base64+1", "base64+2",
         "urlsafe+1", "json-escapes", "gzip"],
)  # fmt: skip
def test_a_secret_is_seen_however_it_is_encoded(carried: bytes) -> None:
    assert find_secret({"github": VALUE}, b"GET / HTTP/1.1", b"text " + carried + b" more") == "github"


def test_what_carries_no_secret_passes() -> None:
    assert find_secret({"github": VALUE}, b"hello world", base64.b64encode(b"hello world" * 10)) is None
