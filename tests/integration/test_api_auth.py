"""Console login and roles over HTTP: sessions, cookies, CSRF, who may do what.

The admin bearer token and device Basic auth must keep working beside the cookie.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import pytest
from fastapi import Depends
from sqlalchemy import update

from tests.fixtures.api import ADMIN, Api
from wulian.accounts import AccountService
from wulian.api.deps import Caller, read_or_admin, read_or_operator, require_role
from wulian.domain.account import Role
from wulian.domain.clock import now_ms
from wulian.storage.schema import sessions

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PW = "correct horse battery"
CONSOLE = {"X-Wulian-Console": "1"}
HOUR_MS = 3600 * 1000
Doc = dict[str, Any]


def service(api: Api) -> AccountService:
    svc: AccountService = api.client.app.state.account_service  # type: ignore[attr-defined]
    return svc


def user(api: Api, name: str, role: str) -> None:
    service(api).add_user(name, PW, role)


def login(api: Api, name: str, password: str = PW, **headers: str) -> Any:
    """Log in on the test client (its cookie jar keeps the session)."""
    api.client.cookies.clear()
    return api.client.post("/api/v1/auth/login", json={"username": name, "password": password},
                           headers=headers)


def as_user(api: Api, name: str, role: str) -> None:
    user(api, name, role)
    r = login(api, name)
    assert r.status_code == 200, r.text


def cookie_header(response: Any) -> str:
    values: list[str] = response.headers.get_list("set-cookie")
    assert len(values) == 1, values
    return values[0]


# --- logging in and out ---------------------------------------------------------------------


def test_login_me_logout(api: Api) -> None:
    user(api, "alice", "operator")
    before = now_ms()
    r = login(api, "alice")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["username"] == "alice" and body["role"] == "operator"
    assert before + 8 * HOUR_MS <= body["expires_ms"] <= now_ms() + 8 * HOUR_MS
    assert r.headers["cache-control"] == "no-store"

    me = api.client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json() == {**body, "session": True}

    r = api.client.post("/api/v1/auth/logout", headers=CONSOLE)
    assert r.status_code == 204
    assert "Max-Age=0" in cookie_header(r)
    assert "wulian_session" not in api.client.cookies
    assert api.client.get("/api/v1/auth/me").status_code == 401


def test_the_cookie_is_httponly_strict_and_secure_over_https(sqlite_api: Api) -> None:
    user(sqlite_api, "alice", "viewer")
    r = login(sqlite_api, "alice")
    cookie = cookie_header(r)
    name, _, rest = cookie.partition("=")
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in rest.split(";")[1:]}
    assert name == "wulian_session"
    assert set(attrs) == {"httponly", "samesite", "path"}
    assert attrs["samesite"] == "SameSite=Strict" and attrs["path"] == "Path=/"
    assert "max-age" not in attrs and "expires" not in attrs  # the server decides when it ends
    token = rest.split(";")[0]
    assert len(token) >= 43 and token not in r.text

    app = sqlite_api.client.app
    with TestClient(app, base_url="https://testserver") as tls:
        r = tls.post("/api/v1/auth/login", json={"username": "alice", "password": PW})
        assert r.status_code == 200
        assert "; Secure" in cookie_header(r)
        assert tls.get("/api/v1/auth/me").status_code == 200


def test_logout_without_a_session_just_clears_the_cookie(sqlite_api: Api) -> None:
    r = sqlite_api.client.post("/api/v1/auth/logout")
    assert r.status_code == 204 and "Max-Age=0" in cookie_header(r)


def test_bad_password_and_unknown_user_look_alike(sqlite_api: Api) -> None:
    user(sqlite_api, "alice", "viewer")
    for name, password in (("alice", "not the password"), ("nobody", PW)):
        r = login(sqlite_api, name, password)
        assert r.status_code == 401
        assert r.json() == {"code": "login_failed", "message": "wrong username or password"}
        assert "set-cookie" not in r.headers
    r = login(sqlite_api, "alice", "not the password", **{"Accept-Language": "zh-CN"})
    assert r.json()["message"] == "用户名或密码错误"


def test_login_body_is_validated(sqlite_api: Api) -> None:
    r = sqlite_api.client.post("/api/v1/auth/login", json={"username": "alice"})
    assert r.status_code == 422 and r.json()["field"] == "password"


def test_too_many_failures_lock_the_login(sqlite_api: Api) -> None:
    user(sqlite_api, "alice", "viewer")
    for _ in range(10):
        assert login(sqlite_api, "alice", "not the password").status_code == 401
    r = login(sqlite_api, "alice")
    assert r.status_code == 429
    assert r.json()["code"] == "login_locked"
    assert r.json()["message"] == "too many failed logins: try again in 15 min"
    assert 14 * 60 < int(r.headers["retry-after"]) <= 15 * 60
    zh = login(sqlite_api, "alice", **{"Accept-Language": "zh"}).json()["message"]
    assert zh == "登录失败次数过多，请在 15 分钟后重试"

    svc = service(sqlite_api)
    svc.clock = lambda: now_ms() + 15 * 60_000 + 1000
    assert login(sqlite_api, "alice").status_code == 200


def test_a_disabled_user_cannot_log_in_and_loses_their_session(sqlite_api: Api) -> None:
    as_user(sqlite_api, "alice", "viewer")
    assert sqlite_api.client.get("/api/v1/products").status_code == 200
    assert sqlite_api.patch("/users/alice", json={"disabled": True}).status_code == 200
    r = sqlite_api.client.get("/api/v1/products")
    assert r.status_code == 401
    assert r.json()["message"] == "your session has expired or was ended: please log in again"
    assert login(sqlite_api, "alice").status_code == 401


def test_sessions_expire(api: Api) -> None:
    as_user(api, "alice", "viewer")
    assert api.client.get("/api/v1/auth/me").status_code == 200
    svc = service(api)
    svc.clock = lambda: now_ms() + 8 * HOUR_MS + 1
    r = api.client.get("/api/v1/products")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Max-Age=0" in cookie_header(r)  # the browser forgets the dead cookie


def test_a_session_written_as_expired_is_refused(sqlite_api: Api) -> None:
    as_user(sqlite_api, "alice", "viewer")
    with svc_engine(sqlite_api).begin() as conn:
        conn.execute(update(sessions).values(expires_ms=now_ms() - 1))
    assert sqlite_api.client.get("/api/v1/auth/me").status_code == 401


def svc_engine(api: Api) -> Any:
    return service(api).store.engine


def test_a_used_session_slides(sqlite_api: Api) -> None:
    as_user(sqlite_api, "alice", "viewer")
    first = sqlite_api.client.get("/api/v1/auth/me").json()["expires_ms"]
    svc = service(sqlite_api)
    svc.clock = lambda: now_ms() + 7 * HOUR_MS
    later = sqlite_api.client.get("/api/v1/auth/me").json()["expires_ms"]
    assert later >= first + 7 * HOUR_MS - 1000
    svc.clock = lambda: now_ms() + 14 * HOUR_MS  # past the first expiry, within the new one
    assert sqlite_api.client.get("/api/v1/auth/me").status_code == 200


def test_a_made_up_cookie_is_refused(sqlite_api: Api) -> None:
    sqlite_api.client.cookies.set("wulian_session", "made-up")
    r = sqlite_api.client.get("/api/v1/products")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


def test_no_credentials_says_how_to_get_in(sqlite_api: Api) -> None:
    r = sqlite_api.client.get("/api/v1/products")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"code": "unauthorized", "message":
                        "log in to the console, or send Authorization: Bearer <admin token>"}


# --- roles ----------------------------------------------------------------------------------


VIEWER_CAN = [("get", "/products"), ("get", "/devices"), ("get", "/stats"),
              ("get", "/rejections"), ("get", "/auth/me")]
ADMIN_ONLY = [("post", "/products"), ("delete", "/products/env-sensor"),
              ("post", "/devices"), ("patch", "/devices/d1"), ("delete", "/devices/d1"),
              ("post", "/devices/d1/secret"), ("get", "/users"), ("post", "/users"),
              ("patch", "/users/alice"), ("delete", "/users/alice")]


def test_a_viewer_can_read_but_not_change(sqlite_api: Api, env_sensor_doc: Doc) -> None:
    sqlite_api.product(env_sensor_doc)
    sqlite_api.device("d1")
    as_user(sqlite_api, "vera", "viewer")
    for method, path in VIEWER_CAN:
        r = sqlite_api.client.request(method, f"/api/v1{path}")
        assert r.status_code == 200, (path, r.text)
    assert sqlite_api.client.get("/api/v1/devices/d1").json()["id"] == "d1"
    for method, path in ADMIN_ONLY:
        r = sqlite_api.client.request(method, f"/api/v1{path}", json={}, headers=CONSOLE)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["code"] == "forbidden" and r.json()["needed"] == "admin"
    assert sqlite_api.get("/devices/d1").status_code == 200  # nothing was changed
    r = sqlite_api.client.delete("/api/v1/devices/d1",
                                 headers={**CONSOLE, "Accept-Language": "zh"})
    assert r.json()["message"] == "此操作需要管理员角色；vera 当前的角色是查看者"
    r = sqlite_api.client.delete("/api/v1/devices/d1", headers=CONSOLE)
    assert r.json()["message"] == "this needs the administrator role; vera is signed in as viewer"


def test_operator_and_admin_on_an_admin_only_route(api: Api, env_sensor_doc: Doc) -> None:
    as_user(api, "otto", "operator")
    r = api.client.post("/api/v1/products", json=env_sensor_doc, headers=CONSOLE)
    assert r.status_code == 403 and r.json()["needed"] == "admin"
    assert api.client.get("/api/v1/users").status_code == 403
    as_user(api, "ada", "admin")
    r = api.client.post("/api/v1/products", json=env_sensor_doc, headers=CONSOLE)
    assert r.status_code == 201, r.text
    r = api.client.post("/api/v1/devices", json={"id": "d1", "product": "env-sensor"},
                        headers=CONSOLE)
    assert r.status_code == 201 and r.json()["secret"]
    assert [u["username"] for u in api.client.get("/api/v1/users").json()["data"]] == [
        "ada", "otto"]


@pytest.fixture
def probe(sqlite_api: Api) -> Api:
    """The app with three extra routes guarded by the other dependencies."""
    app = sqlite_api.client.app

    def who(caller: Annotated[Caller, Depends(read_or_operator)]) -> dict[str, str]:
        return {"name": caller.name}

    def admin_read(caller: Annotated[Caller, Depends(read_or_admin)]) -> dict[str, str]:
        return {"name": caller.name}

    def operators(caller: Annotated[Caller, Depends(require_role(Role.OPERATOR))],
                  ) -> dict[str, str]:
        return {"name": caller.name}

    app.add_api_route("/api/v1/_probe/op", who, methods=["GET", "POST"])  # type: ignore[attr-defined]
    app.add_api_route("/api/v1/_probe/adm", admin_read, methods=["GET", "POST"])  # type: ignore[attr-defined]
    app.add_api_route("/api/v1/_probe/role", operators, methods=["GET"])  # type: ignore[attr-defined]
    return sqlite_api


@pytest.mark.parametrize(("role", "expected"), [
    ("viewer", {"GET op": 200, "POST op": 403, "GET adm": 200, "POST adm": 403, "GET role": 403}),
    ("operator", {"GET op": 200, "POST op": 200, "GET adm": 200, "POST adm": 403,
                  "GET role": 200}),
    ("admin", {"GET op": 200, "POST op": 200, "GET adm": 200, "POST adm": 200,
               "GET role": 200}),
])
def test_read_or_operator_read_or_admin_require_role(probe: Api, role: str,
                                                     expected: dict[str, int]) -> None:
    as_user(probe, "someone", role)
    for what, status in expected.items():
        method, path = what.split()
        r = probe.client.request(method, f"/api/v1/_probe/{path}", headers=CONSOLE)
        assert r.status_code == status, (role, what, r.text)
        if status == 200:
            assert r.json() == {"name": "someone"}
        else:
            assert r.json()["needed"] == ("operator" if path in ("op", "role") else "admin")
    # the admin token is an admin called "admin"
    probe.client.cookies.clear()
    r = probe.client.post("/api/v1/_probe/op", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"name": "admin"}


# --- CSRF -----------------------------------------------------------------------------------


def test_cookie_changes_need_the_console_header_and_same_origin(sqlite_api: Api,
                                                                env_sensor_doc: Doc) -> None:
    as_user(sqlite_api, "ada", "admin")
    post = sqlite_api.client.post
    refused = [{}, {"X-Wulian-Console": "0"},
               {**CONSOLE, "Origin": "https://evil.example"},
               {**CONSOLE, "Origin": "http://testserver.evil.example"},
               {**CONSOLE, "Origin": "null"},
               {**CONSOLE, "Sec-Fetch-Site": "cross-site"}]
    for headers in refused:
        r = post("/api/v1/products", json=env_sensor_doc, headers=headers)
        assert r.status_code == 403, (headers, r.text)
        assert r.json()["code"] == "csrf"
    assert sqlite_api.get("/products").json()["data"] == []
    r = post("/api/v1/products", json=env_sensor_doc,
             headers={**CONSOLE, "Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201, r.text
    # reading needs no header: a cross-site page cannot read the answer anyway
    assert sqlite_api.client.get("/api/v1/products").status_code == 200


def test_login_from_another_site_is_refused(sqlite_api: Api) -> None:
    user(sqlite_api, "alice", "viewer")
    r = login(sqlite_api, "alice", Origin="https://evil.example")
    assert r.status_code == 403 and r.json()["code"] == "csrf"
    assert login(sqlite_api, "alice", Origin="http://testserver").status_code == 200


def test_the_bearer_token_needs_no_csrf_header(sqlite_api: Api, env_sensor_doc: Doc) -> None:
    r = sqlite_api.client.post("/api/v1/products", json=env_sensor_doc, headers=ADMIN)
    assert r.status_code == 201
    assert sqlite_api.client.get("/api/v1/auth/me", headers=ADMIN).json() == {
        "username": "admin", "role": "admin", "expires_ms": None, "session": False}


def test_a_wrong_bearer_token_is_refused_even_with_a_good_cookie(sqlite_api: Api) -> None:
    as_user(sqlite_api, "ada", "admin")
    r = sqlite_api.client.get("/api/v1/products", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert r.json()["message"] == ("missing or wrong admin token: send Authorization: "
                                   "Bearer <token>")


# --- devices keep their Basic auth ---------------------------------------------------------


def test_device_ingest_is_unaffected(api: Api, env_sensor_doc: Doc) -> None:
    api.product(env_sensor_doc)
    auth = api.device("d1")
    assert api.send("d1", auth, b'{"temperature": 21.5}').status_code == 202
    as_user(api, "vera", "viewer")  # a console cookie in the jar changes nothing for devices
    r = api.send("d1", auth, b'{"temperature": 22.5}')
    assert r.status_code == 202, r.text
    r = api.client.post("/api/v1/devices/d1/telemetry", content=b'{"temperature": 1}')
    assert r.status_code == 401 and r.json()["code"] == "bad_credentials"
    latest = api.get("/devices/d1/latest").json()
    assert latest["temperature"]["value"] == 22.5


# --- managing users -------------------------------------------------------------------------


def test_admins_manage_users(api: Api) -> None:
    r = api.post("/users", json={"username": "li.wei", "password": PW, "role": "operator"})
    assert r.status_code == 201, r.text
    assert r.json()["username"] == "li.wei" and r.json()["role"] == "operator"
    assert "password" not in r.text and "scrypt" not in r.text
    r = api.post("/users", json={"username": "li.wei", "password": PW})
    assert r.status_code == 409 and r.json()["code"] == "user_exists"
    r = api.post("/users", json={"username": "Li Wei", "password": PW})
    assert r.status_code == 422 and r.json()["field"] == "username"
    assert r.json()["code"] == "invalid_account"
    r = api.post("/users", json={"username": "bob", "password": "short"},
                 headers={"Accept-Language": "zh"})
    assert r.status_code == 422 and r.json()["field"] == "password"
    assert r.json()["message"] == "password 无效：长度至少为 10 个字符"
    r = api.post("/users", json={"username": "bob", "password": PW, "role": "root"})
    assert r.status_code == 422 and r.json()["field"] == "role"
    r = api.post("/users", json={"username": "bob", "password": PW})
    assert r.status_code == 201 and r.json()["role"] == "viewer"

    assert api.get("/users/bob").json()["role"] == "viewer"
    assert api.get("/users/nobody").status_code == 404
    r = api.patch("/users/bob", json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    r = api.patch("/users/bob", json={"disabled": True})
    assert r.status_code == 409 and r.json()["code"] == "last_admin"  # the only admin
    api.patch("/users/li.wei", json={"role": "admin"})
    r = api.patch("/users/bob", json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert api.patch("/users/nobody", json={"role": "viewer"}).status_code == 404
    assert api.delete("/users/bob").status_code == 204
    assert api.delete("/users/bob").status_code == 404
    assert [u["username"] for u in api.get("/users").json()["data"]] == ["li.wei"]


def test_a_new_password_set_by_an_admin_ends_the_users_sessions(sqlite_api: Api) -> None:
    as_user(sqlite_api, "alice", "viewer")
    r = sqlite_api.patch("/users/alice", json={"password": "a whole new password"})
    assert r.status_code == 200
    assert sqlite_api.client.get("/api/v1/auth/me").status_code == 401
    assert login(sqlite_api, "alice").status_code == 401
    assert login(sqlite_api, "alice", "a whole new password").status_code == 200


def test_the_last_admin_and_ones_own_account_are_protected(sqlite_api: Api) -> None:
    as_user(sqlite_api, "ada", "admin")
    for method, body in (("patch", {"role": "viewer"}), ("patch", {"disabled": True}),
                         ("delete", None)):
        r = sqlite_api.client.request(method, "/api/v1/users/ada", json=body, headers=CONSOLE)
        assert r.status_code == 409, r.text
    user(sqlite_api, "bea", "admin")
    r = sqlite_api.client.patch("/api/v1/users/ada", json={"disabled": True}, headers=CONSOLE)
    assert r.status_code == 409 and r.json()["code"] == "own_account"
    r = sqlite_api.client.delete("/api/v1/users/ada", headers=CONSOLE)
    assert r.status_code == 409 and r.json()["code"] == "own_account"
    # the admin token may, as long as an admin remains
    assert sqlite_api.delete("/users/bea").status_code == 204
    r = sqlite_api.delete("/users/ada")
    assert r.status_code == 409 and r.json()["code"] == "last_admin"
    assert r.json()["message"] == "refused: no enabled administrator would remain"


def test_changing_ones_own_password(sqlite_api: Api) -> None:
    as_user(sqlite_api, "alice", "viewer")
    old_cookie = sqlite_api.client.cookies["wulian_session"]
    url = "/api/v1/auth/password"
    r = sqlite_api.client.post(url, json={"current": "not it", "new": "brand new password"},
                               headers=CONSOLE)
    assert r.status_code == 403 and r.json()["code"] == "wrong_password"
    r = sqlite_api.client.post(url, json={"current": PW, "new": "alice"}, headers=CONSOLE)
    assert r.status_code == 422 and r.json()["field"] == "new"
    r = sqlite_api.client.post(url, json={"current": PW, "new": "brand new password"})
    assert r.status_code == 403 and r.json()["code"] == "csrf"
    r = sqlite_api.client.post(url, json={"current": PW, "new": "brand new password"},
                               headers=CONSOLE)
    assert r.status_code == 200, r.text
    assert r.json()["username"] == "alice"
    new_cookie = sqlite_api.client.cookies["wulian_session"]
    assert new_cookie != old_cookie
    assert sqlite_api.client.get("/api/v1/auth/me").status_code == 200  # still logged in
    sqlite_api.client.cookies.set("wulian_session", old_cookie)
    assert sqlite_api.client.get("/api/v1/auth/me").status_code == 401  # the old one ended
    r = sqlite_api.client.post(url, json={"current": PW, "new": "brand new password"},
                               headers=ADMIN)
    assert r.status_code == 403 and r.json()["code"] == "session_required"


def test_the_users_admin_sets_their_own_password_and_goes_on(sqlite_api: Api) -> None:
    as_user(sqlite_api, "ada", "admin")
    r = sqlite_api.client.patch("/api/v1/users/ada", json={"password": "brand new password"},
                                headers=CONSOLE)
    assert r.status_code == 200
    assert sqlite_api.client.get("/api/v1/auth/me").status_code == 200


def test_the_openapi_document_names_both_schemes(sqlite_api: Api) -> None:
    schemes = sqlite_api.client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["AdminToken"]["scheme"] == "bearer"
    assert schemes["ConsoleSession"] == {"type": "apiKey", "in": "cookie",
                                         "name": "wulian_session",
                                         "description": schemes["ConsoleSession"]["description"]}
