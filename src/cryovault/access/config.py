"""What access control needs from the installation's settings: the licence verification key and
the company directory. Built once per application (web/app.py) or CLI command."""

from __future__ import annotations

from dataclasses import dataclass

from cryovault.access.ldap import Directory, directory_from_settings
from cryovault.access.licences import Licensing


@dataclass(frozen=True)
class AccessConfig:
    licensing: Licensing
    directory: Directory | None = None

    @classmethod
    def from_settings(cls, settings) -> AccessConfig:
        return cls(Licensing.from_config(settings.license_public_key),
                   directory_from_settings(settings))


NO_EXTERNAL = AccessConfig(Licensing(None))
