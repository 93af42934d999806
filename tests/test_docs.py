"""The user guide shows only screenshots that exist (taken by tests/e2e)."""

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_guide_images_exist():
    guide = (DOCS / "user-guide.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\((images/[^)]+)\)", guide)
    assert images, "the user guide should show the portal"
    missing = [name for name in images if not (DOCS / name).is_file()]
    assert missing == []
