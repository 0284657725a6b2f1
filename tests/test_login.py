"""Users and login in process (docs/security.md, "Users and login"): argon2id records,
``POST /auth/login`` and its token, the same 401 for an unknown name and a wrong
password, failed logins limited per name and per address, ``GET /auth/me`` for every
kind of caller, users in every store through the change log, and ``bfx users``. The real
server is ``test_e2e_login.py``."""

from __future__ import annotations

import io
import sqlite3

import pytest

from asgi_driver import finish, started
from bfx import Registry, errors
from bfx.api.operations import SCOPES
from bfx.cli import main
from bfx.security.keys import now_us
from bfx.security.users import check_password, new_user
from bfx.services.keys import LocalKeys
from bfx.storage import MemoryStore, open_store

API = "/api/v1"
PASSWORD = "correct horse battery"
FAILED = {"error": "unauthorized", "message": "wrong user name or password", "details": {}}


def login(driver, username, password, client=("127.0.0.1", 5000)):
    return driver.request(
        "POST", f"{API}/auth/login", json={"username": username, "password": password},
        client=client,
    )  # fmt: skip


@pytest.fixture
def app():
    driver = started(auth="required", login_failures_per_user="3/minute",
                     login_failures_per_address="5/minute")  # fmt: skip
    store = driver.app.registry.store
    store.add_user(new_user("alice", ["substrates:read"], PASSWORD, now_us()))
    store.add_user(new_user("bob", ["admin"], PASSWORD, now_us()))
    yield driver, store
    finish(driver)


def test_passwords_are_stored_as_argon2id_hashes_only():
    user = new_user("carol", ["graph:read"], PASSWORD, now_us())
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in user.password_hash
    assert check_password(user, PASSWORD)
    assert not check_password(user, PASSWORD + "x")
    assert not check_password(None, PASSWORD)
    assert not check_password(user, PASSWORD + "y" * 2000)  # past the bound: refused


@pytest.mark.parametrize(
    ("name", "scopes", "password", "field"),
    [("", ["admin"], PASSWORD, "username"), ("a b", ["admin"], PASSWORD, "username"),
     ("-x", ["admin"], PASSWORD, "username"), ("x" * 65, ["admin"], PASSWORD, "username"),
     ("ok", ["root"], PASSWORD, None), ("ok", [], PASSWORD, None),
     ("ok", ["admin"], "short", "password")],
)  # fmt: skip
def test_bad_users_are_refused(name, scopes, password, field):
    with pytest.raises(errors.ValidationError) as info:
        new_user(name, scopes, password, now_us())
    if field is not None:
        assert info.value.details["field"] == field


def test_login_gives_a_token_that_works_for_the_users_scopes(app):
    driver, _ = app
    r = login(driver, "alice", PASSWORD)
    assert r.status == 200, r
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    bearer = [("authorization", f"Bearer {body['access_token']}")]
    assert driver.get(f"{API}/substrates", headers=bearer).status == 200
    made = driver.post(f"{API}/substrates", {"expression_type": "constant",
                       "expression_code": "1"}, headers=bearer)  # fmt: skip
    assert made.status == 403
    assert made.json()["details"] == {"required_scope": "substrates:write"}
    me = driver.get(f"{API}/auth/me", headers=bearer).json()
    assert me == {"principal": "user:alice", "kind": "user", "scopes": ["substrates:read"]}


def test_unknown_user_and_wrong_password_answer_alike(app):
    driver, _ = app
    answers = [login(driver, "alice", "wrong password"), login(driver, "nobody", PASSWORD)]
    for r in answers:
        assert r.status == 401
        assert r.json() == FAILED
    assert answers[0].headers == answers[1].headers


