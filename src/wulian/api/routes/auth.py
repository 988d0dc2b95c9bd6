"""Console accounts over HTTP: log in and out, who am I, own password; users (admins only).

Logging in sets the session cookie (`wulian_session`, HttpOnly, SameSite=Strict); the
console's pages then call the rest of the API with it. The cookie carries no expiry: the
session ends on the server (`session_ttl_s` after its last use, and at most a week after
the login), which a copied cookie cannot change.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from wulian.accounts import AccountService, LoginRefused, LoginResult
from wulian.api.deps import (
    SESSION_COOKIE,
    ApiError,
    Caller,
    CallerDep,
    account_service,
    check_csrf,
    check_origin,
    session_cookie,
)
from wulian.domain.account import MAX_PASSWORD, Role
from wulian.ports import Conflict, NotFound
from wulian.storage.accounts import LastAdmin

router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["users"])

ServiceDep = Annotated[AccountService, Depends(account_service)]
_STATUS = {"login_failed": 401, "login_locked": 429, "wrong_password": 403}


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=256)
    password: str = Field(max_length=MAX_PASSWORD)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current: str = Field(max_length=MAX_PASSWORD)
    new: str = Field(max_length=MAX_PASSWORD)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64)
    password: str = Field(max_length=MAX_PASSWORD)
    role: Role = Role.VIEWER


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=MAX_PASSWORD)


def _refused(exc: LoginRefused) -> ApiError:
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
    minutes = -(-(exc.retry_after_s or 0) // 60)
    return ApiError(_STATUS.get(exc.code, 401), exc.code, headers=headers,
                    params={"minutes": minutes})


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def _session_body(result: LoginResult) -> dict[str, Any]:
    user = result.session.user
    return {"username": user.username, "role": user.role.value,
            "expires_ms": result.session.expires_ms}


def _start(request: Request, response: Response, result: LoginResult) -> dict[str, Any]:
    response.headers.append("Set-Cookie", session_cookie(request, result.token))
    response.headers["Cache-Control"] = "no-store"
    return _session_body(result)


@router.post("/login", responses={
    401: {"description": "Wrong username or password (`login_failed`)"},
    429: {"description": "Too many failures: `login_locked`, with Retry-After"}})
def login(request: Request, response: Response, body: Login,
          service: ServiceDep) -> dict[str, Any]:
    """Check a username and password; start a session (cookie `wulian_session`)."""
    check_origin(request)
    try:
        result = service.login(body.username, body.password, _remote(request))
    except LoginRefused as exc:
        raise _refused(exc) from None
    return _start(request, response, result)


@router.post("/logout", status_code=204)
def logout(request: Request, service: ServiceDep) -> Response:
    """End the session of the cookie sent (if any) and delete the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        check_csrf(request)
        service.logout(token)
    response = Response(status_code=204)
    response.headers.append("Set-Cookie", session_cookie(request, "", delete=True))
    return response


@router.get("/me")
def me(who: CallerDep) -> dict[str, Any]:
    """Who the caller is: name, role, and when the session ends unless used (else null)."""
    return {"username": who.name, "role": who.role.value, "expires_ms": who.expires_ms,
            "session": who.session}


@router.post("/password", responses={
    403: {"description": "`wrong_password`, or `session_required` for the admin token"},
    422: {"description": "The new password breaks the policy (`invalid_account`)"}})
def change_password(request: Request, response: Response, body: PasswordChange,
                    who: CallerDep, service: ServiceDep) -> dict[str, Any]:
    """Change one's own password; every other session of the user ends, this one goes on."""
    if not who.session:
        raise ApiError(403, "session_required")
    try:
        result = service.change_own_password(who.name, body.current, body.new,
                                             _remote(request))
    except LoginRefused as exc:
        raise _refused(exc) from None
    except NotFound:
        raise ApiError(401, "unauthorized", message_key="api.session_expired") from None
    return _start(request, response, result)


# --- users (the router is mounted for admins only) -----------------------------------------


def _not_found(username: str) -> ApiError:
    return ApiError(404, "user_not_found", params={"username": username[:64]})


def _not_yourself(who: Caller, username: str) -> None:
    # the admin token is nobody's account, so it may disable or remove anyone
    if who.session and who.name == username:
        raise ApiError(409, "own_account")


@users_router.get("")
def list_users(service: ServiceDep) -> dict[str, Any]:
    """All console users (no password material)."""
    return {"data": [user.public() for user in service.store.list_users()]}


@users_router.post("", status_code=201, responses={
    409: {"description": "The username is taken (`user_exists`)"},
    422: {"description": "A field breaks the rules (`invalid_account`, `field`)"}})
def add_user(body: NewUser, service: ServiceDep) -> dict[str, Any]:
    """Create a user with a role (viewer unless said)."""
    try:
        user = service.add_user(body.username, body.password, body.role)
    except Conflict:
        raise ApiError(409, "user_exists", params={"username": body.username}) from None
    return user.public()


@users_router.get("/{username}")
def get_user(username: str, service: ServiceDep) -> dict[str, Any]:
    """One user."""
    user = service.store.get_user(username)
    if user is None:
        raise _not_found(username)
    return user.public()


@users_router.patch("/{username}", responses={
    409: {"description": "`last_admin`: no enabled admin would remain; `own_account`"}})
def update_user(request: Request, response: Response, username: str, body: UserChange,
                who: CallerDep, service: ServiceDep) -> dict[str, Any]:
    """Change a user's role, disable or enable them, or set a new password.

    Disabling and a new password end the user's sessions.
    """
    if body.disabled:
        _not_yourself(who, username)
    try:
        user = service.update_user(username, role=body.role, disabled=body.disabled,
                                   password=body.password)
    except NotFound:
        raise _not_found(username) from None
    except LastAdmin:
        raise ApiError(409, "last_admin") from None
    if body.password is not None and who.session and who.name == username:
        # one's own password set here ends one's own sessions too: carry on in a new one
        _start(request, response, service.start_session(user))
    return user.public()


@users_router.delete("/{username}", status_code=204, responses={
    409: {"description": "`last_admin`: the last enabled admin; `own_account`"}})
def delete_user(username: str, who: CallerDep, service: ServiceDep) -> Response:
    """Remove a user and end their sessions."""
    _not_yourself(who, username)
    try:
        found = service.delete_user(username)
    except LastAdmin:
        raise ApiError(409, "last_admin") from None
    if not found:
        raise _not_found(username)
    return Response(status_code=204)
