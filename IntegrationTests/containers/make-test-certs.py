#!/usr/bin/env python3
"""Certificates for the installer test, good and bad, written to DIR:

  good.pem/.key        leaf (SAN IP 198.18.0.1), intermediate, root: in order, 90 days
  good.pfx             the same chain and key as PKCS#12, password "pfx-password", CAs out of order
  misordered.pem       leaf, root, intermediate (good.key)
  incomplete.pem       leaf, intermediate's issuer missing: leaf only (good.key)
  expired.pem/.key     valid from 400 days ago until 10 days ago
  nosan.pem/.key       no subjectAltName
  long.pem/.key        valid for 3 years
  mismatch.key         a key that is not good.pem's
Dates come from the clock; nothing here is a secret worth keeping."""
import datetime
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

out = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)


def key():
    return ec.generate_private_key(ec.SECP256R1())


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert(subject_key, subject, issuer_key, issuer, ca, days=90, start=-1, san=True):
    b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
         .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now + datetime.timedelta(days=start)).not_valid_after(now + datetime.timedelta(days=start + days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san and not ca:
        import ipaddress
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("198.18.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def pem(*certs):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def write(path, data):
    with open(f"{out}/{path}", "wb") as f:
        f.write(data)


def keypem(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


root_key, inter_key, leaf_key = key(), key(), key()
root = cert(root_key, "mstunnel test root", root_key, "mstunnel test root", ca=True, days=3650)
inter = cert(inter_key, "mstunnel test intermediate", root_key, "mstunnel test root", ca=True, days=1825)
leaf = cert(leaf_key, "gateway.corp.test", inter_key, "mstunnel test intermediate", ca=False)
write("good.pem", pem(leaf, inter, root))
write("good.key", keypem(leaf_key))
write("misordered.pem", pem(leaf, root, inter))
write("incomplete.pem", pem(leaf))
write("good.pfx", pkcs12.serialize_key_and_certificates(b"gateway", leaf_key, leaf, [root, inter],
                                                        serialization.BestAvailableEncryption(b"pfx-password")))
for label, kwargs in {"expired": dict(start=-400, days=390), "nosan": dict(san=False), "long": dict(days=3 * 365)}.items():
    k = key()
    write(f"{label}.pem", pem(cert(k, "gateway.corp.test", inter_key, "mstunnel test intermediate", ca=False, **kwargs), inter, root))
    write(f"{label}.key", keypem(k))
write("mismatch.key", keypem(key()))
