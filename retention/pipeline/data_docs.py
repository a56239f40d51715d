"""Great Expectations' Data Docs readable offline: no script, style sheet or image fetched from a CDN.

GX writes pages that load jQuery, Bootstrap, bootstrap-table, Font Awesome and Vega from CDNs, and its index
page builds the table of validations in JavaScript from data inlined in the page, so with no network the index
is blank. `make_offline` rewrites every page of a site to load two small files copied next to it instead
(`data_docs_static/`): a stand-in for the few jQuery / bootstrap-table calls the pages make, which renders that
table and its row links, and a style sheet for the Bootstrap classes they use. Pages stay readable, not identical.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ASSETS = Path(__file__).with_name("data_docs_static")
ASSET_DIR = Path("static") / "offline"
"""Where the assets go inside a Data Docs site."""

EXTERNAL_SCRIPT = re.compile(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>\s*')
EXTERNAL_STYLE = re.compile(r'<link[^>]*\bhref="https?://[^"]*"[^>]*>\s*')
GX_IMAGE = re.compile(r"https://great-expectations-web-assets\.[^\"')]*")


def make_offline(site: Path) -> int:
    """Copy the assets into `site` and rewrite each of its pages that still loads from a CDN; returns how many."""
    target = site / ASSET_DIR
    target.mkdir(parents=True, exist_ok=True)
    for asset in ASSETS.iterdir():
        shutil.copyfile(asset, target / asset.name)
    rewritten = 0
    for page in site.rglob("*.html"):
        html = page.read_text()
        offline = offline_html(html, Path(os.path.relpath(site, page.parent)))
        if offline != html:
            page.write_text(offline)
            rewritten += 1
    return rewritten


def offline_html(html: str, root: Path) -> str:
    """One page with its CDN scripts and style sheets replaced by the local assets under `root` (the site)."""
    assets = (root / ASSET_DIR).as_posix()
    # the stand-in goes where jQuery was, before the inline scripts that call it
    html = _replace_first(EXTERNAL_SCRIPT, html, f'<script src="{assets}/data_docs.js"></script>\n')
    html = _replace_first(EXTERNAL_STYLE, html, f'<link rel="stylesheet" href="{assets}/data_docs.css">\n')
    return GX_IMAGE.sub((root / "static" / "images" / "logo-long.png").as_posix(), html)


def _replace_first(pattern: re.Pattern, html: str, replacement: str) -> str:
    first = pattern.search(html)
    if first is None:
        return html
    return html[:first.start()] + replacement + pattern.sub("", html[first.end():])
