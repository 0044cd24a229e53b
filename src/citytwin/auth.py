"""Who may do what: API keys, roles, and which department owns which feed.

Pure (no web framework): the HTTP side is :mod:`citytwin.api.auth`.

Roles
-----
==========  ==================================================================================
admin       everything
writer      SensorThings writes to the Things of its own department (and their Datastreams,
            Observations, Locations); rules of its own department; scenarios
operator    approve, reject and send tasks, manual override; scenarios; no feed writes
public      read only (also what a request without ``Authorization`` header is)
==========  ==================================================================================

Keys
----
``Settings.api_tokens`` (env ``CITYTWIN_API_TOKENS``, comma-separated) holds entries
``TOKEN`` (admin, the format before roles existed), ``TOKEN=admin``, ``TOKEN=operator``,
``TOKEN=public`` or ``TOKEN=writer:DEPARTMENT``, each optionally followed by ``@NAME`` (the actor
name in the audit log; default ``api_tokens[N]``). The role is what follows the *last* ``=``, so a
base64 token keeps its padding (``abc==`` is a bare admin token, ``abc===public`` a public one).
``Settings.api_keys_file`` names a YAML list of ``{token | token_sha256, role, department?,
name?}`` so that keys can be stored as SHA-256 hashes only. Tokens never appear in messages, logs
or reprs; a bad entry is named by its 1-based position.

Ownership
---------
A Thing's key starts with its feed (``sdot:V02Q…`` → ``sdot``). Its owning department is
``properties["department"]`` when set, else the department ``Settings.feed_departments`` gives
its feed (``feed=department`` pairs), else none — then only an admin may write it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml

from citytwin.config import Settings
from citytwin.errors import ConfigurationError

Action = Literal["write", "approve", "rules", "scenarios", "admin"]
_WORD = re.compile(r"^[\w.-]+$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_KEY_FORMATS = (
    "expected TOKEN, TOKEN=admin, TOKEN=operator, TOKEN=public or TOKEN=writer:DEPARTMENT, "
    "optionally followed by @NAME"
)


class Role(StrEnum):
    """What a key may do (see the module docstring)."""

    ADMIN = "admin"
    WRITER = "writer"
    OPERATOR = "operator"
    PUBLIC = "public"


ROLES_FOR: dict[str, frozenset[Role]] = {
    "write": frozenset({Role.ADMIN, Role.WRITER}),
    "approve": frozenset({Role.ADMIN, Role.OPERATOR}),
    "rules": frozenset({Role.ADMIN, Role.WRITER}),
    "scenarios": frozenset({Role.ADMIN, Role.WRITER, Role.OPERATOR}),
    "admin": frozenset({Role.ADMIN}),
}
"""The roles each action needs (a writer's ``rules`` are further limited to its department)."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a key's name, role and (writers only) department."""

    name: str
    role: Role
    department: str | None = None


ANONYMOUS = Principal("anonymous", Role.PUBLIC)
"""The principal of a request without credentials."""


@dataclass(frozen=True)
class Key:
    """A key as kept in memory: the SHA-256 of its token (never the token) and its principal."""

    digest: bytes = field(repr=False)
    principal: Principal


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _principal(
    role_text: str, department: str | None, name: str | None, where: str, default_name: str
) -> Principal:
    """Check a role/department/name triple; ``where`` names the entry in errors."""
    try:
        role = Role(role_text.strip().lower())
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise ConfigurationError(f"{where}: unknown role {role_text!r}; expected {roles}") from None
    if role is Role.WRITER and not department:
        raise ConfigurationError(f"{where}: role writer needs a department (writer:DEPARTMENT)")
    if role is not Role.WRITER and department:
        raise ConfigurationError(f"{where}: only role writer takes a department, not {role}")
    for label, value in (("department", department), ("name", name)):
        if value is not None and not _WORD.match(value):
            raise ConfigurationError(
                f"{where}: {label} {value!r} must be letters, digits, '_', '.' or '-'"
            )
    return Principal(name or default_name, role, department or None)


def parse_key_spec(text: str, *, position: int = 1, source: str = "api_tokens") -> Key:
    """One entry of ``Settings.api_tokens`` as a :class:`Key` (formats: module docstring).

    ``position`` (1-based) and ``source`` name the entry in errors and in the default key name;
    the token itself never appears in either.

    >>> parse_key_spec("s3cret=writer:environment@env-team").principal
    Principal(name='env-team', role=<Role.WRITER: 'writer'>, department='environment')
    >>> parse_key_spec("s3cret", position=2).principal.name
    'api_tokens[2]'
    """
    where = f"{source} entry {position}"
    token, equals, spec = text.strip().rpartition("=")
    if not equals or not spec:  # no role (a bare token, maybe with base64 padding): admin
        token, spec = text.strip(), Role.ADMIN.value
    if not token or any(c.isspace() or c == "," for c in token):
        raise ConfigurationError(f"{where}: the token is empty or holds a space or comma")
    role_text, at, name = spec.partition("@")
    if at and not name:
        raise ConfigurationError(f"{where}: empty name after '@'; {_KEY_FORMATS}")
    role, colon, department = role_text.partition(":")
    if colon and not department:
        raise ConfigurationError(f"{where}: empty department after ':'; {_KEY_FORMATS}")
    principal = _principal(role, department or None, name or None, where, f"{source}[{position}]")
    return Key(_digest(token), principal)


def read_keys_file(path: str | Path) -> list[Key]:
    """Keys from a YAML list of ``{token | token_sha256, role, department?, name?}`` mappings.

    A ``token_sha256`` is the hex SHA-256 of the token (``printf %s TOKEN | sha256sum``).
    """
    source = Path(path)
    try:
        entries = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"api_keys_file {source}: cannot read ({exc})") from None
    if not isinstance(entries, list):
        raise ConfigurationError(f"api_keys_file {source}: expected a YAML list of keys")
    return [_file_key(entry, f"{source} entry {i}", i) for i, entry in enumerate(entries, 1)]


def _file_key(entry: object, where: str, position: int) -> Key:
    allowed = {"token", "token_sha256", "role", "department", "name"}
    if not isinstance(entry, dict) or not set(entry) <= allowed or "role" not in entry:
        raise ConfigurationError(f"{where}: expected a mapping with role and token or token_sha256")
    token, hashed = entry.get("token"), entry.get("token_sha256")
    if (token is None) == (hashed is None):
        raise ConfigurationError(f"{where}: give exactly one of token and token_sha256")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise ConfigurationError(f"{where}: token must be a non-empty string")
    if hashed is not None and not (isinstance(hashed, str) and _SHA256.match(hashed)):
        raise ConfigurationError(f"{where}: token_sha256 must be 64 hexadecimal digits")
    department, name = entry.get("department"), entry.get("name")
    if not all(v is None or isinstance(v, str) for v in (entry["role"], department, name)):
        raise ConfigurationError(f"{where}: role, department and name must be strings")
    principal = _principal(str(entry["role"]), department, name, where, f"keys[{position}]")
    digest = _digest(token.strip()) if isinstance(token, str) else bytes.fromhex(str(hashed))
    return Key(digest, principal)


class KeyRing:
    """The keys a server accepts; :meth:`lookup` compares in constant time.

    >>> ring = KeyRing([parse_key_spec("t1=operator@ops")])
    >>> ring.lookup("t1"), ring.lookup("t2")
    (Principal(name='ops', role=<Role.OPERATOR: 'operator'>, department=None), None)
    """

    def __init__(self, keys: Iterable[Key]) -> None:
        self._keys = tuple(keys)
        seen: dict[bytes, str] = {}
        for key in self._keys:
            if key.digest in seen:
                raise ConfigurationError(
                    f"keys {seen[key.digest]!r} and {key.principal.name!r} have the same token"
                )
            seen[key.digest] = key.principal.name

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """``settings.api_tokens`` entries, then the keys of ``settings.api_keys_file``."""
        keys = [
            parse_key_spec(text, position=i)
            for i, text in enumerate(settings.api_tokens, 1)
            if text.strip()
        ]
        if settings.api_keys_file:
            keys += read_keys_file(settings.api_keys_file)
        return cls(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing({[k.principal.name for k in self._keys]})"

    def lookup(self, token: str) -> Principal | None:
        """The principal of ``token``, or None; every key is compared (no early exit)."""
        presented = _digest(token)
        found = None
        for key in self._keys:
            if hmac.compare_digest(presented, key.digest):
                found = key.principal
        return found


# -- ownership ----------------------------------------------------------------------------------
def feed_of(thing_key: str | None) -> str | None:
    """The feed a Thing key comes from: its prefix before ``:`` (None without one).

    >>> feed_of("sdot:V02Q1940015"), feed_of("mqtt:dev1"), feed_of("plain")
    ('sdot', 'mqtt', None)
    """
    feed, colon, _ = (thing_key or "").partition(":")
    return feed if colon else None


def parse_feed_departments(pairs: Sequence[str]) -> dict[str, str]:
    """``feed=department`` pairs (``Settings.feed_departments``) as a mapping.

    >>> parse_feed_departments(["sdot=environment", "mqtt=transport"])
    {'sdot': 'environment', 'mqtt': 'transport'}
    """
    owners: dict[str, str] = {}
    for i, pair in enumerate(pairs, 1):
        feed, equals, department = (part.strip() for part in pair.partition("="))
        if not (equals and _WORD.match(feed) and _WORD.match(department)):
            raise ConfigurationError(
                f"feed_departments entry {i}: {pair!r}; expected feed=department"
            )
        if owners.get(feed, department) != department:
            raise ConfigurationError(f"feed_departments entry {i}: feed {feed!r} given twice")
        owners[feed] = department
    return owners


def thing_department(
    thing_key: str | None, properties: Mapping[str, object], feeds: Mapping[str, str]
) -> str | None:
    """The department owning a Thing: its ``department`` property, else its feed's owner.

    >>> thing_department("sdot:V1", {}, {"sdot": "environment"})
    'environment'
    >>> thing_department("sdot:V1", {"department": "parks"}, {"sdot": "environment"})
    'parks'
    """
    stamped = properties.get("department")
    if isinstance(stamped, str) and stamped:
        return stamped
    feed = feed_of(thing_key)
    return feeds.get(feed) if feed is not None else None


# -- permissions --------------------------------------------------------------------------------
def can(principal: Principal, action: Action, *, department: str | None = None) -> bool:
    """Whether ``principal`` may take ``action``; for ``rules``, of ``department`` when given.

    >>> can(Principal("ops", Role.OPERATOR), "approve"), can(Principal("x", Role.PUBLIC), "write")
    (True, False)
    >>> can(Principal("w", Role.WRITER, "parks"), "rules", department="transport")
    False
    """
    if principal.role not in ROLES_FOR[action]:
        return False
    if action == "rules" and principal.role is Role.WRITER and department is not None:
        return principal.department == department
    return True


def may_write_thing(principal: Principal, department: str | None) -> bool:
    """Whether ``principal`` may write a Thing (and what hangs on it) owned by ``department``.

    >>> writer = Principal("w", Role.WRITER, "parks")
    >>> may_write_thing(writer, "parks"), may_write_thing(writer, None)
    (True, False)
    """
    if principal.role is Role.ADMIN:
        return True
    return (
        principal.role is Role.WRITER
        and department is not None
        and (department == principal.department)
    )


def needed_roles(action: Action) -> str:
    """The roles an action needs, for messages: ``'admin or operator'``."""
    return " or ".join(sorted(ROLES_FOR[action]))


@dataclass(frozen=True)
class AccessPolicy:
    """Everything an access decision needs, built once from settings."""

    keys: KeyRing
    feeds: Mapping[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            KeyRing.from_settings(settings), parse_feed_departments(settings.feed_departments)
        )
