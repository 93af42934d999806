"""Portal pages of acquisition runs (SPEC SPA-2, ET-1, SPA-8) through the test client: the run
view (counts, items, paging, errors filter), its live partial, a micrograph, a tilt series,
the Discovery page and the workspace's link to them; bad input and other users' runs."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from cryovault.db.runs import Micrograph
from cryovault.ingest.items import encode_cursor
from cryovault.web.ui.run_pages import format_value, label_of, metadata_rows
from tests.ingest.test_discovery import (
    epu_run,
    put_bytes,
    register_visit,
    session_name,
    share,
    simulated_visit,
    visit_files,
)
from tests.web.test_pages import login  # noqa: F401  (the signed-in page client fixture)

MDOC = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "mdoc"
ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
HX = {"HX-Request": "true"}


def item_names(page_html: str) -> list[str]:
    """Names of the run items in page order."""
    names = re.findall(r'<li class="run-item[^"]*" id="item-' + ID + r'"[^>]*>.*?<a href="[^"]+" '
                       r'title="([^"]*)"', page_html, flags=re.S)
    return [html.unescape(n) for n in names]


def bulk_micrographs(app, dataset_id: str, count: int, *, failed_every: int = 0,
                     prefix: str = "FoilHole_1_Data_2_3_20260101_",
                     start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> list[uuid.UUID]:
    """`count` micrographs straight into the table (a big run without its files), in order."""
    rows = []
    for i in range(count):
        failed = failed_every and i % failed_every == failed_every - 1
        rows.append({"id": uuid.uuid4(), "dataset_id": uuid.UUID(dataset_id),
                     "name": f"{prefix}{i:06d}", "status": "failed" if failed else "completed",
                     "problem": f"{prefix}{i:06d}.xml: not XML" if failed else None,
                     "acquired_at": start + timedelta(seconds=i),
                     "created_at": start + timedelta(seconds=i),
                     "updated_at": start + timedelta(seconds=i),
                     "metadata_json": '{"defocus_target_angstrom": 15000, '
                                      '"dose_e_per_angstrom2": 50.5, "pixel_size_angstrom": 0.83}',
                     "has_xml": True, "has_movie": True})
    with app.state.sessions() as db:
        db.execute(insert(Micrograph), rows)
        db.commit()
    return [row["id"] for row in rows]


@pytest.fixture
def visit() -> Path:
    return simulated_visit()


def test_metadata_formatting():
    assert format_value("defocus_target_angstrom", 15000) == "1.50 µm"
    assert format_value("dose_e_per_angstrom2", 50.5) == "50.5 e⁻/Å²"
    assert format_value("pixel_size_angstrom", 0.83) == "0.83 Å"
    assert format_value("stage_alpha_deg", 0.0) == "0 °"
    assert format_value("exposure_time_s", 2.5) == "2.5 s"
    assert format_value("magnification", 130000) == "130,000"
    assert format_value("electron_counting", True) == "yes"
    assert format_value("detector", "BioQuantum K3") == "BioQuantum K3"
    assert format_value("started_at", "2022-08-01T18:58:35+02:00") == "2022-08-01 16:58:35 UTC"
    assert format_value("started_at", "soon") == "soon"
    assert label_of("min_tilt_angle_deg") == "Min tilt angle"
    rows = metadata_rows({"zeta_px": 3, "pixel_size_angstrom": 1.0, "acquired_at": "x",
                          "image_shift_unit": "units"})
    assert rows == [("Pixel size", "1 Å"), ("Zeta", "3 px")]


def test_run_view_lists_the_session(alice, login, visit):  # noqa: F811
    run = epu_run(alice)
    register_visit(alice.put, run["id"], visit_files(visit), session_name(visit))
    page = login(alice)
    response = page.get(f"/runs/{run['id']}")
    assert response.status_code == 200
    text = response.text
    assert '<strong id="count-completed">8</strong>' in text
    assert '<strong id="count-failed">0</strong>' in text
    names = item_names(text)
    api = alice.get(f"/api/v1/datasets/{run['id']}/micrographs").json()
    assert names == [item["name"] for item in api["items"]] and len(names) == 8
    # thumbnails (the bin-4 copies), key metadata, status dots, links to each micrograph
    assert text.count("/thumbnail\"") == 8
    assert text.count('<span class="dot dot-completed" title="Completed"') == 8
    assert "1.00 µm" in text and "40 e⁻/Å²" in text and "1.1 Å" in text
    assert f'href="/runs/{run["id"]}/micrographs/{api["items"][0]["id"]}"' in text
    assert f'href="/discovery/{run["id"]}"' in text
    assert 'id="run-end" data-after="' in text and "Load more" not in text
    assert 'hx-trigger="every 3s"' in text  # the run is in progress: live every few seconds
    # the workspace page leads to the run view and to Discovery
    workspace = page.get(f"/workspace/{run['id']}").text
    assert f'href="/runs/{run["id"]}" id="open-run-view"' in workspace
    assert f'href="/discovery/{run["id"]}"' in workspace


def test_paging_filter_and_live_partial(alice, app, login):  # noqa: F811
    run = epu_run(alice)
    ids = bulk_micrographs(app, run["id"], 150, failed_every=10)
    page = login(alice)
    text = page.get(f"/runs/{run['id']}").text
    assert item_names(text) == [f"FoilHole_1_Data_2_3_20260101_{i:06d}" for i in range(60)]
    assert '<strong id="count-completed">135</strong>' in text
    assert '<strong id="count-failed">15</strong>' in text and 'id="errors-count"' in text
    assert 'id="run-end"' not in text  # not at the end: no live tail
    more = re.search(r'hx-get="(/ui/runs/[^"]+/items\?cursor=[^"]+)"', text).group(1)
    second = page.get(html.unescape(more), headers=HX)
    assert second.status_code == 200
    assert item_names(second.text)[0] == "FoilHole_1_Data_2_3_20260101_000060"
    assert len(item_names(second.text)) == 60 and "<ol" not in second.text
    third = page.get(html.unescape(re.search(r'hx-get="([^"]+)"', second.text).group(1)),
                     headers=HX).text
    assert len(item_names(third)) == 30 and 'id="run-end" data-after="' in third

    # only errors
    failed = page.get(f"/ui/runs/{run['id']}/items?status=failed", headers=HX).text
    assert len(item_names(failed)) == 15
    assert failed.count('<span class="dot dot-failed" title="FoilHole_1') == 15
    assert "not XML" in failed  # the problem, shown and as the dot's tooltip
    assert page.get(f"/runs/{run['id']}?status=failed").text.count('<li class="run-item') == 15

    # live: from the end cursor, nothing new; then two more arrive
    end = encode_cursor(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=149), ids[-1])
    live = page.get(f"/ui/runs/{run['id']}/live", params={"tail": "true", "after": end},
                    headers=HX)
    assert live.status_code == 200
    assert 'id="run-counts" aria-label="Counts" hx-swap-oob="true"' in live.text
    assert item_names(live.text) == []
    bulk_micrographs(app, run["id"], 2, prefix="FoilHole_9_Data_2_3_20260102_",
                     start=datetime(2026, 1, 2, tzinfo=UTC))
    live = page.get(f"/ui/runs/{run['id']}/live", params={"tail": "true", "after": end},
                    headers=HX).text
    assert item_names(live) == ["FoilHole_9_Data_2_3_20260102_000000",
                                "FoilHole_9_Data_2_3_20260102_000001"]
    assert 'hx-swap-oob="beforebegin:#run-end"' in live
    assert '<strong id="count-completed">137</strong>' in live
    # not at the end: counts only
    live = page.get(f"/ui/runs/{run['id']}/live", params={"tail": "false", "after": ""},
                    headers=HX).text
    assert item_names(live) == [] and "count-completed" in live
    # watched items: only those whose stamp changed come back, out of band
    with app.state.sessions() as db:
        row = db.get(Micrograph, ids[0])
        stamp = str(int(row.updated_at.timestamp() * 1_000_000))
    watch = f"{ids[0]}.{stamp},{ids[1]}.0"
    live = page.get(f"/ui/runs/{run['id']}/live", params={"watch": watch}, headers=HX).text
    assert item_names(live) == ["FoilHole_1_Data_2_3_20260101_000001"]
    assert re.search(f'id="item-{ids[1]}"[^>]*hx-swap-oob="true"', live)


def test_micrograph_page(alice, login, visit):  # noqa: F811
    run = epu_run(alice)
    register_visit(alice.put, run["id"], visit_files(visit), session_name(visit))
    items = alice.get(f"/api/v1/datasets/{run['id']}/micrographs").json()["items"]
    page = login(alice)
    response = page.get(f"/runs/{run['id']}/micrographs/{items[1]['id']}")
    assert response.status_code == 200
    text = response.text
    assert items[1]["name"] in text
    assert f'href="/runs/{run["id"]}/micrographs/{items[0]["id"]}"' in text  # previous
    assert f'href="/runs/{run["id"]}/micrographs/{items[2]["id"]}"' in text  # next
    detail = alice.get(f"/api/v1/datasets/{run['id']}/micrographs/{items[1]['id']}").json()
    for f in detail["files"]:
        assert f'href="/api/v1/run-files/{f["id"]}/content"' in text
    assert "Downscaled (bin 4)" in text and "Integrated image (full size)" in text
    assert "Defocus target" in text and "Microscope" in text and "Exposure time" in text
    assert "/discovery/" in text and "square=" in text  # where it was taken
    first = page.get(f"/runs/{run['id']}/micrographs/{items[0]['id']}").text
    assert 'id="previous-item"' not in first


def test_tilt_series_view(alice, login):  # noqa: F811
    workflow = alice.create("workflow", "Lamella", workflow_type="et")
    imaging = next(s for s in alice.children(workflow["id"]) if s["name"] == "Imaging")
    run = alice.create("dataset", "Tomo 1", imaging["id"], dataset_type="tomo_run")
    put_bytes(alice, run["id"], "Position_1.mdoc", (MDOC / "tomo_test_1.mdoc").read_bytes(),
              session="tomo")
    put_bytes(alice, run["id"], "Position_2.mdoc", b"\x00\xff not an mdoc", session="tomo")
    page = login(alice)
    text = page.get(f"/runs/{run['id']}").text
    assert item_names(text) == ["Position_1", "Position_2"]
    assert '<strong id="count-in_progress">1</strong>' in text
    assert '<strong id="count-failed">1</strong>' in text
    assert "Tilts" in text and "/discovery/" not in text
    series = alice.get(f"/api/v1/datasets/{run['id']}/tilt-series").json()["items"][0]
    detail = page.get(f"/runs/{run['id']}/tilt-series/{series['id']}")
    assert detail.status_code == 200
    rows = re.findall(r"<tr><td>", detail.text)
    assert len(rows) == series["tilt_count"] > 0
    assert "Tilt axis angle" in detail.text and "°" in detail.text


def test_discovery_page(alice, login):  # noqa: F811
    run = epu_run(alice)
    page = login(alice)
    text = page.get(f"/discovery/{run['id']}").text
    assert f'data-element="{run["id"]}" data-kind="dataset"' in text
    assert f'href="/runs/{run["id"]}" id="open-run-view"' in text
    assert "/static/js/discovery.js" in text and "/static/css/runs.css" in text
    workflow = alice.get(f"/api/v1/elements/{run['id']}/path").json()[0]
    text = page.get(f"/discovery/{workflow['id']}").text
    assert 'data-kind="workflow"' in text
    assert f'href="/discovery/{workflow["id"]}"' in page.get(f"/workspace/{workflow['id']}").text


def test_bad_input_and_other_users(alice, bob, login, app):  # noqa: F811
    run = epu_run(alice)
    bulk_micrographs(app, run["id"], 3)
    page = login(alice)
    step = alice.get(f"/api/v1/elements/{run['id']}/path").json()[1]
    free = alice.create("dataset", "Notes", step["id"])
    for url, status in [
        (f"/runs/{uuid.uuid4()}", 404), ("/runs/not-an-id", 404),
        (f"/runs/{free['id']}", 422), (f"/runs/{step['id']}", 422),
        (f"/runs/{run['id']}?status=lost", 422),
        (f"/ui/runs/{run['id']}/items?cursor=bm90IGEgY3Vyc29y", 422),
        (f"/ui/runs/{run['id']}/items?cursor=%%%", 422),
        (f"/ui/runs/{run['id']}/live?tail=true&after=garbage", 422),
        (f"/ui/runs/{run['id']}/live?watch=123", 422),
        (f"/ui/runs/{run['id']}/live?tail=maybe", 422),
        (f"/runs/{run['id']}/micrographs/{uuid.uuid4()}", 404),
        (f"/runs/{run['id']}/micrographs/nope", 404),
        (f"/runs/{run['id']}/tilt-series/{uuid.uuid4()}", 422),  # an EPU run has none
        (f"/discovery/{free['id']}", 422), (f"/discovery/{uuid.uuid4()}", 404),
    ]:
        response = page.get(url)
        assert response.status_code == status, (url, response.status_code, response.text[:300])
        assert "Traceback" not in response.text
    # htmx partials answer the message alone
    response = page.get(f"/ui/runs/{run['id']}/items?cursor=zzz", headers=HX)
    assert response.status_code == 422
    assert "cursor" in response.text and "<html" not in response.text
    # someone else's run does not exist for bob, until it is shared with him
    other = login(bob)
    assert other.get(f"/runs/{run['id']}").status_code == 404
    assert other.get(f"/discovery/{run['id']}").status_code == 404
    share(alice, run, bob="viewer")
    assert len(item_names(other.get(f"/runs/{run['id']}").text)) == 3
    # signed out: to the sign-in page, and back
    anonymous = page.__class__(app)
    response = anonymous.get(f"/runs/{run['id']}", follow_redirects=False)
    assert response.status_code in (302, 303, 307)
    assert "/login?next=/runs/" in response.headers["location"]
