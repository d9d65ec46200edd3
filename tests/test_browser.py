"""The report as a person sees it: index.html opened in headless Chromium at a phone's width and a laptop's.

Debian's Chromium (apt-get install chromium) driven through Playwright's Python package, nothing
downloaded; where either is missing the test skips, saying which. One report as the README's flow
writes it: a results folder with the user's own default run (a committed 2-core VM run, copied in)
beside the shipped reference runs; both widths in one browser.
"""

import re
import shutil
from pathlib import Path

import pytest

from bench.analysis.rows import load_frame
from bench.report.page import write_report

ROOT = Path(__file__).resolve().parents[1]
# the user's own run: a default run of a 2-core VM without a GPU
OWN_RUN = (
    ROOT
    / "results/reference/vm_AMD-EPYC_no-gpu_a3943d66/Linux-CPython-3.11-64bit"
    / "0003_e13047b15f629c9ea19e337905d4c1db59acf5fc_20261202_185441.json"
)
PHONE, LAPTOP = 390, 1280
TALLEST = 8_000  # px at the laptop's width: the page a user opens is the answer and a list of folded sections
SHOWN = (
    0.6  # of a picture's own pixels, at the phone's width: below it 10 pt text reads at under 9 px
)

# What the page looks like to a person: measured in the page, with its <details> as they open and all opened.
_SEEN = """() => {
  const answer = document.querySelector('section.answer');
  const h2 = document.querySelector('h2');
  return {
    width: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
    text: document.body.innerText,
    firstHeadingInAnswer: !!(answer && h2 && answer.contains(h2)),
    answer: answer ? answer.innerText : '',
    headline: answer && answer.querySelector('.headline') ? answer.querySelector('.headline').innerText : '',
    images: [...document.images].map(i => ({src: i.getAttribute('src'), natural: i.naturalWidth,
                                           shown: i.getBoundingClientRect().width})),
  };
}"""
_OPEN_ALL = """async () => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  await Promise.all([...document.images].map(i => { i.loading = 'eager';
    return i.complete && i.naturalWidth ? null : new Promise(r => { i.onload = i.onerror = r; }); }));
}"""


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'"
    )
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine: apt-get install chromium (Debian's package)")
    results = tmp_path_factory.mktemp("browser") / "results"
    own = results / "my-vm_AMD-EPYC_no-gpu_0badc0de" / OWN_RUN.parent.name
    own.mkdir(parents=True)
    shutil.copy(OWN_RUN, own / OWN_RUN.name)
    shutil.copytree(ROOT / "results" / "reference", results / "reference")
    out = results / "report"
    write_report(load_frame([results]), out)
    found = {}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for width in (PHONE, LAPTOP):
                page = browser.new_page(viewport={"width": width, "height": 800})
                page.goto((out / "index.html").as_uri())
                closed = page.evaluate(_SEEN)
                page.evaluate(_OPEN_ALL)
                found[width] = (closed, page.evaluate(_SEEN))
                page.close()
        finally:
            browser.close()
    return found


@pytest.mark.parametrize("width", [PHONE, LAPTOP])
def test_the_page_never_scrolls_sideways(seen, width):
    for state in seen[width]:  # as it opens, and with every section opened
        assert state["width"] == width and state["scrollWidth"] <= width, state["scrollWidth"]


def test_the_page_a_user_opens_is_short_and_opens_with_the_answer(seen):
    closed, opened = seen[LAPTOP]
    assert closed["height"] < TALLEST, closed["height"]
    assert opened["height"] > closed["height"]  # the figures are there, folded
    # The first heading is the user's machine's answer, and its verdict is a ratio with its interval against
    # a named reference GPU.
    assert closed["firstHeadingInAnswer"] and any(c.isdigit() for c in closed["headline"])
    assert closed["headline"].startswith("No GPU here. Reference: another machine's NVIDIA")
    # one machine's page, not a fleet of it and the reference machines
    assert "Every machine, ranked" not in closed["text"] and "machines ranked" not in closed["text"]
    assert re.search(r"\d\.\d\dx (faster|slower) \(.*\d-\d", closed["headline"])
    assert closed["text"].index(closed["answer"]) < closed["text"].index("Every figure")
    for state in seen[LAPTOP] + seen[PHONE]:
        assert "No machine measured this" not in state["text"]
        assert "nothing measured" not in state["text"]


def test_every_picture_is_shown_at_most_of_its_pixels_on_a_phone(seen):
    _closed, opened = seen[PHONE]
    assert opened["images"], "the report drew no picture"
    for image in opened["images"]:
        assert image["natural"] > 0, image  # it loaded
        assert image["shown"] >= SHOWN * image["natural"], image
