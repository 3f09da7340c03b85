#!/usr/bin/env python3
"""Writes the bad-token corpus: corpus.json (every token and the reason it must fail),
jwks.json (the keys the auth plugin trusts) and keys/ (the private keys, test-only).

The tokens are fixed text, committed, so the unit test (Tests/GatewayAuthTests/
BadTokenCorpusTests.swift) and the stock-client test (IntegrationTests/netns/
06_bad_tokens.sh) read the same bytes. Times are absolute: valid tokens expire in 2099,
the expired one in 2020, so the corpus holds until then. Re-run to regenerate (keys are
kept if present): python3 make-corpus.py
"""
import base64, hashlib, hmac, json, os, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
TENANT = "7d3b1c2a-0000-4000-8000-00000000c0de"
OTHER_TENANT = "99999999-0000-4000-8000-000000000bad"
ISSUER = f"https://login.corpus.test/{TENANT}/v2.0"
AUDIENCE = "3678c9e9-9681-447a-974d-d19f668fcd88"  # the Tunnel Gateway app id, the default
IAT = 1767225600          # 2026-01-01T00:00:00Z
EXP = 4102444800          # 2100-01-01T00:00:00Z
PAST_EXP = 1577836800     # 2020-01-01
FAR_FUTURE = 4070908800   # 2099-01-01


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key(name, make):
    path = os.path.join(HERE, "keys", name + ".pem")
    if os.path.exists(path):
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), None)
    k = make()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
    return k


rsa_make = lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_make = lambda: ec.generate_private_key(ec.SECP256R1())
RSA1 = key("rsa-1", rsa_make)      # the issuer's RS256 key
RSA2 = key("rsa-2", rsa_make)      # the issuer's second RS256 key (rotation)
EC1 = key("ec-1", ec_make)         # the issuer's ES256 key
ENC1 = key("enc-1", rsa_make)      # published with use: enc, so never a signing key
ATTACKER = key("attacker", rsa_make)  # another issuer's key, not in the JWKS


