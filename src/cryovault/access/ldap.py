"""The company directory over LDAP (SPEC ADM-3): search it to add users, and check the
passwords of users added from it (simple bind with ldap3).

Every directory call runs under one deadline (`timeout_seconds`, default 4 s): an unreachable or
silent server gives "directory unavailable" instead of a hanging request."""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ldap3 import ANONYMOUS, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from cryovault.errors import Invalid, NotFound, Unauthenticated, Unavailable

T = TypeVar("T")
FORBIDDEN_SEARCH_CHARACTERS = "*()\\\x00"
MAX_QUERY = 100
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="cryovault-ldap")


@dataclass(frozen=True)
class DirectoryConfig:
    url: str
    base_dn: str
    bind_dn: str | None = None
    bind_password: str | None = None
    user_filter: str = "(objectClass=inetOrgPerson)"
    username_attribute: str = "uid"
    email_attribute: str = "mail"
    first_name_attribute: str = "givenName"
    last_name_attribute: str = "sn"
    start_tls: bool = False
    ca_file: Path | None = None
    timeout_seconds: float = 4.0

    @classmethod
    def from_settings(cls, settings) -> DirectoryConfig | None:
        if not settings.ldap_url:
            return None
        user_filter = settings.ldap_user_filter.strip() or "(objectClass=*)"
        if not user_filter.startswith("("):
            user_filter = f"({user_filter})"
        return cls(settings.ldap_url, settings.ldap_base_dn, settings.ldap_bind_dn,
                   settings.ldap_bind_password, user_filter, settings.ldap_username_attribute,
                   settings.ldap_email_attribute, settings.ldap_first_name_attribute,
                   settings.ldap_last_name_attribute, settings.ldap_start_tls,
                   settings.ldap_ca_file, settings.ldap_timeout_seconds)


@dataclass(frozen=True)
class DirectoryEntry:
    dn: str
    username: str
    email: str | None
    first_name: str
    last_name: str

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.username


def _first(values: object) -> str:
    if isinstance(values, list | tuple):
        values = values[0] if values else ""
    if isinstance(values, bytes):
        values = values.decode("utf-8", errors="replace")
    return str(values or "").strip()


def validate_search(query: str) -> str:
    """The search box takes plain text: LDAP filter syntax characters are refused (and every
    value is escaped anyway before it enters a filter)."""
    query = (query or "").strip()
    if not query:
        raise Invalid("type part of a name, username or e-mail address to search the directory")
    if len(query) > MAX_QUERY:
        raise Invalid(f"the directory search takes at most {MAX_QUERY} characters")
    bad = sorted({c for c in query if c in FORBIDDEN_SEARCH_CHARACTERS})
    if bad:
        shown = " ".join("NUL" if c == "\x00" else c for c in bad)
        raise Invalid(f"the directory search does not accept the characters {shown} "
                      "(LDAP filter syntax); type plain text")
    if any(ord(c) < 32 or ord(c) == 127 for c in query):
        raise Invalid("the directory search does not accept control characters")
    return query


