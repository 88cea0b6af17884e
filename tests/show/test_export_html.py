"""`--html`: one self-contained page (images inlined, nothing fetched) with task/category/correctness filters."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from PIL import Image

from mgpo.view.export_html import SCRIPT, export_html
from mgpo.view.records import load_records


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.images: list[str] = []
        self.selects: dict[str, list[str]] = {}
        self.external: list[str] = []
        self.tags: list[str] = []
        self._select: str | None = None
        self._option = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section" and "card" in a.get("class", ""):
            self.cards.append(a)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "select":
            self._select = a["data-key"]
            self.selects[self._select] = []
        if tag == "option":
            self._option = True
        for key in ("src", "href"):
            if key in a and not a[key].startswith("data:"):
                self.external.append(a[key])

    def handle_endtag(self, tag):
        if tag == "option":
            self._option = False

    def handle_data(self, data):
        if self._option and self._select:
            self.selects[self._select].append(data)


def test_page_is_self_contained_with_filters(eval_run, tmp_path):
    records = load_records(eval_run.path)
    records[0].trajectory.question = "What colour is the <b>cup</b>?"  # model/user text must be escaped
    path = export_html(records, tmp_path / "deep" / "page.html", title="run 1")
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert page.external == [] and "link" not in page.tags and "http" not in text
    assert [(c["data-task"], c["data-category"], c["data-verdict"]) for c in page.cards] == [
        ("vstar_attr", "color", "correct"), ("vstar_pos", "position", "wrong"), ("vstar_attr", "color", "wrong")
    ]  # fmt: skip
    assert page.selects == {
        "task": ["all", "vstar_attr", "vstar_pos"],
        "category": ["all", "color", "position"],
        "verdict": ["all", "correct", "wrong", "unscored"],
    }
    # every picture is inline and decodes: per sample the original with boxes, plus one crop where a box was cut
    assert len(page.images) == 2 + 2 + 1
    for src in page.images:
        assert src.startswith("data:image/jpeg;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "&lt;b&gt;cup&lt;/b&gt;" in text and "<b>cup</b>" not in text
    assert "no box found" in text and "<span class='json'>" in text


def test_missing_images_leave_a_note(eval_run, tmp_path):
    records = load_records(eval_run.path)
    for r in records:
        r.trajectory.image_path = None
    text = export_html(records, tmp_path / "p.html").read_text(encoding="utf-8")
    assert text.count("no image: the trajectory has no image_path; showing the text only") == 3
    assert "<img" not in text


FAKE_DOM = """
const cards = JSON.parse(process.argv[2]).map(d => ({dataset: d, style: {display: ''}}));
const selects = Object.entries(JSON.parse(process.argv[3])).map(([k, v]) => ({dataset: {key: k}, value: v,
  addEventListener() {}}));
const count = {textContent: ''};
globalThis.document = {
  querySelectorAll: q => (q === '.card' ? cards : selects),
  getElementById: () => count,
  addEventListener: (ev, fn) => fn(),
};
eval(require('fs').readFileSync(process.argv[4], 'utf8'));
console.log(JSON.stringify({shown: cards.map(c => c.style.display !== 'none'), count: count.textContent}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed: the filter script cannot be run")
@pytest.mark.parametrize(
    ("wanted", "shown", "count"),
    [
        ({"task": "", "category": "", "verdict": ""}, [True, True, True], "3 shown · accuracy 1/3 = 33.3%"),
        ({"task": "vstar_attr", "category": "", "verdict": ""}, [True, False, True], "2 shown · accuracy 1/2 = 50.0%"),
        ({"task": "", "category": "position", "verdict": ""}, [False, True, False], "1 shown · accuracy 0/1 = 0.0%"),
        ({"task": "vstar_attr", "category": "", "verdict": "wrong"}, [False, False, True], "1 shown · accuracy 0/1"),
    ],
)
def test_filters_hide_and_count_cards(eval_run, tmp_path, wanted, shown, count):
    page = _Page()
    page.feed(export_html(load_records(eval_run.path), tmp_path / "p.html").read_text(encoding="utf-8"))
    cards = [{k.removeprefix("data-"): v for k, v in c.items() if k.startswith("data-")} for c in page.cards]
    (tmp_path / "dom.js").write_text(FAKE_DOM, encoding="utf-8")
    (tmp_path / "page.js").write_text(SCRIPT, encoding="utf-8")
    result = subprocess.run(
        ["node", str(tmp_path / "dom.js"), json.dumps(cards), json.dumps(wanted), str(tmp_path / "page.js")],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    out = json.loads(result.stdout)
    assert out["shown"] == shown and out["count"].startswith(count)