def rsa_jwk(k, kid, use="sig"):
    n = k.public_key().public_numbers()
    return {"kty": "RSA", "use": use, "kid": kid, "alg": "RS256",
            "n": b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")), "e": b64(n.e.to_bytes(3, "big"))}


def ec_jwk(k, kid):
    n = k.public_key().public_numbers()
    return {"kty": "EC", "use": "sig", "kid": kid, "alg": "ES256", "crv": "P-256",
            "x": b64(n.x.to_bytes(32, "big")), "y": b64(n.y.to_bytes(32, "big"))}


def raw(obj) -> bytes:
    """JSON text as given (a str is used verbatim, so duplicates and arrays can be written)."""
    return obj.encode() if isinstance(obj, str) else json.dumps(obj, separators=(",", ":")).encode()


def sign(header, payload, k=RSA1, alg="RS256"):
    signing_input = (b64(raw(header)) + "." + b64(raw(payload))).encode()
    if alg == "RS256":
        sig = k.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = decode_dss_signature(k.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "HS256":
        sig = hmac.new(k, signing_input, hashlib.sha256).digest()
    elif alg == "none":
        sig = b""
    return signing_input.decode() + "." + b64(sig)


def claims(**changes):
    c = {"aud": AUDIENCE, "iss": ISSUER, "tid": TENANT, "iat": IAT, "nbf": IAT, "exp": EXP,
         "oid": "0c0ffee0-0000-4000-8000-000000000001", "sub": "corpus-subject",
         "upn": "corpus.user@corp.test", "deviceid": "corpus-device", "ver": "2.0"}
    for name, value in changes.items():
        if value is None:
            c.pop(name, None)
        else:
            c[name] = value
    return c


H_RSA = {"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}
H_EC = {"alg": "ES256", "typ": "JWT", "kid": "ec-1"}
good = sign(H_RSA, claims())
h, p, s = good.split(".")
public_pem = RSA1.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
flipped_sig = s[:10] + ("A" if s[10] != "A" else "B") + s[11:]
tampered_payload = b64(raw(claims(upn="admin@corp.test")))

refused = [
    # (name, why it must fail, expected code, text the reason contains, token)
    ("alg-none", "unsigned token: anyone could write it", "algorithmNotAllowed", "alg 'none'",
     sign({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, claims(), alg="none")),
    ("alg-missing", "no algorithm: nothing says how to verify it", "malformed", "no string 'alg'",
     sign({"typ": "JWT", "kid": "rsa-1"}, claims())),
    ("hs256-with-rsa-public-key", "the public key used as an HMAC secret (key confusion)", "algorithmNotAllowed", "HMAC",
     sign({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), k=public_pem, alg="HS256")),
    ("rs256-header-on-es256-key", "the header names an algorithm the key is not for", "algorithmNotAllowed", "cannot verify alg 'RS256'",
     sign({"alg": "RS256", "typ": "JWT", "kid": "ec-1"}, claims())),
    ("wrong-aud", "issued for another application", "badAudience", "not one of the configured audiences",
     sign(H_RSA, claims(aud="api://another-app"))),
    ("wrong-iss", "issued by someone else, signed with the right key", "badIssuer", "is not the configured issuer",
     sign(H_RSA, claims(iss="https://login.corpus.test/elsewhere/v2.0"))),
    ("wrong-tid", "right issuer, tenant not allowed", "tenantNotAllowed", "not in allowedTenants",
     sign(H_RSA, claims(tid=OTHER_TENANT))),
    ("other-tenant-right-key", "another tenant's token (its issuer and tid), signed by the right key", "badIssuer", "is not the configured issuer",
     sign(H_RSA, claims(iss=f"https://login.corpus.test/{OTHER_TENANT}/v2.0", tid=OTHER_TENANT))),
    ("expired", "exp in 2020", "expired", "token expired",
     sign(H_RSA, claims(exp=PAST_EXP, iat=PAST_EXP - 3600, nbf=PAST_EXP - 3600))),
    ("nbf-in-future", "not valid before 2099", "notYetValid", "not valid before",
     sign(H_RSA, claims(nbf=FAR_FUTURE))),
    ("iat-in-future", "issued in 2099", "issuedInFuture", "issued in the future",
     sign(H_RSA, claims(iat=FAR_FUTURE, nbf=None))),
    ("exp-missing", "a token that never expires", "missingClaim", "no 'exp'",
     sign(H_RSA, claims(exp=None))),
    ("exp-not-a-number", "exp as a string", "malformed", "'exp' is a string",
     sign(H_RSA, claims(exp="4102444800"))),
    ("unknown-kid", "a kid the issuer never published", "unknownKey", "not among the issuer's keys",
     sign({"alg": "RS256", "typ": "JWT", "kid": "rsa-nobody"}, claims(), k=ATTACKER)),
    ("no-kid-several-keys", "no kid while two RS256 keys could have signed it", "unknownKey", "has no 'kid'",
     sign({"alg": "RS256", "typ": "JWT"}, claims())),
    ("tampered-payload", "upn changed after signing", "badSignature", "signature does not verify",
     h + "." + tampered_payload + "." + s),
    ("tampered-signature", "one signature character changed", "badSignature", "signature does not verify",
     h + "." + p + "." + flipped_sig),
    ("truncated", "cut short inside the signature", "badSignature", "signature does not verify",
     good[: len(good) - 40]),
    ("signature-missing", "header and payload only", "malformed", "3 dot-separated parts",
     h + "." + p),
    ("two-dots-only", "no content at all", "malformed", "empty JWT header or payload", ".."),
    ("one-megabyte", "1 MiB: bounded before any parsing", "malformed", "the limit is",
     None),  # built by the readers: see "generated" below
    ("header-not-json", "header is base64url of text", "malformed", "header is not JSON",
     b64(b"this is not json") + "." + p + "." + s),
    ("payload-not-json", "payload is base64url of text", "malformed", "payload is not JSON",
     h + "." + b64(b"{\"aud\": oops}") + "." + s),
    ("payload-is-array", "a JSON array where the claims object belongs", "malformed", "top level is not an object",
     sign(H_RSA, json.dumps([claims()]))),
    ("header-is-array", "a JSON array where the header object belongs", "malformed", "top level is not an object",
     sign('["RS256","rsa-1"]', claims())),
    ("duplicate-aud", "aud repeated: right first, wrong last (RFC 7519 §4)", "malformed", "repeats the member name 'aud'",
     sign(H_RSA, json.dumps(claims())[:-1] + ',"aud":"api://another-app"}')),
    ("duplicate-alg", "alg repeated in the header", "malformed", "repeats the member name 'alg'",
     sign('{"alg":"RS256","typ":"JWT","kid":"rsa-1","alg":"none"}', claims())),
    ("wrong-typ", "a DPoP proof is not an access token", "malformed", "'typ' is 'dpop+jwt'",
     sign({"alg": "RS256", "typ": "dpop+jwt", "kid": "rsa-1"}, claims())),
    ("other-issuer-key", "all claims right, signed by another issuer's key under our kid", "badSignature", "signature does not verify",
     sign(H_RSA, claims(), k=ATTACKER)),
    ("jwks-key-use-enc", "signed by a key the JWKS publishes for encryption only", "unknownKey", "not among the issuer's keys",
     sign({"alg": "RS256", "typ": "JWT", "kid": "enc-1"}, claims(), k=ENC1)),
    ("crit-header", "a critical extension nobody here understands", "malformed", "'crit'",
     sign({"alg": "RS256", "typ": "JWT", "kid": "rsa-1", "crit": ["exp"]}, claims())),
    ("jku-elsewhere", "the header points at an attacker's key set", "malformed", "carries 'jku'",
     sign({"alg": "RS256", "typ": "JWT", "kid": "rsa-1", "jku": "https://attacker.test/jwks.json"}, claims(), k=ATTACKER)),
    ("x5u-elsewhere", "the header points at an attacker's certificate", "malformed", "carries 'x5u'",
     sign({"alg": "RS256", "typ": "JWT", "kid": "rsa-1", "x5u": "https://attacker.test/cert.pem"}, claims(), k=ATTACKER)),
    ("embedded-jwk", "the header carries its own key", "malformed", "carries 'jwk'",
     sign({"alg": "RS256", "typ": "JWT", "kid": "rsa-1", "jwk": rsa_jwk(ATTACKER, "rsa-1")}, claims(), k=ATTACKER)),
    ("no-user", "neither oid nor sub: nobody to log in", "missingClaim", "neither 'oid' nor 'sub'",
     sign(H_RSA, claims(oid=None, sub=None))),
    ("deep-nesting", "two thousand nested arrays in a claim", "malformed", "nests deeper than",
     sign(H_RSA, json.dumps(claims())[:-1] + ',"x":' + "[" * 2000 + "]" * 2000 + "}")),
    # The claims group policy matches on must be arrays of strings, bounded: they travel to
    # the gateway with the identity and into its logs and status.
    ("groups-not-array", "groups as one string: group policy could not read it", "malformed",
     "claim 'groups' must be an array of strings (found: string)",
     sign(H_RSA, claims(groups="Tunnel.Users"))),
    ("roles-entry-not-string", "a number among the roles", "malformed",
     "claim 'roles' must be an array of strings (entry 1: number)",
     sign(H_RSA, claims(roles=["Tunnel.Users", 7]))),
    ("groups-over-limit", "1,001 groups: more than the 1,000 accepted", "malformed",
     "claim 'groups' has 1001 entries; at most 1000 are accepted",
     sign(H_RSA, claims(groups=[f"g{i}" for i in range(1001)]))),
    ("group-name-too-long", "one group name of 257 bytes: more than the 256 accepted", "malformed",
     "claim 'groups': entry 0 is 257 bytes; at most 256 are accepted",
     sign(H_RSA, claims(groups=["g" * 257]))),
]

corpus = {
    "comment": "Generated by make-corpus.py. Every token under 'refused' must be refused with "
               "its code, and the reason must contain 'reason'; every token under 'accepted' "
               "must be accepted (so the test can fail).",
    "configuration": {"issuer": ISSUER, "audiences": [AUDIENCE], "allowedTenants": [TENANT]},
    "accepted": [
        {"name": "valid-rs256", "token": good, "userName": "corpus.user@corp.test"},
        {"name": "valid-es256", "token": sign(H_EC, claims(), k=EC1, alg="ES256"), "userName": "corpus.user@corp.test"},
        {"name": "valid-rs256-second-key", "token": sign({"alg": "RS256", "typ": "JWT", "kid": "rsa-2"}, claims(), k=RSA2),
         "userName": "corpus.user@corp.test"},
    ],
    "refused": [],
}
for name, why, code, reason, token in refused:
    entry = {"name": name, "why": why, "code": code, "reason": reason}
    if token is None:
        # 1 MiB: the valid token's header, then 'A' until the whole is 1,048,576 bytes.
        entry["generated"] = {"prefix": h + ".", "fill": "A", "length": 1 << 20}
    else:
        entry["token"] = token
    corpus["refused"].append(entry)

with open(os.path.join(HERE, "jwks.json"), "w") as f:
    json.dump({"keys": [rsa_jwk(RSA1, "rsa-1"), rsa_jwk(RSA2, "rsa-2"), ec_jwk(EC1, "ec-1"),
                        rsa_jwk(ENC1, "enc-1", use="enc")]}, f, indent=1)
    f.write("\n")
with open(os.path.join(HERE, "corpus.json"), "w") as f:
    json.dump(corpus, f, indent=1)
    f.write("\n")
print(f"{len(corpus['refused'])} refused, {len(corpus['accepted'])} accepted")
