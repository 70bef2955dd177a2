"""The lab's HTTPS and HTTP/2 services and the h2 classes: the upgrade parser, the HTTP/2
session, the certificates (no root), and the running servers seen from the client with plain
sockets and the ``ssl`` module (root, session lab), independent of any pathspider client."""
import os
import socket
import ssl
import stat

import h2.config
import h2.connection
import h2.events
import pytest
from cryptography import x509

from pathspider.lab import h2serve, httpd, impair, pki, plan, probe

FAMILIES = [4, 6]
SETTINGS = b"AAMAAABkAAQCAAAAAAIAAAAA"


def target(cls, family, host=1):
    return str(plan.target_address(cls, host, family))


def upgrade_head(connection=b"Upgrade, HTTP2-Settings", upgrade=b"h2c", method=b"GET",
                 settings=(SETTINGS,)):
    lines = [method + b" / HTTP/1.1", b"Host: t1.clean.lab.test", b"Connection: " + connection,
             b"Upgrade: " + upgrade] + [b"HTTP2-Settings: " + s for s in settings]
    return b"\r\n".join(lines)


# ---- no root ---------------------------------------------------------------------------------

def test_h2c_upgrade_requests_are_recognised_as_rfc_7540_says():
    assert httpd.h2c_upgrade(upgrade_head()) == (SETTINGS, b"GET")
    assert httpd.h2c_upgrade(upgrade_head(method=b"HEAD")) == (SETTINGS, b"HEAD")
    assert httpd.h2c_upgrade(upgrade_head(connection=b"keep-alive, upgrade,HTTP2-settings"))
    assert httpd.h2c_upgrade(upgrade_head(upgrade=b"websocket, H2C"))
    refused = [upgrade_head(connection=b"Upgrade"), upgrade_head(upgrade=b"h2"),
               upgrade_head(method=b"POST"), upgrade_head(settings=()),
               upgrade_head(settings=(SETTINGS, SETTINGS)),
               b"GET / HTTP/1.1\r\nHost: h2c.example",
               upgrade_head().replace(b"HTTP/1.1", b"HTTP/1.0"),
               upgrade_head() + b"\r\nnot a header line"]
    assert [httpd.h2c_upgrade(head) for head in refused] == [None] * len(refused)


def test_classes_say_which_targets_speak_h2():
    assert plan.serves_h2(target("clean", 4)) and plan.serves_h2(target("h2c-drop", 6))
    assert not plan.serves_h2(target("h2-none", 4)) and not plan.serves_h2(target("h2-none", 6))
    assert len(plan.CLASS_NAMES) <= 16      # the IPv6 plan has room for 16 classes
    text = impair.ruleset()
    answer = b"HTTP/1.1 101".hex()
    for net in (plan.CLASSES["h2c-drop"].net4, plan.CLASSES["h2c-drop"].net6):
        assert f"saddr {net} tcp sport 80 @ih,0,96 0x{answer} counter drop" in text


