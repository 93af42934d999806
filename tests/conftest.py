"""Shared fixtures: a clean database per test on SQLite and, when
CRYOVAULT_TEST_POSTGRES_URL is set, on PostgreSQL too; an app, and users with tokens."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from cryovault.access import credentials, passwords, users
from cryovault.access.actor import Actor
from cryovault.db.engine import make_engine, make_sessionmaker
from cryovault.db.migrate import upgrade
from cryovault.db.models import Base
from cryovault.settings import Settings
from cryovault.web.app import create_app

POSTGRES_URL = os.environ.get("CRYOVAULT_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


def _postgres_url(schema: str) -> str:
    url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    """argon2 at production cost dominates test set-up; verification reads the parameters from
    each hash, so behaviour is the same with cheap ones. tests/access/test_passwords.py checks
    the production parameters."""
    monkeypatch.setattr(passwords, "_hasher",
                        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    schema = f"cv_test_{os.getpid()}"
    admin = make_engine(_postgres_url("public"))
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(_postgres_url(schema))
    upgrade(engine)
    engine.dispose()
    yield schema
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "cryovault.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    schema = request.getfixturevalue("postgres_schema")
    url = _postgres_url(schema)
    clean_postgres(url)
    return url


def clean_postgres(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()


@pytest.fixture
def engine(database_url) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def db(sessions) -> Iterator[Session]:
    with sessions() as session:
        yield session


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, auto_upgrade=False)


@pytest.fixture
def app(settings):
    app = create_app(settings, resume_jobs=False)
    yield app
    app.state.engine.dispose()


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@dataclass
class ApiUser:
    """A user with a bearer token, calling the API through the test client."""

    client: TestClient
    username: str
    id: uuid.UUID
    token: str
    actor: Actor

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, url, **kw):
        return self.client.get(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, url, **kw):
        return self.client.post(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def put(self, url, **kw):
        return self.client.put(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def patch(self, url, **kw):
        return self.client.patch(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def delete(self, url, **kw):
        return self.client.delete(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def create(self, kind: str, name: str, parent: str | None = None, **extra) -> dict:
        body = {"kind": kind, "name": name, "parent_id": parent, **extra}
        response = self.post("/api/v1/elements", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def children(self, parent: str | None = None, **params) -> list[dict]:
        if parent:
            params["parent_id"] = parent
        response = self.get("/api/v1/elements", params=params)
        assert response.status_code == 200, response.text
        return response.json()["items"]


def add_user(sessions, client, username: str, roles=(), password="password-123",
             email=None) -> ApiUser:
    with sessions() as session:
        user = users.create_user(session, username, password, roles=roles, email=email)
        _, secret = credentials.create_token(session, user, "tests")
        actor = Actor.of(user)
        session.commit()
        return ApiUser(client, username, user.id, secret, actor)


@pytest.fixture
def make_user(app, client):
    def make(username: str, roles=(), **kw) -> ApiUser:
        return add_user(app.state.sessions, client, username, roles, **kw)

    return make


@pytest.fixture
def alice(make_user) -> ApiUser:
    return make_user("alice", email="alice@example.org")


@pytest.fixture
def bob(make_user) -> ApiUser:
    return make_user("bob")
