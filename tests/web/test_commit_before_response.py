"""A write is committed before its response leaves, so a client reading at once sees it.

FastAPI runs the exit code of a yield dependency after the response was sent unless the
dependency has scope="function"; with the default, a browser following the redirect of a login
could arrive before the session row was committed. (TestClient waits for the whole app, so only
a live server shows the race: tests/e2e does.)"""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "cryovault"


def test_every_session_dependency_commits_before_the_response():
    uses = []
    for path in SRC.rglob("*.py"):
        for match in re.finditer(r"Depends\(get_db[^)]*\)", path.read_text(encoding="utf-8")):
            uses.append((path.name, match.group(0)))
    assert len(uses) > 20
    assert [u for u in uses if 'scope="function"' not in u[1]] == []
