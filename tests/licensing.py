"""Licence keys for tests, made with the `cryovault admin` commands as a licensor would."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cryovault.cli import app as cli

runner = CliRunner()


@dataclass(frozen=True)
class Licensor:
    """A key pair made by `cryovault admin make-license-keypair`."""

    private_key: Path
    public_key: str

    def issue(self, platform_id: str, *features: str, days: int | None = 365,
              expires: str | None = None, customer: str = "Test facility") -> str:
        args = ["admin", "issue-license", "--private-key", str(self.private_key),
                "--platform-id", platform_id, "--customer", customer]
        for feature in features or ("portal=10",):
            args += ["--feature", feature]
        args += ["--expires", expires] if expires else ["--days", str(days)]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        return result.output.strip()


def make_licensor(folder: Path) -> Licensor:
    private = folder / "licensor.pem"
    public = folder / "licensor.pub"
    result = runner.invoke(cli, ["admin", "make-license-keypair", "--private-key", str(private),
                                 "--public-key", str(public)])
    assert result.exit_code == 0, result.output
    return Licensor(private, public.read_text().strip())


@pytest.fixture(scope="session")
def licensor(tmp_path_factory) -> Licensor:
    return make_licensor(tmp_path_factory.mktemp("licensor"))


@pytest.fixture(scope="session")
def other_licensor(tmp_path_factory) -> Licensor:
    """Someone else's key pair: keys it signs must be refused."""
    return make_licensor(tmp_path_factory.mktemp("other-licensor"))
