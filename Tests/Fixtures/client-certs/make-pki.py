#!/usr/bin/env python3
"""Writes the client-certificate test PKI: CAs, users, CRLs (see README.md beside it).

Everything is PEM and committed, so the unit tests (Tests/GatewayAuthTests/
ClientCertificateTests.swift) and the gateway's integration test with the stock
openconnect (`openconnect -c alice-chain.pem -k alice.key`) read the same bytes.
Times are absolute: certificates and CRLs are valid until 2099, except dave (expired
in 2020) and crl-expired.pem (nextUpdate 2020). Keys are kept if present, so a re-run
only re-signs: python3 make-pki.py

Test-only keys. Never trust ca.pem anywhere but in a test.
"""
import datetime, os
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

HERE = os.path.dirname(os.path.abspath(__file__))
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")  # Microsoft User Principal Name


def utc(y, m=1, d=1, hh=0, mm=0, ss=0):
    return datetime.datetime(y, m, d, hh, mm, ss, tzinfo=datetime.timezone.utc)


NOT_BEFORE = utc(2024)
NOT_AFTER = utc(2099, 12, 31, 23, 59, 59)
CRL_LAST_UPDATE = utc(2025)
CRL_NEXT_UPDATE = utc(2099, 12, 1)


def path(name):
    return os.path.join(HERE, name)


def write(name, data: bytes):
    with open(path(name), "wb") as f:
        f.write(data)


def key(name):
    """The P-256 key in NAME.key, created on first run."""
    p = path(name + ".key")
    if os.path.exists(p):
        with open(p, "rb") as f:
            return serialization.load_pem_private_key(f.read(), None)
    k = ec.generate_private_key(ec.SECP256R1())
    write(name + ".key", k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    os.chmod(p, 0o600)
    return k


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def name(*attrs):
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


def ca_cert(subject, k, serial, issuer=None, issuer_key=None, path_length=None):
    issuer_name = issuer.subject if issuer else subject
    b = (x509.CertificateBuilder()
         .subject_name(subject).issuer_name(issuer_name)
         .public_key(k.public_key()).serial_number(serial)
         .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
         .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                      crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False))
    if issuer:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    return b.sign(issuer_key or k, hashes.SHA256())


def leaf(subject, k, serial, issuer, issuer_key, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), san=None,
         not_before=NOT_BEFORE, not_after=NOT_AFTER):
    b = (x509.CertificateBuilder()
         .subject_name(subject).issuer_name(issuer.subject)
         .public_key(k.public_key()).serial_number(serial)
         .not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def upn(value):
    # otherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY }; the value inside is a
    # UTF8String. cryptography takes the DER of the inner value (the [0] wrapper is its own).
    raw = value.encode()
    return x509.OtherName(UPN_OID, bytes([0x0C, len(raw)]) + raw)


def crl(issuer, issuer_key, revoked, number, last_update=CRL_LAST_UPDATE, next_update=CRL_NEXT_UPDATE):
    b = (x509.CertificateRevocationListBuilder()
         .issuer_name(issuer.subject)
         .last_update(last_update).next_update(next_update)
         .add_extension(x509.CRLNumber(number), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
    for serial in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last_update)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build())
    return b.sign(issuer_key, hashes.SHA256())


def main():
    O = (NameOID.ORGANIZATION_NAME, "mstunnel tests")

    ca_key = key("ca")
    ca = ca_cert(name((NameOID.COMMON_NAME, "mstunnel Test Root CA"), O), ca_key, 0x01)
    int_key = key("intermediate")
    inter = ca_cert(name((NameOID.COMMON_NAME, "mstunnel Test Intermediate CA"), O), int_key, 0x02,
                    issuer=ca, issuer_key=ca_key, path_length=0)
    bad_key = key("untrusted-ca")
    untrusted = ca_cert(name((NameOID.COMMON_NAME, "mstunnel Untrusted CA"), O), bad_key, 0x03)

    serials = {"alice": 0xA11CE, "bob": 0xB0B, "carol": 0xCA201, "dave": 0xDA7E, "erin": 0xE214, "frank": 0xF2A4C}

    alice = leaf(name((NameOID.COMMON_NAME, "alice"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"), O,
                      (NameOID.USER_ID, "alice01")),
                 key("alice"), serials["alice"], inter, int_key,
                 san=[upn("alice@corp.test"), x509.RFC822Name("alice@corp.test")])
    bob = leaf(name((NameOID.COMMON_NAME, "bob"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "Sales"), O,
                    (NameOID.EMAIL_ADDRESS, "bob@corp.test")),
               key("bob"), serials["bob"], ca, ca_key)
    carol = leaf(name((NameOID.COMMON_NAME, "carol"), O), key("carol"), serials["carol"], untrusted, bad_key,
                 san=[upn("carol@corp.test")])
    dave = leaf(name((NameOID.COMMON_NAME, "dave"), O), key("dave"), serials["dave"], ca, ca_key,
                not_before=utc(2019), not_after=utc(2020))
    erin = leaf(name((NameOID.COMMON_NAME, "erin"), O), key("erin"), serials["erin"], ca, ca_key,
                eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    frank = leaf(name((NameOID.ORGANIZATIONAL_UNIT_NAME, "Sales"), O), key("frank"), serials["frank"], ca, ca_key)

    write("ca.pem", pem(ca))
    write("ca-bundle.pem", pem(ca))
    write("intermediate.pem", pem(inter))
    write("untrusted-ca.pem", pem(untrusted))
    for n, c in [("alice", alice), ("bob", bob), ("carol", carol), ("dave", dave), ("erin", erin), ("frank", frank)]:
        write(n + ".pem", pem(c))
    write("alice-chain.pem", pem(alice) + pem(inter))

    # With a crlFile the plugin checks every certificate of the chain (CRL_CHECK_ALL), so
    # each file carries one CRL per CA: the root's and the intermediate's.
    ca_crl = crl(ca, ca_key, [serials["bob"]], 1)
    int_crl = crl(inter, int_key, [], 1)
    enc = serialization.Encoding
    write("crl.pem", ca_crl.public_bytes(enc.PEM) + int_crl.public_bytes(enc.PEM))
    write("crl.der", ca_crl.public_bytes(enc.DER) + int_crl.public_bytes(enc.DER))
    write("crl-alice-revoked.pem", crl(ca, ca_key, [serials["bob"]], 2).public_bytes(enc.PEM)
          + crl(inter, int_key, [serials["alice"]], 2).public_bytes(enc.PEM))
    write("crl-expired.pem", crl(ca, ca_key, [serials["bob"]], 1, utc(2019), utc(2020)).public_bytes(enc.PEM)
          + crl(inter, int_key, [], 1, utc(2019), utc(2020)).public_bytes(enc.PEM))
    print("wrote", HERE)


if __name__ == "__main__":
    main()
