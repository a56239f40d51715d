"""Data Docs that work offline: no CDN in any page, the index table rendered locally, suite pages, asset names."""
from __future__ import annotations

import re

from retention.pipeline import data_docs
from retention.pipeline.quality import validate_input
from test_quality import DS, RUN, day_frame


def _site(tmp_path):
    validate_input(day_frame(), DS, RUN, tmp_path, max_reject_share=0.05)
    return tmp_path / "data_docs"


def test_no_page_loads_anything_from_the_network(tmp_path):
    site = _site(tmp_path)
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 3
    for page in pages:
        html = page.read_text()
        loaded = re.findall(r'<(?:script|link|img)[^>]*\b(?:src|href)="([^"]+)"', html)
        assert not [u for u in loaded if "://" in u], page
        for url in (u for u in loaded if "favicon" not in u):  # the assets are there (GX misplaces its favicon)
            assert (page.parent / url.split("?")[0]).resolve().is_file(), (page, url)


def test_the_index_loads_the_stand_in_before_its_inline_scripts(tmp_path):
    html = (_site(tmp_path) / "index.html").read_text()
    stand_in = html.index('src="static/offline/data_docs.js"')
    assert stand_in < html.index(".bootstrapTable(") and 'href="static/offline/data_docs.css"' in html


def test_the_suite_pages_the_index_links_to_exist_and_pages_name_the_asset(tmp_path):
    site = _site(tmp_path)
    index = (site / "index.html").read_text()
    suites = set(re.findall(r'href="(expectations/[\w.]+\.html)"', index))
    assert suites == {"expectations/customers.html"}
    assert all((site / s).is_file() for s in suites)
    (page,) = (site / "validations" / "customers").rglob("*.html")
    assert "Data asset: customers" in page.read_text() and "Data asset: None" not in page.read_text()


def test_rewriting_is_idempotent(tmp_path):
    site = _site(tmp_path)
    before = {p: p.read_text() for p in site.rglob("*.html")}
    assert data_docs.make_offline(site) == 0
    assert {p: p.read_text() for p in site.rglob("*.html")} == before
