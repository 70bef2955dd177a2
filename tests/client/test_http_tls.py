"""The HTTP and HTTPS client helpers (``client.http``, ``client.tls``) against the lab's real
servers (root, session lab), and their input checks (no root)."""
import pytest

from pathspider.base import Conn
from pathspider.client import http, tls
from pathspider.lab import plan

FAMILIES = [4, 6]
TIMEOUT = 1.5


def target(cls, family, host=11):
    return str(plan.target_address(cls, host, family))


# ---- no root ---------------------------------------------------------------------------------

def test_target_data_is_checked_before_it_reaches_a_request():
    assert http.authority("T1.Clean.Lab.Test.", "198.18.64.1") == "t1.clean.lab.test"
    assert http.authority("", "2001:db8:100::1") == "[2001:db8:100::1]"
    assert http.authority("", "198.18.64.1") == "198.18.64.1"
    for bad in ("evil\r\nX-Injected: 1", "a b", "host:80", "x/y"):
        with pytest.raises(ValueError):
            http.http_get("198.18.64.1", 80, bad, timeout=0.1)
        with pytest.raises(ValueError):
            tls.https_get("198.18.64.1", 443, bad, timeout=0.1)
    with pytest.raises(ValueError):
        http.authority("", "not-an-address")


def test_requests_ask_for_h2c_only_when_told():
    plain = http.request("t1.clean.lab.test")
    assert plain.startswith(b"GET / HTTP/1.1\r\nHost: t1.clean.lab.test\r\n")
    assert b"Connection: close\r\n" in plain and b"Upgrade" not in plain
    upgrade = http.request("t1.clean.lab.test", b"AAMAAABk")
    assert b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" in upgrade
    assert b"HTTP2-Settings: AAMAAABk\r\n" in upgrade and upgrade.endswith(b"\r\n\r\n")


def test_tls_contexts_check_certificates_only_with_a_ca_file():
    ctx = tls.context(tls.ALPN_H2)
    assert ctx.verify_mode.name == "CERT_NONE" and not ctx.check_hostname
    assert tls.context(tls.ALPN_H2) is ctx                  # shared


# ---- on the lab ------------------------------------------------------------------------------

def run(lab, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in the client namespace."""
    return lab.call_in_client(fn, *args, **kwargs)


def assert_ok(res, protocol, alpn=None):
    assert (res.state, res.status, res.protocol, res.alpn, res.error) == \
        (Conn.OK, 200, protocol, alpn, None), res
    assert res.sp > 0 and res.sip in (str(plan.CLIENT_V4), str(plan.CLIENT_V6))


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_http_get_with_and_without_an_h2c_upgrade(lab, family):
    clean, none = target("clean", family), target("h2-none", family)
    assert_ok(run(lab, http.http_get, clean, 80, "t11.clean.lab.test", TIMEOUT), "http/1.1")
    assert_ok(run(lab, http.http_get, clean, 80, "", TIMEOUT, h2c=True), "h2")
    assert_ok(run(lab, http.http_get, none, 80, "t11.h2-none.lab.test", TIMEOUT, h2c=True),
              "http/1.1")


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_https_get_reports_what_alpn_chose(lab, family):
    clean, none = target("clean", family, 12), target("h2-none", family, 12)
    assert_ok(run(lab, tls.https_get, clean, 443, "", TIMEOUT), "h2", "h2")
    assert_ok(run(lab, tls.https_get, clean, 443, "", TIMEOUT, tls.ALPN_HTTP1),
              "http/1.1", "http/1.1")
    assert_ok(run(lab, tls.https_get, none, 443, "", TIMEOUT), "http/1.1", "http/1.1")
    assert_ok(run(lab, tls.https_get, clean, 443, "", TIMEOUT, ()), "http/1.1")  # no ALPN


@pytest.mark.root
def test_https_get_verifies_against_a_ca_file_when_given(lab):
    clean = target("clean", 4, 13)
    assert_ok(run(lab, tls.https_get, clean, 443, "t13.clean.lab.test", TIMEOUT,
                  cafile=lab.ca_file), "h2", "h2")
    wrong = run(lab, tls.https_get, clean, 443, "", TIMEOUT, cafile=lab.ca_file)
    assert wrong.state == Conn.FAILED and "CERTIFICATE_VERIFY_FAILED" in wrong.error
    assert wrong.sp > 0 and wrong.status is None


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_failures_keep_the_local_port(lab, family):
    cases = [
        (http.http_get, target("unreachable", family), 80, {}, Conn.FAILED),
        (tls.https_get, target("unreachable", family), 443, {}, Conn.FAILED),
        (http.http_get, target("blackhole", family), 80, {}, Conn.TIMEOUT),
        (tls.https_get, target("blackhole", family), 443, {}, Conn.TIMEOUT),
        (http.http_get, target("h2c-drop", family), 80, {"h2c": True}, Conn.TIMEOUT),
        (http.http_get, target("clean", family), 443, {}, Conn.FAILED),   # TLS, not HTTP
    ]
    for fn, ip, port, kwargs, state in cases:
        res = run(lab, fn, ip, port, "", 1.0, **kwargs)
        assert (res.state, res.status) == (state, None), (fn.__name__, ip, res)
        assert res.sp > 0 and res.error, res


@pytest.mark.root
def test_h2c_drop_breaks_only_the_upgrade_and_not_tls(lab):
    addr = target("h2c-drop", 6, 14)
    assert_ok(run(lab, http.http_get, addr, 80, "", TIMEOUT), "http/1.1")
    assert_ok(run(lab, tls.https_get, addr, 443, "", TIMEOUT), "h2", "h2")
