"""Runtime configuration: every knob is CRYOVAULT_<NAME> in the environment or cryovault.toml."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource


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

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cryovault.db').resolve()}"
