"""JWT access tokens (docs/security.md, "JWT"): bfx's own HS256 tokens and an external
issuer's (RS256 by a PEM key; RS256, ES256 and EdDSA by a JWKS file made here), and
every way of tampering with one — ``alg: none``, a wrong key, HS256 signed with the
issuer's public key, expired, not yet valid, another audience or issuer — refused with
the one 401 of DESIGN.md §7, in process and through the whole app."""

from __future__ import annotations

import json
import time

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from asgi_driver import finish, started
from bfx import errors
from bfx.security.auth import Principal
from bfx.security.keys import now_us
from bfx.security.tokens import (
    JwtAuthenticator,
    TokenIssuer,
    external_issuer,
    load_external_keys,
)
from bfx.security.users import new_user
from bfx.storage import MemoryStore

API = "/api/v1"
ISS = "https://issuer.example"
AUD = "bfx-api"


def _pem(private) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keyset(rsa_key, tmp_path_factory):
    """A JWKS file with an RSA, an EC P-256 and an Ed25519 key (kids r, e, o), plus a
    symmetric key that must never be taken from a key set."""
    es = ec.generate_private_key(ec.SECP256R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    keys = []
    for kid, private, alg in (("r", rsa_key, "RS256"), ("e", es, "ES256"), ("o", ed, "EdDSA")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(private.public_key()))
        keys.append({**jwk, "kid": kid, "use": "sig"})
    keys.append({"kty": "oct", "kid": "s", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"})
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    return path, {"r": (rsa_key, "RS256"), "e": (es, "ES256"), "o": (ed, "EdDSA")}


def claims(**over):
    now = int(time.time())
    base = {"iss": ISS, "aud": AUD, "sub": "svc-report", "scope": "substrates:read graph:read",
            "iat": now, "nbf": now, "exp": now + 300}  # fmt: skip
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def store():
    s = MemoryStore()
    s.add_user(new_user("alice", ["substrates:read", "graph:read"], "correct horse", now_us()))
    return s


def bfx_auth(store, external=None):
    return JwtAuthenticator(store.jwt_secret, lambda: store.users, external)


def refused(auth, token):
    with pytest.raises(errors.UnauthorizedError) as info:
        auth.authenticate(token)
    assert info.value.message.startswith("a valid credential is required")


# --- bfx's own tokens --------------------------------------------------------------------


def test_a_bfx_token_names_its_user_and_scopes(store):
    token = TokenIssuer(store.jwt_secret, 900).issue(store.users["alice"])
    got = bfx_auth(store).authenticate(token)
    assert got == Principal("user:alice", frozenset({"substrates:read", "graph:read"}))
    decoded = jwt.decode(token, store.jwt_secret, algorithms=["HS256"], audience="bfx")
    assert decoded["exp"] - decoded["iat"] == 900
    assert decoded["iss"] == "bfx"


def test_only_jwt_shaped_credentials_are_claimed(store):
    auth = bfx_auth(store)
    assert auth.authenticate("bfx_" + "0" * 60) is None
    assert auth.authenticate("not-a-token") is None
    refused(auth, "eyJhbGciOiJIUzI1NiJ9.e30.")  # the shape, no valid signature


@pytest.mark.parametrize(
    "tamper",
    ["alg_none", "wrong_secret", "expired", "not_yet_valid", "wrong_audience", "wrong_issuer",
     "no_exp", "payload_edited"],
)  # fmt: skip
def test_tampered_bfx_tokens_are_refused(store, tamper):
    user = store.users["alice"]
    now = int(time.time())
    good = {"iss": "bfx", "aud": "bfx", "sub": "alice", "uid": user.user_id,
            "scope": "substrates:read", "iat": now, "nbf": now, "exp": now + 300}  # fmt: skip
    secret = store.jwt_secret
    if tamper == "alg_none":
        token = jwt.encode(good, None, algorithm="none")
    elif tamper == "wrong_secret":
        token = jwt.encode(good, b"x" * 32, algorithm="HS256")
    elif tamper == "payload_edited":
        head, _, sig = jwt.encode(good, secret, algorithm="HS256").split(".")
        body = jwt.utils.base64url_encode(msgspec.json.encode({**good, "scope": "admin"})).decode()
        token = f"{head}.{body}.{sig}"
    else:
        changed = {
            "expired": {"exp": now - 120, "iat": now - 1000, "nbf": now - 1000},
            "not_yet_valid": {"nbf": now + 600, "iat": now},
            "wrong_audience": {"aud": "other"},
            "wrong_issuer": {"iss": "someone-else"},
            "no_exp": {"exp": None},
        }[tamper]
        token = jwt.encode({k: v for k, v in {**good, **changed}.items() if v is not None},
                           secret, algorithm="HS256")  # fmt: skip
    refused(bfx_auth(store), token)


def test_a_removed_users_token_fails_and_a_new_user_of_that_name_does_not_revive_it(store):
    auth = bfx_auth(store)
    old = TokenIssuer(store.jwt_secret, 900).issue(store.users["alice"])
    assert auth.authenticate(old) is not None  # and now cached
    store.remove_user("alice")
    refused(auth, old)
    store.add_user(new_user("alice", ["admin"], "another password", now_us()))
    refused(auth, old)
    fresh = TokenIssuer(store.jwt_secret, 900).issue(store.users["alice"])
    assert auth.authenticate(fresh).scopes == frozenset({"admin"})


def test_a_token_grants_only_scopes_its_user_still_holds(store):
    user = store.users["alice"]
    now = int(time.time())
    token = jwt.encode({"iss": "bfx", "aud": "bfx", "sub": "alice", "uid": user.user_id,
                        "scope": "substrates:read admin", "iat": now, "nbf": now,
                        "exp": now + 60}, store.jwt_secret, algorithm="HS256")  # fmt: skip
    # Signed with the right secret (a leaked one, say) yet asking for admin: not granted.
    assert bfx_auth(store).authenticate(token).scopes == frozenset({"substrates:read"})


# --- external issuers ----------------------------------------------------------------------


def test_an_rs256_issuer_by_public_key(store, rsa_key, tmp_path):
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(_pem(rsa_key))
    auth = bfx_auth(store, external_issuer(str(pem), "", ISS, AUD))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert auth.authenticate(token) == Principal(
        "jwt:svc-report", frozenset({"substrates:read", "graph:read"})
    )
    # Unknown scopes in the claim are ignored, not an error.
    token = jwt.encode(claims(scope="root substrates:write"), rsa_key, algorithm="RS256")
    assert auth.authenticate(token).scopes == frozenset({"substrates:write"})


@pytest.mark.parametrize(
    "tamper",
    ["alg_none", "wrong_key", "hs256_with_public_key", "expired", "not_yet_valid",
     "wrong_audience", "wrong_issuer", "no_sub", "bad_sub"],
)  # fmt: skip
def test_tampered_external_tokens_are_refused(store, rsa_key, tmp_path, tamper):
    pem = tmp_path / "issuer.pem"
    public = _pem(rsa_key)
    pem.write_bytes(public)
    auth = bfx_auth(store, external_issuer(str(pem), "", ISS, AUD))
    now = int(time.time())
    if tamper == "alg_none":
        token = jwt.encode(claims(), None, algorithm="none")
    elif tamper == "wrong_key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(claims(), other, algorithm="RS256")
    elif tamper == "hs256_with_public_key":
        # The classic confusion: HMAC keyed with the (public) PEM. PyJWT refuses to do
        # it for us, so sign by hand.
        import base64
        import hashlib
        import hmac

        def b64(raw: bytes) -> str:
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims()).encode())
        sig = hmac.new(public, signing.encode(), hashlib.sha256).digest()
        token = f"{signing}.{b64(sig)}"
    else:
        over = {
            "expired": {"exp": now - 120, "iat": now - 1000, "nbf": now - 1000},
            "not_yet_valid": {"nbf": now + 600},
            "wrong_audience": {"aud": "another-api"},
            "wrong_issuer": {"iss": "https://evil.example"},
            "no_sub": {"sub": None},
            "bad_sub": {"sub": "a b\nforged log line"},
        }[tamper]
        token = jwt.encode(claims(**over), rsa_key, algorithm="RS256")
    refused(auth, token)


def test_a_jwks_file_with_rs256_es256_and_eddsa_keys_chosen_by_kid(store, keyset):
    path, private = keyset
    keys = load_external_keys("", str(path))
    # The symmetric key of the set is never taken.
    assert sorted((k, alg) for k, (alg, _) in keys.items()) == [
        ("e", "ES256"), ("o", "EdDSA"), ("r", "RS256")]  # fmt: skip
    auth = bfx_auth(store, external_issuer("", str(path), ISS, AUD))
    for kid, (key, alg) in private.items():
        token = jwt.encode(claims(sub=f"svc-{kid}"), key, algorithm=alg, headers={"kid": kid})
        assert auth.authenticate(token).name == f"jwt:svc-{kid}"
    rsa_key = private["r"][0]
    # A kid naming another key, an unknown kid, and a token signed with the set's
    # symmetric key are all refused.
    refused(auth, jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "e"}))
    refused(auth, jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "zz"}))
    secret = jwt.utils.base64url_decode("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA")
    refused(auth, jwt.encode(claims(), secret, algorithm="HS256", headers={"kid": "s"}))