@pytest.mark.parametrize(
    "body",
    [{"username": "alice"}, {"username": "alice", "password": "x" * 1025},
     {"username": "a" * 65, "password": PASSWORD}, {"username": 1, "password": PASSWORD},
     {"username": "alice", "password": PASSWORD, "extra": 1}],
)  # fmt: skip
def test_malformed_login_bodies_are_422(app, body):
    driver, _ = app
    r = driver.post(f"{API}/auth/login", body)
    assert r.status == 422, r
    assert set(r.json()) == {"error", "message", "details"}


def test_failed_logins_are_limited_per_username_even_for_the_right_password(app):
    driver, _ = app
    for port in range(3):  # three addresses, so that only the name's limit is reached
        r = login(driver, "alice", "wrong password", client=(f"10.0.0.{port}", 1))
        assert r.status == 401
    r = login(driver, "alice", PASSWORD, client=("10.0.0.9", 1))
    assert r.status == 429, r
    assert r.json()["error"] == "rate_limited"
    assert r.json()["details"]["per"] == "user"
    assert int(r.headers["retry-after"]) >= 1
    # An unknown name is limited the same way (nothing tells them apart).
    for _ in range(3):
        assert login(driver, "nobody", "x" * 8, client=("10.0.1.1", 1)).status == 401
    assert login(driver, "nobody", "x" * 8, client=("10.0.1.2", 1)).status == 429
    # Others are not affected.
    assert login(driver, "bob", PASSWORD, client=("10.0.0.9", 1)).status == 200


def test_failed_logins_are_limited_per_address(app):
    driver, _ = app
    names = ["u1", "u2", "alice", "u3", "u4"]  # five failures, none three for one name
    for name in names:
        assert login(driver, name, "wrong password", client=("10.9.9.9", 7)).status == 401
    r = login(driver, "bob", PASSWORD, client=("10.9.9.9", 8))
    assert r.status == 429
    assert r.json()["details"]["per"] == "address"
    assert login(driver, "bob", PASSWORD, client=("10.9.9.10", 8)).status == 200
    metrics = driver.get(f"{API}/metrics", headers=[("authorization", "Bearer " + login(
        driver, "bob", PASSWORD, client=("10.9.9.11", 8)).json()["access_token"])])  # fmt: skip
    assert metrics.status == 200


def test_me_names_keys_users_and_the_anonymous_caller_of_auth_off(app):
    driver, store = app
    key_id = LocalKeys(lambda: store).create("ci", ["graph:read", "transfer"])
    me = driver.get(f"{API}/auth/me", headers=[("x-api-key", key_id.secret)])
    assert me.json() == {"principal": key_id.key_id, "kind": "key",
                         "scopes": ["graph:read", "transfer"]}  # fmt: skip
    assert driver.get(f"{API}/auth/me").status == 401
    off = started()
    try:
        me = off.get(f"{API}/auth/me").json()
        assert me == {"principal": "-", "kind": "anonymous", "scopes": list(SCOPES)}
    finally:
        finish(off)


def test_a_token_from_a_jwt_secret_setting_is_refused_by_a_server_with_another(app):
    driver, store = app
    other = started(auth="required", jwt_secret="s" * 40)
    try:
        other.app.registry.store.add_user(store.users["alice"])
        token = login(other, "alice", PASSWORD).json()["access_token"]
        bearer = [("authorization", f"Bearer {token}")]
        assert other.get(f"{API}/auth/me", headers=bearer).status == 200
        assert driver.get(f"{API}/auth/me", headers=bearer).status == 401  # rotated secret
    finally:
        finish(other)


# --- the stores ---------------------------------------------------------------------------


