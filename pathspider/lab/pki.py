"""The lab's certificates: a lab CA, made at ``lab up``, and the HTTPS server's certificate.

``make(rundir)`` writes, into the lab's run directory:

* ``ca.crt``: the lab CA's certificate (public; give it to a client that should verify,
  e.g. ``--ca-file`` of the ``h2`` plugin). The CA's private key is never written: it signs
  the server certificate and is gone, so nothing can issue further lab certificates.
* ``server.crt``: the certificate of every target's HTTPS server, issued by the lab CA for
  ``lab.test``, ``*.lab.test`` and ``*.<class>.lab.test`` of every class, so that it verifies
  for the target names ``tN.<class>.lab.test`` (not for bare addresses).
* ``server.key``: its private key, created with mode 0600 (never world-readable, not even for
  a moment).

A new CA is made with every lab, so a CA file from a lab that is gone verifies nothing.
"""
import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import plan

CA_FILE = "ca.crt"
CERT_FILE = "server.crt"
KEY_FILE = "server.key"
#: Certificates are valid from a day ago (clock skew) for this many days.
VALID_DAYS = 365


def server_names():
    """The DNS names the server certificate is issued for."""
    return [plan.DOMAIN, f"*.{plan.DOMAIN}"] + [f"*.{name}.{plan.DOMAIN}"
                                                 for name in plan.CLASS_NAMES]


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pathspider lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject, issuer, public_key):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))


def make_ca():
    """A fresh CA: (private key, self-signed certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("pathspider lab CA")
    cert = (_builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server(ca_key, ca_cert, names=None):
    """A server key and certificate for ``names`` (default :func:`server_names`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in (names or server_names())]
    cert = (_builder(_name(plan.DOMAIN), ca_cert.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _write(path, data, mode):
    """Write ``data`` to a new file created with ``mode`` (replacing an older file)."""
    tmp = path + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make(rundir):
    """Make a new lab CA and server certificate in ``rundir``; returns the three paths."""
    ca_key, ca_cert = make_ca()
    key, cert = make_server(ca_key, ca_cert)
    pem = serialization.Encoding.PEM
    paths = {name: os.path.join(rundir, name) for name in (CA_FILE, CERT_FILE, KEY_FILE)}
    _write(paths[KEY_FILE], key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()), 0o600)
    _write(paths[CERT_FILE], cert.public_bytes(pem) + ca_cert.public_bytes(pem), 0o644)
    _write(paths[CA_FILE], ca_cert.public_bytes(pem), 0o644)
    return paths[CA_FILE], paths[CERT_FILE], paths[KEY_FILE]