def test_external_tokens_are_refused_without_an_external_issuer(store, rsa_key):
    refused(bfx_auth(store), jwt.encode(claims(), rsa_key, algorithm="RS256"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "", ISS, ""), "need --jwt-public-key or --jwt-jwks"),
        (("k.pem", "", ISS, ""), "needs --jwt-issuer and --jwt-audience"),
        (("k.pem", "j.json", ISS, AUD), "not both"),
        (("missing.pem", "", ISS, AUD), "No such file"),
        (("garbage.pem", "", ISS, AUD), "not a PEM public key"),
        (("", "garbage.pem", ISS, AUD), "not JSON"),
        (("", "empty.json", ISS, AUD), "no RS256, ES256 or EdDSA signing key"),
        (("p256k.pem", "", ISS, AUD), "RSA, EC P-256 or Ed25519"),
    ],
)
def test_bad_external_settings_say_why(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.pem").write_text("hello")
    (tmp_path / "empty.json").write_text('{"keys": [{"kty": "oct", "k": "abc"}]}')
    other = ec.generate_private_key(ec.SECP256K1())
    (tmp_path / "p256k.pem").write_bytes(_pem(other))
    with pytest.raises(ValueError, match=message):
        external_issuer(*args)


# --- through the app ----------------------------------------------------------------------


def test_the_app_takes_external_tokens_and_refuses_tampered_ones_with_the_401(rsa_key, tmp_path):
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(_pem(rsa_key))
    driver = started(auth="required", jwt_public_key=str(pem), jwt_issuer=ISS, jwt_audience=AUD)
    try:
        good = jwt.encode(claims(), rsa_key, algorithm="RS256")
        bearer = [("authorization", f"Bearer {good}")]
        assert driver.get(f"{API}/substrates", headers=bearer).status == 200
        me = driver.get(f"{API}/auth/me", headers=bearer).json()
        assert me == {"principal": "jwt:svc-report", "kind": "jwt",
                      "scopes": ["substrates:read", "graph:read"]}  # fmt: skip
        forbidden = driver.post(f"{API}/substrates", {"expression_type": "constant",
                                "expression_code": "1"}, headers=bearer)  # fmt: skip
        assert forbidden.status == 403
        for token in (
            jwt.encode(claims(aud="x"), rsa_key, algorithm="RS256"),
            jwt.encode(claims(), None, algorithm="none"),
            jwt.encode(claims(exp=int(time.time()) - 120), rsa_key, algorithm="RS256"),
            good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        ):
            r = driver.get(f"{API}/substrates", headers=[("authorization", f"Bearer {token}")])
            assert r.status == 401
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json() == {
                "error": "unauthorized",
                "message": "a valid credential is required (X-API-Key or Authorization: Bearer)",
                "details": {},
            }
    finally:
        finish(driver)
