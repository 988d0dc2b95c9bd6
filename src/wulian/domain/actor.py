"""Who is acting: the one value every use case takes to decide authorisation and scope.

An `Actor` is built once per request or command by whoever authenticated the caller (a
console session, an API key, the platform token, the local CLI) and handed to the use
case; use cases decide what it may do, routes and commands never do. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wulian.domain.account import Role

DEFAULT_ORG = "default"  # where data from before organisations existed lives


class Scope(StrEnum):
    """What an API key may do; a key holds one or more."""

    READ = "read"
    DEVICES_WRITE = "devices:write"
    RULES_WRITE = "rules:write"
    INGEST = "ingest"
    ADMIN = "admin"


SCOPES: tuple[str, ...] = tuple(s.value for s in Scope)


class ActorKind(StrEnum):
    USER = "user"  # a console user (session cookie)
    KEY = "key"  # a scoped API key
    TOKEN = "token"  # the platform operator's bootstrap token
    CLI = "cli"  # the local command line, on the data dir (as platform operator)
    SYSTEM = "system"  # the platform itself (rules service, retention, the demo)


@dataclass(frozen=True, slots=True)
class Actor:
    """A caller: its kind and name, its organisation and role, its scopes and address.

    `org_id` None with `platform` True is the platform operator acting above all
    organisations; `scopes` None means "whatever the role allows" (people), a set means
    exactly those (API keys).
    """

    kind: ActorKind
    name: str
    org_id: str | None
    role: Role
    platform: bool = False
    scopes: frozenset[Scope] | None = None
    source: str | None = None  # the remote address, when there is one

    @property
    def label(self) -> str:
        """How the audit log and alarm history name this actor, e.g. `user:alice`."""
        return f"{self.kind.value}:{self.name}"

    def within(self, org_id: str | None) -> Actor:
        """The same actor acting in `org_id` (a platform operator choosing an organisation)."""
        return Actor(self.kind, self.name, org_id, self.role, self.platform, self.scopes,
                     self.source)


def platform_actor(kind: ActorKind = ActorKind.TOKEN, name: str = "admin",
                   source: str | None = None, org_id: str | None = None) -> Actor:
    """The platform operator: the bootstrap token, the local CLI, the platform itself."""
    return Actor(kind, name, org_id, Role.ADMIN, platform=True, source=source)