def _client_and_server(local_ip, method=b"GET"):
    """An upgraded HTTP/2 exchange between hyper-h2's client and H2Server, in memory."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = client.initiate_upgrade_connection()
    server = h2serve.H2Server(local_ip, upgrade=(settings, method))
    to_client = server.outgoing()
    events = client.receive_data(to_client)
    server.receive(client.data_to_send())
    return events


@pytest.mark.parametrize("method, body", [(b"GET", True), (b"HEAD", False)])
def test_h2_session_answers_the_upgraded_request_on_stream_1(method, body):
    events = _client_and_server("198.18.64.7", method)
    response = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert [e.stream_id for e in response] == [1]
    assert dict(response[0].headers)[b":status"] == b"200"
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert data == (httpd.page("198.18.64.7") if body else b"")
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == 1 for e in events)


def test_h2_session_refuses_bad_settings_and_survives_garbage():
    with pytest.raises(h2serve.H2_ERRORS):
        h2serve.H2Server("198.18.64.1", upgrade=(b"!!not base64!!", b"GET"))
    server = h2serve.H2Server("198.18.64.1")
    reply = server.receive(b"GET / HTTP/1.1\r\n\r\n")      # not an HTTP/2 preface
    assert server.closed and reply                          # GOAWAY


def test_certificates_chain_to_a_new_ca_and_the_key_is_private(tmp_path):
    ca_path, cert_path, key_path = pki.make(str(tmp_path))
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert not os.path.exists(tmp_path / "ca.key")
    ca = x509.load_pem_x509_certificate(open(ca_path, "rb").read())
    cert = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == set(pki.server_names())
    assert "*.h2-none.lab.test" in pki.server_names()
    first = open(ca_path, "rb").read()
    assert pki.make(str(tmp_path))[0] == ca_path and open(ca_path, "rb").read() != first
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)          # the key matches the certificate


# ---- on the lab ------------------------------------------------------------------------------

def raw_exchange(address, request, port=80, timeout=3.0):
    """Send ``request`` bytes, read until the server closes (or ``timeout``); the bytes."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    chunks = []
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        sock.sendall(request)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout:
            chunks.append(b"<timeout>")
    return b"".join(chunks)


def upgrade_request(address):
    return upgrade_head().replace(b"t1.clean.lab.test", address.encode()) + b"\r\n\r\n"


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_plain_http_is_answered_byte_for_byte_as_before(lab, family):
    for cls in ("clean", "h2-none", "h2c-drop"):
        addr = target(cls, family, 3)
        got = lab.call_in_client(raw_exchange, addr, b"GET / HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")
        assert got == httpd.response(200, httpd.page(addr)), cls


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_h2c_upgrade_is_accepted_by_h2_targets_only(lab, family):
    clean, none = target("clean", family, 4), target("h2-none", family, 4)
    upgraded = lab.call_in_client(raw_exchange, clean, upgrade_request(clean), 80, 1.0)
    assert upgraded.startswith(h2serve.SWITCHING)
    assert upgraded[len(h2serve.SWITCHING) + 3] == 0x4          # a SETTINGS frame first
    # h2-none: the same request gets exactly the HTTP/1.1 answer a plain request gets
    plain = lab.call_in_client(raw_exchange, none, upgrade_request(none))
    assert plain == httpd.response(200, httpd.page(none))


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_h2c_drop_swallows_the_upgrade_answer(lab, family):
    addr = target("h2c-drop", family, 5)
    before = _drops(lab, family)
    got = lab.call_in_client(raw_exchange, addr, upgrade_request(addr), 80, 1.5)
    assert got == b"<timeout>"
    assert _drops(lab, family) > before


def _drops(lab, family):
    return sum(c["packets"] for c in lab.status()["counters"]
               if c["class"] == "h2c-drop" and c["family"] == ("ip" if family == 4 else "ip6"))


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_alpn_offers_h2_except_on_h2_none(lab, family):
    for cls, chosen in (("clean", "h2"), ("h2c-drop", "h2"), ("h2-none", "http/1.1")):
        addr = target(cls, family, 6)
        assert lab.call_in_client(probe.tls_alpn, addr) == chosen, cls
        assert lab.call_in_client(probe.tls_alpn, addr, alpn=("http/1.1",)) == "http/1.1"


def _verified_get(address, host, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(3)
        sock.connect((address, plan.HTTPS_PORT))
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                        .encode())
            return tls.recv(65536)


@pytest.mark.root
def test_https_certificate_verifies_against_the_lab_ca(lab):
    assert stat.S_IMODE(os.stat(os.path.join(lab.rundir, pki.KEY_FILE)).st_mode) == 0o600
    addr = target("clean", 6, 7)
    reply = lab.call_in_client(_verified_get, addr, "t7.clean.lab.test", lab.ca_file)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and addr.encode() in reply
    with pytest.raises(ssl.SSLCertVerificationError):
        lab.call_in_client(_verified_get, addr, "www.example.com", lab.ca_file)
