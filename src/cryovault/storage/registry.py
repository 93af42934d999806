"""The storages a platform is configured with (SPEC PLT-3): one primary, optional archive and
export storages, each a local directory or an fsspec URL."""

from __future__ import annotations

from cryovault.errors import NotFound
from cryovault.settings import Settings
from cryovault.storage.backends import Storage, open_storage


class StorageSet:
    def __init__(self, storages: dict[str, Storage]) -> None:
        primaries = [s for s in storages.values() if s.role == "primary"]
        if len(primaries) != 1:
            raise ValueError("configure exactly one storage with role 'primary' "
                             f"(found {len(primaries)})")
        self._storages = storages
        self.primary = primaries[0]

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageSet:
        return cls({name: open_storage(name, config)
                    for name, config in settings.effective_storages.items()})

    def get(self, name: str) -> Storage:
        try:
            return self._storages[name]
        except KeyError:
            raise NotFound(f"no storage named {name!r} is configured") from None

    def all(self) -> list[Storage]:
        order = {"primary": 0, "archive": 1, "export": 2}
        return sorted(self._storages.values(), key=lambda s: (order.get(s.role, 9), s.name))