def test_users_follow_the_change_log_in_every_process(store_locator):
    a = Registry(storage=store_locator)
    b = Registry(storage=store_locator)
    try:
        assert a.store.jwt_secret == b.store.jwt_secret
        assert len(a.store.jwt_secret) == 32
        alice = new_user("alice", ["substrates:read"], PASSWORD, now_us())
        a.store.add_user(alice)
        with pytest.raises(errors.DuplicateError):
            b.store.add_user(new_user("alice", ["admin"], PASSWORD, now_us()))
        b.refresh()
        assert b.store.users["alice"] == alice
        cli = open_store(store_locator)  # as `bfx users` does, while both run
        try:
            assert [u.name for u in cli.list_users()] == ["alice"]
            assert cli.remove_user("alice")
            assert not cli.remove_user("alice")
            cli.add_user(new_user("dave", ["graph:read"], PASSWORD, now_us()))
        finally:
            cli.close()
        for reg in (a, b):
            reg.refresh()
            assert set(reg.store.users) == {"dave"}
    finally:
        a.close()
        b.close()
    again = Registry(storage=store_locator)
    try:
        assert set(again.store.users) == {"dave"}
        assert again.store.users["dave"].scopes == ("graph:read",)
    finally:
        again.close()


def test_the_memory_store_keeps_users_too():
    store = MemoryStore()
    store.add_user(new_user("alice", ["admin"], PASSWORD, now_us()))
    with pytest.raises(errors.DuplicateError):
        store.add_user(new_user("alice", ["admin"], PASSWORD, now_us()))
    assert [u.name for u in store.list_users()] == ["alice"]
    assert store.remove_user("alice")
    assert not store.remove_user("alice")


def test_users_load_from_a_snapshot_start_and_no_password_is_on_disk(tmp_path):
    data = tmp_path / "d"
    reg = Registry(storage=str(data))
    reg.create("constant", "1")
    reg.store.add_user(new_user("alice", ["admin"], PASSWORD, now_us()))
    reg.close()  # writes the snapshot
    raw = b"".join(p.read_bytes() for p in data.iterdir() if p.is_file())
    assert PASSWORD.encode() not in raw
    conn = sqlite3.connect(data / "bfx.db")
    try:
        (stored,) = conn.execute("SELECT password_hash FROM users").fetchone()
    finally:
        conn.close()
    assert stored.startswith("$argon2id$")
    reg = Registry(storage=str(data))
    try:
        assert set(reg.store.users) == {"alice"}
    finally:
        reg.close()


# --- bfx users ------------------------------------------------------------------------------


def test_bfx_users_add_list_remove(tmp_path, monkeypatch, capsys):
    data = str(tmp_path / "d")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "alice", "--scopes", "graph:read,substrates:read",
                 "--password-stdin", "--data-dir", data]) == 0  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "alice", "--scopes", "admin", "--password-stdin",
                 "--data-dir", data]) == 1  # fmt: skip
    assert "exists" in capsys.readouterr().err
    assert main(["users", "list", "--json", "--data-dir", data]) == 0
    out = capsys.readouterr().out
    assert out.strip() == '[{"username":"alice","scopes":["substrates:read","graph:read"]}]'
    assert "argon2" not in out
    store = open_store(data)
    try:
        assert check_password(store.list_users()[0], PASSWORD)
    finally:
        store.close()
    assert main(["users", "remove", "alice", "--data-dir", data]) == 0
    assert main(["users", "remove", "alice", "--data-dir", data]) == 1
    assert "no user named 'alice'" in capsys.readouterr().err
    assert main(["users", "list", "--data-dir", data]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [(["alice", "--scopes", "admin"], "", "no terminal to ask for the password on"),
     (["alice", "--scopes", "root", "--password-stdin"], PASSWORD, "unknown scope root"),
     (["alice", "--scopes", "admin", "--password-stdin"], "short", "8-1024 characters"),
     (["a b", "--scopes", "admin", "--password-stdin"], PASSWORD, "a user name is")],
)  # fmt: skip
def test_bfx_users_add_refuses_bad_input_with_exit_2(tmp_path, monkeypatch, capsys, argv,
                                                       stdin, message):  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin + "\n"))
    assert main(["users", "add", *argv, "--data-dir", str(tmp_path / "d")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_bfx_users_list_creates_no_data_directory(tmp_path, capsys):
    assert main(["users", "list", "--data-dir", str(tmp_path / "none")]) == 1
    assert not (tmp_path / "none").exists()
