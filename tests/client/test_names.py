"""The one host name check: what may go into a Host header or a DNS query."""
import re

import pytest

from pathspider.client.names import dns_name


@pytest.mark.parametrize("text,expected", [
    ("example.org", "example.org"),
    ("WWW.Example.ORG", "www.example.org"),
    ("example.org.", "example.org"),
    ("localhost", "localhost"),
    ("_dmarc.example.org", "_dmarc.example.org"),
    ("a-b--c.example", "a-b--c.example"),
    ("198.18.64.1", "198.18.64.1"),
    ("t1.clean.lab.test", "t1.clean.lab.test"),
    ("Bücher.example", "xn--bcher-kva.example"),
    ("пример.испытание", "xn--e1afmkfd.xn--80akhbyknj4f"),
    ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("a" * 63 + ".example", "a" * 63 + ".example"),
    (".".join(["a" * 63] * 3 + ["b" * 61]), ".".join(["a" * 63] * 3 + ["b" * 61])),
])
def test_valid_names_become_lower_case_ascii(text, expected):
    assert dns_name(text) == expected


@pytest.mark.parametrize("text,reason", [
    ("", "empty name"),
    (".", "empty name"),
    ("a\r\nX-Injected: 1", "control character"),
    ("a\nb", "control character"),
    ("a\x00b", "control character"),
    ("a b", "space"),
    ("host:8080", "':'"),
    ("a/b", "'/'"),
    ("user@host", "'@'"),
    ("[::1]", "'['"),
    ("a..b", "empty label"),
    (".a", "empty label"),
    ("a..", "empty label"),
    ("-a.example", "hyphen"),
    ("a-.example", "hyphen"),
    ("a" * 64 + ".example", "label longer than 63"),
    (".".join(["a" * 63] * 4), "longer than 253"),
    ("ü" * 2000, "longer than 253"),
    ("ü\r\n.example", "control character"),
    ("ü b.example", "space"),
    ("xn--zz-", "hyphen"),
    ("xn--a.example", "A-label"),
    ("\u200b", "internationalised"),  # maps to nothing: an empty label
])
def test_invalid_names_raise_a_short_reason(text, reason):
    with pytest.raises(ValueError, match=re.escape(reason)) as info:
        dns_name(text)
    assert len(str(info.value)) < 100


def test_non_text_is_refused():
    with pytest.raises(ValueError):
        dns_name(b"example.org")
