"""Console accounts without a database: roles, the rules for names and passwords, the throttle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wulian.accounts import Throttle
from wulian.domain.account import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    USERNAME,
    AccountError,
    Role,
    User,
    check_password,
    check_role,
    check_username,
    hash_password,
    new_password,
    verify_password,
)

MIN = 60_000


# --- roles -----------------------------------------------------------------------------------


def test_roles_are_ordered_viewer_operator_admin() -> None:
    assert [r.value for r in sorted(Role, key=lambda r: r.rank)] == ["viewer", "operator",
                                                                    "admin"]
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.ADMIN.allows(Role.VIEWER)
    assert Role.OPERATOR.allows(Role.VIEWER) and Role.OPERATOR.allows(Role.OPERATOR)
    assert not Role.OPERATOR.allows(Role.ADMIN)
    assert not Role.VIEWER.allows(Role.OPERATOR)
    assert Role.VIEWER.allows(Role.VIEWER)


def test_check_role() -> None:
    assert check_role("operator") is Role.OPERATOR
    with pytest.raises(AccountError) as err:
        check_role("root")
    assert err.value.field == "role"
    assert "admin, operator" not in err.value.message("en")  # listed in rank order
    assert "viewer, operator, admin" in err.value.message("en")


# --- usernames ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ab", "admin", "li.wei", "ops_1", "a-b", "0day", "x" * 64])
def test_good_usernames(name: str) -> None:
    assert check_username(name) == name


@pytest.mark.parametrize("name", ["", "a", "Admin", "_admin", ".x", "-x", "a b", "a/b", "a\n",
                                  "admin\n", "x" * 65, "管理员", "ａｂ", None, 42])
def test_bad_usernames(name: object) -> None:
    with pytest.raises(AccountError) as err:
        check_username(name)
    assert err.value.field == "username"
    assert "lower-case" in err.value.message("en")
    assert "小写字母" in err.value.message("zh")


# --- passwords ---------------------------------------------------------------------------------


def test_password_policy() -> None:
    assert check_password("correct horse", "alice") == "correct horse"
    assert check_password("x" * 9 + "y", "alice")
    cases = [("short", "password_short"), ("x" * (MIN_PASSWORD - 1), "password_short"),
             ("x" * (MAX_PASSWORD + 1), "password_long"), ("operator01", "password_username"),
             ("OPERATOR01", "password_username"), ("aaaaaaaaaaaa", "password_repeated"),
             ("\ud800" * 5 + "abcdef", "password_chars"), (None, "password_short")]
    for password, problem in cases:
        with pytest.raises(AccountError) as err:
            check_password(password, "operator01")
        assert err.value.problem == problem, password
        assert err.value.field == "password"


def test_password_errors_speak_both_languages() -> None:
    with pytest.raises(AccountError) as err:
        check_password("short", "alice", field="new")
    assert err.value.field == "new"
    assert err.value.message("en") == f"must be at least {MIN_PASSWORD} characters long"
    assert err.value.message("zh") == f"长度至少为 {MIN_PASSWORD} 个字符"
    assert str(err.value) == f"new: must be at least {MIN_PASSWORD} characters long"


def test_hash_and_verify() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("", stored)
    assert not verify_password("x" * (MAX_PASSWORD + 1), stored)
    assert hash_password("correct horse battery") != stored  # salted


def test_generated_passwords_pass_the_policy() -> None:
    for _ in range(20):
        password = new_password()
        assert check_password(password, "admin") == password


def test_public_user_has_no_password_material() -> None:
    user = User("alice", Role.VIEWER, password_hash="scrypt$secret")
    assert "scrypt" not in repr(user)
    assert user.public() == {"username": "alice", "role": "viewer", "disabled": False,
                             "created_ms": 0, "updated_ms": 0}


@given(st.text(max_size=80))
def test_check_username_never_crashes(name: str) -> None:
    valid = USERNAME.fullmatch(name) is not None
    try:
        assert check_username(name) == name and valid
    except AccountError:
        assert not valid


# --- the login throttle ------------------------------------------------------------------------


def test_ten_failures_lock_a_key_for_fifteen_minutes() -> None:
    throttle = Throttle()
    keys = ["user:alice", "remote:10.0.0.1"]
    for k in range(9):
        throttle.failed(keys, k * 1000)
    assert throttle.locked_until(keys, 9000) is None
    throttle.failed(keys, 9000)
    assert throttle.locked_until(keys, 9001) == 9000 + 15 * MIN
    assert throttle.locked_until(["user:alice"], 9000 + 15 * MIN - 1) == 9000 + 15 * MIN
    assert throttle.locked_until(["user:bob"], 9001) is None
    assert throttle.locked_until(keys, 9000 + 15 * MIN) is None  # over


def test_failures_outside_the_window_do_not_add_up() -> None:
    throttle = Throttle()
    for k in range(9):
        throttle.failed(["user:alice"], k)
    throttle.failed(["user:alice"], 15 * MIN)  # a new window: count 1
    for k in range(8):
        throttle.failed(["user:alice"], 15 * MIN + k)
    assert throttle.locked_until(["user:alice"], 16 * MIN) is None


def test_reset_forgets_a_key() -> None:
    throttle = Throttle(max_failures=3)
    for _ in range(2):
        throttle.failed(["user:alice"], 0)
    throttle.reset("user:alice")
    throttle.failed(["user:alice"], 1)
    assert throttle.locked_until(["user:alice"], 2) is None


def test_throttle_memory_is_bounded() -> None:
    throttle = Throttle(max_keys=100)
    for k in range(1000):
        throttle.failed([f"user:u{k}"], k)
    assert len(throttle) == 100