class Directory:
    """One configured LDAP directory."""

    def __init__(self, config: DirectoryConfig) -> None:
        self.config = config

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def _socket_timeout(self) -> int:
        """ldap3 sets socket timeouts in whole seconds."""
        return max(1, math.ceil(self.config.timeout_seconds))

    def _server(self) -> Server:
        tls = None
        if self.config.start_tls or self.config.url.lower().startswith("ldaps://"):
            ca = str(self.config.ca_file) if self.config.ca_file else None
            tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca,
                      version=ssl.PROTOCOL_TLS_CLIENT)
        return Server(self.config.url, connect_timeout=self._socket_timeout,
                      get_info=NONE, tls=tls)

    def _connect(self, user: str | None, password: str | None) -> tuple[Connection, bool]:
        """An open connection (StartTLS done when configured) and whether the bind worked."""
        connection = Connection(self._server(), user=user, password=password,
                                authentication=SIMPLE if user else ANONYMOUS,
                                receive_timeout=self._socket_timeout, read_only=True,
                                raise_exceptions=False)
        connection.open()
        if self.config.start_tls and not connection.start_tls():
            connection.unbind()
            raise Unavailable("directory unavailable: StartTLS failed "
                              f"({connection.result.get('description', 'refused')})")
        return connection, bool(connection.bind())

    def _service_connection(self) -> Connection:
        connection, bound = self._connect(self.config.bind_dn, self.config.bind_password)
        if not bound:
            description = connection.result.get("description", "refused")
            connection.unbind()
            raise Unavailable(f"directory unavailable: the service account was refused "
                              f"({description}); check CRYOVAULT_LDAP_BIND_DN and its password")
        return connection

    def _bounded(self, work: Callable[[], T]) -> T:
        future = _pool.submit(work)
        try:
            return future.result(timeout=self.config.timeout_seconds)
        except FutureTimeout:
            raise Unavailable(f"directory unavailable: {self.config.url} did not answer within "
                              f"{self.config.timeout_seconds:g} s") from None
        except LDAPException as exc:
            raise Unavailable(f"directory unavailable: {self.config.url}: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            raise Unavailable(f"directory unavailable: {self.config.url}: {exc}") from None

    def _attributes(self) -> list[str]:
        c = self.config
        return [c.username_attribute, c.email_attribute, c.first_name_attribute,
                c.last_name_attribute]

    def _entries(self, connection: Connection, ldap_filter: str, limit: int
                 ) -> list[DirectoryEntry]:
        connection.search(self.config.base_dn, ldap_filter, search_scope=SUBTREE,
                          attributes=self._attributes(), size_limit=limit,
                          time_limit=max(1, int(self.config.timeout_seconds)))
        result = connection.result.get("result", 0)
        if result not in (0, 4, 32):  # success, size limit exceeded, no such object
            raise Unavailable(f"directory unavailable: the search failed "
                              f"({connection.result.get('description', result)})")
        c = self.config
        found = []
        for item in connection.response or []:
            if item.get("type") != "searchResEntry":
                continue
            attrs = item.get("attributes", {})
            username = _first(attrs.get(c.username_attribute))
            if not username:
                continue
            found.append(DirectoryEntry(item["dn"], username,
                                        _first(attrs.get(c.email_attribute)) or None,
                                        _first(attrs.get(c.first_name_attribute)),
                                        _first(attrs.get(c.last_name_attribute))))
        return found

    def _exact(self, connection: Connection, username: str) -> DirectoryEntry | None:
        c = self.config
        ldap_filter = (f"(&{c.user_filter}({c.username_attribute}="
                       f"{escape_filter_chars(username)}))")
        matches = self._entries(connection, ldap_filter, 2)
        if len(matches) != 1:
            return None
        return matches[0]

    # -- what the services use ---------------------------------------------------------------

    def search(self, query: str, limit: int = 20) -> list[DirectoryEntry]:
        """Directory users whose username, e-mail, first, last or full name starts with the
        query (auto-completion)."""
        query = validate_search(query)
        value = escape_filter_chars(query)
        c = self.config
        terms = "".join(f"({attr}={value}*)" for attr in (
            c.username_attribute, c.email_attribute, c.first_name_attribute,
            c.last_name_attribute, "cn"))
        ldap_filter = f"(&{c.user_filter}(|{terms}))"

        def work() -> list[DirectoryEntry]:
            connection = self._service_connection()
            try:
                return self._entries(connection, ldap_filter, limit)
            finally:
                connection.unbind()

        entries = self._bounded(work)
        return sorted(entries, key=lambda e: e.username.lower())[:limit]

    def lookup(self, username: str) -> DirectoryEntry:
        """The one directory user with this username."""
        if not username or any(ord(ch) < 32 for ch in username) or len(username) > 150:
            raise NotFound(f"no directory user named {username!r}")

        def work() -> DirectoryEntry | None:
            connection = self._service_connection()
            try:
                return self._exact(connection, username)
            finally:
                connection.unbind()

        entry = self._bounded(work)
        if entry is None:
            raise NotFound(f"no directory user named {username!r}")
        return entry

    def check_password(self, username: str, password: str) -> DirectoryEntry:
        """Bind as the user; raise Unauthenticated when the directory refuses the password."""
        if not password:  # an empty password would make an anonymous bind succeed
            raise Unauthenticated("wrong username/e-mail or password")

        def work() -> DirectoryEntry | None:
            connection = self._service_connection()
            try:
                entry = self._exact(connection, username)
            finally:
                connection.unbind()
            if entry is None:
                return None
            user_connection, bound = self._connect(entry.dn, password)
            user_connection.unbind()
            return entry if bound else None

        entry = self._bounded(work)
        if entry is None:
            raise Unauthenticated("wrong username/e-mail or password")
        return entry


def directory_from_settings(settings) -> Directory | None:
    config = DirectoryConfig.from_settings(settings)
    return Directory(config) if config else None
