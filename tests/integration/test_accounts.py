"""Console users and sessions in a real database (SQLite and PostgreSQL), the login service,
the first admin, and `wulian user …`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from wulian.accounts import AccountService, LoginRefused, ensure_first_admin
from wulian.bootstrap import build_core
from wulian.cli import build_app
from wulian.config import Settings
from wulian.domain.account import AccountError, Role, hash_password, verify_password
from wulian.i18n import set_language
from wulian.ports import Conflict, NotFound, StorageUnavailable, Store
from wulian.storage import open_store
from wulian.storage.accounts import (
    MAX_SESSION_MS,
    MAX_SESSIONS_PER_USER,
    SLIDE_EVERY_MS,
    LastAdmin,
    SqlAccounts,
    token_hash,
)
from wulian.storage.schema import sessions

T0 = 1_764_000_000_000
HOUR = 3600 * 1000
MIN = 60_000
PW = "correct horse battery"
H = hash_password(PW)  # once: scrypt is slow on purpose


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    s = open_store(database)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def accounts(store: Store) -> SqlAccounts:
    return SqlAccounts.for_store(store)


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(accounts: SqlAccounts, clock: Clock) -> AccountService:
    return AccountService(accounts, session_ttl_ms=8 * HOUR, clock=clock)


def _expires(accounts: SqlAccounts, token: str) -> int:
    with accounts.engine.connect() as conn:
        value = conn.scalar(select(sessions.c.expires_ms)
                            .where(sessions.c.token_hash == token_hash(token)))
    assert value is not None
    return int(value)


# --- users ---------------------------------------------------------------------------------


def test_add_get_list_count(accounts: SqlAccounts) -> None:
    assert accounts.count_users() == 0 and accounts.list_users() == []
    user = accounts.add_user("bob", H, Role.VIEWER, now=T0)
    accounts.add_user("alice", H, Role.ADMIN, now=T0 + 1)
    assert user.username == "bob" and user.role is Role.VIEWER and not user.disabled
    got = accounts.get_user("bob")
    assert got is not None and got.created_ms == T0 and got.password_hash == H
    assert [u.username for u in accounts.list_users()] == ["alice", "bob"]
    assert accounts.count_users() == 2
    assert accounts.get_user("carol") is None
    with pytest.raises(Conflict):
        accounts.add_user("bob", H, Role.ADMIN)


def test_set_role_and_disable(accounts: SqlAccounts) -> None:
    accounts.add_user("root", H, Role.ADMIN)
    accounts.add_user("bob", H, Role.VIEWER, now=T0)
    assert accounts.set_role("bob", Role.OPERATOR).role is Role.OPERATOR
    bob = accounts.get_user("bob")
    assert bob is not None and bob.role is Role.OPERATOR and bob.updated_ms > T0
    assert accounts.set_disabled("bob", True).disabled
    assert not accounts.set_disabled("bob", False).disabled
    changes: list[Callable[[], object]] = [
        lambda: accounts.set_role("nobody", Role.ADMIN),
        lambda: accounts.set_disabled("nobody", True),
        lambda: accounts.set_password("nobody", H)]
    for change in changes:
        with pytest.raises(NotFound):
            change()


def test_the_last_enabled_admin_cannot_go(accounts: SqlAccounts) -> None:
    accounts.add_user("root", H, Role.ADMIN)
    changes: list[Callable[[], object]] = [
        lambda: accounts.set_role("root", Role.OPERATOR),
        lambda: accounts.set_disabled("root", True),
        lambda: accounts.delete_user("root")]
    for change in changes:
        with pytest.raises(LastAdmin):
            change()
    accounts.add_user("second", H, Role.ADMIN)
    accounts.set_disabled("second", True)  # a disabled admin does not count
    with pytest.raises(LastAdmin):
        accounts.set_role("root", Role.VIEWER)
    accounts.set_disabled("second", False)
    assert accounts.set_role("root", Role.VIEWER).role is Role.VIEWER
    with pytest.raises(LastAdmin):
        accounts.delete_user("second")
    assert accounts.set_role("root", Role.ADMIN).role is Role.ADMIN  # promoting is free


def test_two_admins_demoting_each_other_at_once_leave_one(accounts: SqlAccounts) -> None:
    accounts.add_user("a1", H, Role.ADMIN)
    accounts.add_user("a2", H, Role.ADMIN)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(name: str) -> None:
        barrier.wait()
        try:
            accounts.set_role(name, Role.VIEWER)
            outcomes.append("done")
        except LastAdmin:
            outcomes.append("refused")

    threads = [threading.Thread(target=demote, args=(n,)) for n in ("a1", "a2")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert sorted(outcomes) == ["done", "refused"]
    assert [u.username for u in accounts.list_users() if u.role is Role.ADMIN] != []


def test_delete_user_ends_sessions(accounts: SqlAccounts) -> None:
    accounts.add_user("root", H, Role.ADMIN)
    accounts.add_user("bob", H, Role.VIEWER)
    token = accounts.create_session("bob", HOUR, T0)
    assert accounts.delete_user("bob")
    assert not accounts.delete_user("bob")
    assert accounts.resolve(token, T0 + 1) is None
    assert accounts.count_sessions("bob", T0) == 0


# --- sessions --------------------------------------------------------------------------------


def test_a_session_stores_only_the_hash_of_its_token(accounts: SqlAccounts) -> None:
    accounts.add_user("bob", H, Role.OPERATOR)
    token = accounts.create_session("bob", HOUR, T0)
    assert len(token) >= 43
    with accounts.engine.connect() as conn:
        rows = conn.execute(select(sessions)).all()
    assert len(rows) == 1
    assert rows[0].token_hash == token_hash(token) != token
    assert token not in str(rows[0])
    user = accounts.resolve(token, T0 + 1)
    assert user is not None and user.username == "bob" and user.role is Role.OPERATOR
    assert accounts.resolve(token + "x", T0 + 1) is None
    assert accounts.resolve("", T0) is None and accounts.resolve("x" * 1000, T0) is None


def test_sessions_expire(accounts: SqlAccounts) -> None:
    accounts.add_user("bob", H, Role.VIEWER)
    token = accounts.create_session("bob", HOUR, T0)
    found = accounts.session(token, T0 + 10)
    assert found is not None and found.expires_ms == T0 + HOUR and found.created_ms == T0
    assert accounts.resolve(token, T0 + HOUR) is None  # expiry is exclusive
    assert accounts.count_sessions("bob", T0) == 0  # the expired session was removed


def test_sliding_expiry_writes_at_most_once_a_minute(accounts: SqlAccounts) -> None:
    accounts.add_user("bob", H, Role.VIEWER)
    token = accounts.create_session("bob", HOUR, T0)
    found = accounts.session(token, T0 + SLIDE_EVERY_MS - 1)
    assert found is not None and found.expires_ms == T0 + HOUR
    assert _expires(accounts, token) == T0 + HOUR  # not written
    at = T0 + 50 * MIN
    found = accounts.session(token, at)
    assert found is not None and found.expires_ms == at + HOUR
    assert _expires(accounts, token) == at + HOUR
    # a later use within the minute does not write again
    assert accounts.session(token, at + 30_000) is not None
    assert _expires(accounts, token) == at + HOUR
    # used before it ran out, it outlives its first hour
    assert accounts.resolve(token, T0 + HOUR + 10 * MIN) is not None


def test_sliding_stops_at_the_absolute_limit(accounts: SqlAccounts) -> None:
    accounts.add_user("bob", H, Role.VIEWER)
    token = accounts.create_session("bob", HOUR, T0)
    now = T0
    while now < T0 + MAX_SESSION_MS - HOUR:
        now += HOUR - MIN
        assert accounts.resolve(token, now) is not None, now - T0
    assert _expires(accounts, token) == T0 + MAX_SESSION_MS
    assert accounts.resolve(token, T0 + MAX_SESSION_MS) is None


def test_a_disabled_user_has_no_session(accounts: SqlAccounts) -> None:
    accounts.add_user("root", H, Role.ADMIN)
    accounts.add_user("bob", H, Role.VIEWER)
    token = accounts.create_session("bob", HOUR, T0)
    accounts.set_disabled("bob", True)
    assert accounts.resolve(token, T0 + 1) is None
    accounts.set_disabled("bob", False)
    assert accounts.resolve(token, T0 + 1) is None  # disabling ended it for good
    accounts.set_disabled("bob", True)
    with pytest.raises(NotFound):
        accounts.create_session("bob", HOUR, T0)
    with pytest.raises(NotFound):
        accounts.create_session("nobody", HOUR, T0)


def test_a_new_password_ends_every_session(accounts: SqlAccounts) -> None:
    accounts.add_user("bob", H, Role.VIEWER)
    tokens = [accounts.create_session("bob", HOUR, T0) for _ in range(3)]
    accounts.add_user("carol", H, Role.VIEWER)
    other = accounts.create_session("carol", HOUR, T0)
    user = accounts.set_password("bob", hash_password("another password"))
    assert verify_password("another password", user.password_hash)
    assert all(accounts.resolve(tok, T0 + 1) is None for tok in tokens)
    assert accounts.resolve(other, T0 + 1) is not None


def test_end_session_and_purge(accounts: SqlAccounts) -> None:
    accounts.add_user("bob", H, Role.VIEWER)
    first = accounts.create_session("bob", HOUR, T0)
    second = accounts.create_session("bob", 2 * HOUR, T0)
    assert accounts.end_session(first) and not accounts.end_session(first)
    assert accounts.resolve(first, T0 + 1) is None
    assert accounts.resolve(second, T0 + 1) is not None
    accounts.create_session("bob", MIN, T0)
    assert accounts.purge_expired(T0 + HOUR) == 1
    assert accounts.count_sessions("bob", T0) == 1
    assert accounts.end_sessions("bob") == 1


def test_sessions_per_user_are_bounded(accounts: SqlAccounts) -> None:
    accounts.add_user("bob", H, Role.VIEWER)
    first = accounts.create_session("bob", HOUR, T0)
    for k in range(MAX_SESSIONS_PER_USER):
        last = accounts.create_session("bob", HOUR, T0 + 1 + k)
    assert accounts.count_sessions("bob", T0) == MAX_SESSIONS_PER_USER
    assert accounts.resolve(first, T0 + 100) is None  # the oldest went
    assert accounts.resolve(last, T0 + 100) is not None


def test_an_unreachable_database_is_storage_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    accounts = SqlAccounts.for_store(store)
    accounts.add_user("bob", H, Role.VIEWER)
    with accounts.engine.begin() as conn:
        conn.execute(text("DROP TABLE sessions"))
    try:
        with pytest.raises(StorageUnavailable):
            accounts.resolve("token", T0)
        with pytest.raises(StorageUnavailable):
            accounts.create_session("bob", HOUR, T0)
    finally:
        store.close()


def test_for_store_needs_an_sql_store() -> None:
    with pytest.raises(TypeError):
        SqlAccounts.for_store(object())  # type: ignore[arg-type]


# --- the service: logging in ---------------------------------------------------------------


def test_login_gives_a_session(service: AccountService, clock: Clock) -> None:
    service.add_user("alice", PW, Role.OPERATOR)
    result = service.login("Alice", PW, "10.0.0.1")  # names are lower-case: Alice is alice
    assert result.session.user.username == "alice"
    assert result.session.expires_ms == T0 + 8 * HOUR
    found = service.session(result.token)
    assert found is not None and found.user.role is Role.OPERATOR
    assert service.logout(result.token) and service.session(result.token) is None


@pytest.mark.parametrize(("username", "password"), [
    ("alice", "wrong password!"), ("nobody", PW), ("", PW), ("a" * 300, PW),
    ("alice", ""), ("alice\n", PW)])
def test_bad_logins_are_refused_alike(service: AccountService, username: str,
                                      password: str) -> None:
    service.add_user("alice", PW, Role.OPERATOR)
    with pytest.raises(LoginRefused) as err:
        service.login(username, password, "10.0.0.1")
    assert err.value.code == "login_failed" and err.value.retry_after_s is None


def test_a_disabled_user_cannot_log_in(service: AccountService) -> None:
    service.add_user("root", PW, Role.ADMIN)
    service.add_user("alice", PW, Role.OPERATOR)
    service.update_user("alice", disabled=True)
    with pytest.raises(LoginRefused) as err:
        service.login("alice", PW, None)
    assert err.value.code == "login_failed"


def test_ten_failures_lock_a_username_where_they_came_from_only(service: AccountService,
                                                                  clock: Clock) -> None:
    service.add_user("alice", PW, Role.OPERATOR)
    for k in range(10):
        clock.now = T0 + k * MIN
        with pytest.raises(LoginRefused):
            service.login("alice", "wrong password!", "10.0.0.7")  # a stranger guessing
    clock.now = T0 + 10 * MIN
    with pytest.raises(LoginRefused) as err:
        service.login("alice", PW, "10.0.0.7")  # even the right password, from there
    assert err.value.code == "login_locked"
    assert err.value.retry_after_s == 14 * 60  # locked at T0 + 9 min, for 15 min
    # alice herself, elsewhere, is not locked out by the stranger
    assert service.login("alice", PW, "10.9.9.9").session.user.username == "alice"
    clock.now = T0 + 24 * MIN
    assert service.login("alice", PW, "10.0.0.7").session.user.username == "alice"


def test_without_an_address_failures_lock_the_username(service: AccountService,
                                                       clock: Clock) -> None:
    service.add_user("alice", PW, Role.OPERATOR)
    for _ in range(10):
        with pytest.raises(LoginRefused):
            service.login("alice", "wrong password!", None)
    with pytest.raises(LoginRefused) as err:
        service.login("alice", PW, None)
    assert err.value.code == "login_locked"


def test_ten_failures_per_address_lock_it(service: AccountService, clock: Clock) -> None:
    service.add_user("alice", PW, Role.OPERATOR)
    for k in range(10):
        with pytest.raises(LoginRefused):
            service.login(f"guess{k}", PW, "192.0.2.7")  # ten names, one address
    with pytest.raises(LoginRefused) as err:
        service.login("alice", PW, "192.0.2.7")
    assert err.value.code == "login_locked"
    assert service.login("alice", PW, "192.0.2.8")  # another address is not locked
    clock.now = T0 + 15 * MIN
    assert service.login("alice", PW, "192.0.2.7")


def test_a_good_login_clears_the_username_count(service: AccountService) -> None:
    service.add_user("alice", PW, Role.OPERATOR)
    for _ in range(9):
        with pytest.raises(LoginRefused):
            service.login("alice", "wrong password!", None)
    service.login("alice", PW, None)
    for _ in range(9):
        with pytest.raises(LoginRefused):
            service.login("alice", "wrong password!", None)
    assert service.login("alice", PW, None)


def test_changing_ones_password(service: AccountService) -> None:
    service.add_user("alice", PW, Role.OPERATOR)
    old = service.login("alice", PW, None)
    with pytest.raises(LoginRefused) as err:
        service.change_own_password("alice", "not it at all", "brand new password", None)
    assert err.value.code == "wrong_password"
    with pytest.raises(AccountError) as bad:
        service.change_own_password("alice", PW, "short", None)
    assert bad.value.field == "new"
    new = service.change_own_password("alice", PW, "brand new password", None)
    assert service.session(old.token) is None
    assert service.session(new.token) is not None
    assert service.login("alice", "brand new password", None)


def test_add_and_update_users_check_their_fields(service: AccountService) -> None:
    with pytest.raises(AccountError) as err:
        service.add_user("Alice", PW, Role.VIEWER)
    assert err.value.field == "username"
    with pytest.raises(AccountError) as err:
        service.add_user("alice", "alice", Role.VIEWER)
    assert err.value.field == "password"
    with pytest.raises(AccountError) as err:
        service.add_user("alice", PW, "root")
    assert err.value.field == "role"
    service.add_user("root", PW, "admin")
    service.add_user("alice", PW, "viewer")
    with pytest.raises(AccountError):
        service.update_user("alice", role="operator", password="short")
    alice = service.store.get_user("alice")
    assert alice is not None and alice.role is Role.VIEWER  # nothing changed
    with pytest.raises(NotFound):
        service.update_user("nobody", role="viewer")
    user = service.update_user("alice", role="operator", password="another password")
    assert user.role is Role.OPERATOR and verify_password("another password",
                                                          user.password_hash)


# --- the first admin -----------------------------------------------------------------------


def test_the_first_admin_is_created_once(accounts: SqlAccounts, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    password = ensure_first_admin(accounts, settings)
    assert password is not None
    kept = (tmp_path / "data" / "console-admin.password").read_text().strip()
    assert kept == password
    admin = accounts.get_user("admin")
    assert admin is not None and admin.role is Role.ADMIN
    assert verify_password(password, admin.password_hash)
    assert ensure_first_admin(accounts, settings) is None  # already there


def test_no_first_admin_when_users_exist(accounts: SqlAccounts, tmp_path: Path) -> None:
    accounts.add_user("alice", H, Role.ADMIN)
    assert ensure_first_admin(accounts, Settings(data_dir=tmp_path)) is None
    assert accounts.get_user("admin") is None
    assert not (tmp_path / "console-admin.password").exists()


# --- `wulian user …` -------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    set_language("en")
    yield tmp_path / "data"
    set_language(None)


def cli(data_dir: Path, *args: str, input: str | None = None, code: int = 0) -> str:
    result = CliRunner().invoke(build_app(), ["--data-dir", str(data_dir), *args], input=input)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


def _user(data_dir: Path, name: str) -> tuple[Role, bool, str] | None:
    core = build_core(Settings(data_dir=data_dir), provision_broker=False)
    try:
        user = SqlAccounts.for_store(core.store).get_user(name)
    finally:
        core.close()
    return (user.role, user.disabled, user.password_hash) if user else None


def test_cli_user_lifecycle(data_dir: Path) -> None:
    assert "no console users" in cli(data_dir, "user", "list")
    out = cli(data_dir, "user", "add", "ops", "--role", "admin", "--password-stdin",
              input=PW + "\n")
    assert "added user ops (administrator)" in out
    cli(data_dir, "user", "add", "li.wei", "--role", "viewer", input=f"{PW}\n{PW}\n")
    found = _user(data_dir, "li.wei")
    assert found is not None and found[0] is Role.VIEWER and verify_password(PW, found[2])
    out = cli(data_dir, "user", "list")
    assert "ops" in out and "li.wei" in out and "administrator" in out and "viewer" in out

    assert "operator" in cli(data_dir, "user", "set", "li.wei", "--role", "operator")
    assert "disabled" in cli(data_dir, "user", "set", "li.wei", "--disable")
    assert _user(data_dir, "li.wei") is not None and _user(data_dir, "li.wei")[1]  # type: ignore[index]
    assert "active" in cli(data_dir, "user", "set", "li.wei", "--enable")

    cli(data_dir, "user", "passwd", "li.wei", "--password-stdin",
        input="another password\n")
    found = _user(data_dir, "li.wei")
    assert found is not None and verify_password("another password", found[2])

    assert "removed user li.wei" in cli(data_dir, "user", "remove", "li.wei", "--yes")
    assert _user(data_dir, "li.wei") is None


def test_cli_user_errors(data_dir: Path) -> None:
    cli(data_dir, "user", "add", "ops", "--role", "admin", "--password-stdin", input=PW + "\n")
    out = cli(data_dir, "user", "add", "ops", "--password-stdin", input=PW + "\n", code=1)
    assert "the username 'ops' is taken" in out
    out = cli(data_dir, "user", "add", "Bad Name", "--password-stdin", input=PW + "\n", code=2)
    assert "invalid username" in out
    out = cli(data_dir, "user", "add", "bob", "--password-stdin", input="short\n", code=2)
    assert "invalid password: must be at least 10 characters long" in out
    out = cli(data_dir, "user", "add", "bob", "--password-stdin", input="\n", code=2)
    assert "no password on standard input" in out
    out = cli(data_dir, "user", "add", "bob", input=f"{PW}\nsomething else\n", code=1)
    assert _user(data_dir, "bob") is None  # the two entries differed
    assert "no enabled administrator" in cli(data_dir, "user", "set", "ops", "--role",
                                             "viewer", code=1)
    assert "no enabled administrator" in cli(data_dir, "user", "remove", "ops", "-y", code=1)
    assert "there is no user 'ghost'" in cli(data_dir, "user", "passwd", "ghost", code=1)
    assert "there is no user 'ghost'" in cli(data_dir, "user", "set", "ghost", "--disable",
                                             code=1)
    assert "not both" in cli(data_dir, "user", "set", "ops", "--enable", "--disable", code=2)
    assert "nothing to change" in cli(data_dir, "user", "set", "ops", code=2)


def test_cli_user_speaks_chinese(data_dir: Path) -> None:
    out = cli(data_dir, "--lang", "zh", "user", "add", "bob", "--password-stdin",
              input="short\n", code=2)
    assert "长度至少为 10 个字符" in out
    out = cli(data_dir, "--lang", "zh", "user", "add", "bob", "--role", "operator",
              "--password-stdin", input=PW + "\n")
    assert "已添加用户 bob（操作员）" in out
