"""Runtime configuration: every knob is CRYOVAULT_<NAME> in the environment or cryovault.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

StorageRole = Literal["primary", "archive", "export"]
STORAGE_ROLES: tuple[StorageRole, ...] = ("primary", "archive", "export")


class StorageConfig(BaseModel):
    """One storage: a local directory (`/path` or `file:///path`) or an fsspec URL such as
    `s3://bucket/prefix` (S3-compatible: give `endpoint_url` and credentials)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    role: StorageRole = "primary"
    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    region: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRYOVAULT_", toml_file="cryovault.toml")

    data_dir: Path = Field(default=Path("data"), description="Where the embedded database lives")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in data_dir"
    )
    session_idle_minutes: int = Field(default=12 * 60, ge=1)
    session_max_hours: int = Field(default=7 * 24, ge=1)
    auto_upgrade: bool = Field(default=True, description="Run migrations when the server starts")
    cookie_secure: bool = Field(default=False, description="Session cookie over HTTPS only")
    storages: dict[str, StorageConfig] = Field(
        default_factory=dict,
        description="Named storages; default: primary, archive and export under data_dir/storage",
    )
    max_upload_bytes: int = Field(default=200 * 1024**3, ge=1,
                                  description="Largest file accepted by an upload")
    dask_scheduler: str | None = Field(
        default=None, description="Dask scheduler address (tcp://host:8786) for processing; "
        "default: local worker processes")
    processing_workers: int | None = Field(
        default=None, ge=1, description="local processing processes (default: one per CPU)")
    job_stale_seconds: float | None = Field(
        default=None, gt=0, description="A running job whose worker has not given a heartbeat "
        "for this long is taken over by another worker (default: 60 s)")
    upload_expiry_hours: int = Field(default=7 * 24, ge=1,
                                     description="Unfinished resumable uploads are removed after")
    # Company directory (LDAP) for adding users and for their sign-in (SPEC ADM-3).
    ldap_url: str | None = Field(default=None, description="ldap://host:389 or ldaps://host:636")
    ldap_base_dn: str = Field(default="", description="Where users are searched, e.g. "
                              "ou=people,dc=example,dc=org")
    ldap_bind_dn: str | None = Field(default=None, description="Service account for searches "
                                     "(anonymous when unset)")
    ldap_bind_password: str | None = None
    ldap_user_filter: str = Field(default="(objectClass=inetOrgPerson)",
                                  description="LDAP filter every user entry matches")
    ldap_username_attribute: str = "uid"
    ldap_email_attribute: str = "mail"
    ldap_first_name_attribute: str = "givenName"
    ldap_last_name_attribute: str = "sn"
    ldap_start_tls: bool = Field(default=False, description="Upgrade ldap:// with StartTLS")
    ldap_ca_file: Path | None = Field(default=None, description="CA certificates (PEM) that "
                                      "sign the directory's TLS certificate")
    ldap_timeout_seconds: float = Field(default=4.0, gt=0, le=30,
                                        description="Longest wait for the directory per request")
    # Licences (SPEC ADM-4): keys are verified against this Ed25519 public key.
    license_public_key: str | None = Field(
        default=None, description="Ed25519 public key (PEM or base64 of the 32 raw bytes) that "
        "signs this installation's licence keys; see 'cryovault admin make-license-keypair'")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def effective_storages(self) -> dict[str, StorageConfig]:
        if self.storages:
            return self.storages
        root = (self.data_dir / "storage").resolve()
        return {role: StorageConfig(url=str(root / role), role=role) for role in STORAGE_ROLES}

    @property
    def uploads_dir(self) -> Path:
        """Where resumable uploads are staged until complete (local to the portal host)."""
        return (self.data_dir / "uploads").resolve()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cryovault.db').resolve()}"
