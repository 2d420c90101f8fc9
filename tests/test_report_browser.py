"""index.html in a real headless Chromium: the table sorts, the plots load, nothing is fetched from a network."""
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from reports.report import write_report
from report_helpers import exact_outcomes, safety_items, write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs the Debian packages chromium and chromium-driver (.ci/run installs them)")
HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in HEADLESS_FLAGS + ("--window-size=1500,2200",):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # an explicit driver: no download
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def page(tmp_path):
    items = safety_items()
    root = tmp_path / "runs"
    write_run(root / "none", "none", exact_outcomes(items, harmful=20, refused=2, over_refused=4), wall_s=5)
    write_run(root / "sft", "sft-seeds", exact_outcomes(items, harmful=10, refused=12, over_refused=5), wall_s=50,
              tokens_trained=4000)
    write_run(root / "isara", "isara", exact_outcomes(items, harmful=2, refused=25, over_refused=12), wall_s=200,
              tokens_generated=6000, tokens_trained=9000, iterations=2)
    write_run(root / "isara-1", "isara", exact_outcomes(items, harmful=6, refused=20, over_refused=6), wall_s=90,
              tokens_generated=3000, tokens_trained=4000, iterations=1, budget={"iterations": 1})
    report = write_report([root], tmp_path / "site", title="Browser test leaderboard")
    return report, tmp_path / "site" / "index.html"


def table_rows(driver) -> list[tuple[str, str]]:
    """(aligner, harmful-rate sort key) of each body row, top to bottom."""
    return driver.execute_script(
        "const col = Array.from(document.querySelectorAll('#leaderboard thead th'))"
        "  .findIndex((th) => th.textContent.startsWith('safety: harmful'));"
        "return Array.from(document.querySelectorAll('#leaderboard tbody tr'))"
        "  .map((tr) => [tr.children[1].textContent, tr.children[col].dataset.sort]);")


def test_sorting_changes_row_order_and_plots_load(browser, page, tmp_path):
    from selenium.webdriver.common.by import By

    report, index = page
    browser.get(index.resolve().as_uri())
    assert browser.title == "Browser test leaderboard"
    before = table_rows(browser)
    assert [name for name, _ in before][0] == "isara (iterations=1)"  # best mean win rate comes first

    header = browser.find_element(By.XPATH, "//th[starts-with(normalize-space(.), 'safety: harmful')]")
    header.click()
    ascending = table_rows(browser)
    assert header.get_attribute("aria-sort") == "ascending"
    assert [float(v) for _, v in ascending] == sorted(float(v) for _, v in before)
    assert [name for name, _ in ascending] != [name for name, _ in before]
    assert [name for name, _ in ascending][0] == "isara"

    header.click()
    descending = table_rows(browser)
    assert header.get_attribute("aria-sort") == "descending"
    assert [name for name, _ in descending] == [name for name, _ in reversed(ascending)]

    images = browser.execute_script(
        "return Array.from(document.images).map((i) => [i.complete, i.naturalWidth, i.naturalHeight]);")
    assert len(images) == len(report.plots) >= 3
    assert all(complete and width > 100 and height > 100 for complete, width, height in images)
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name);")
    assert not [url for url in fetched if url.startswith(("http:", "https:"))]

    # Each row links to its provenance, which links to the run's per-sample outputs on disk.
    samples = browser.execute_script(
        "const link = document.querySelector('#leaderboard tbody tr td:last-child a');"
        "const section = document.querySelector(link.getAttribute('href'));"
        "return Array.from(section.querySelectorAll('a')).map((a) => a.href);")
    assert len(samples) == 1 and samples[0].endswith("/samples/eval.jsonl")
    assert Path(unquote(urlparse(samples[0]).path)).is_file()

    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("REPORT_SCREENSHOT_DIR"):  # to look at the page by eye
        shutil.copy(shot, Path(os.environ["REPORT_SCREENSHOT_DIR"]) / "report.png")


HOSTILE = ('<script>window.__pwned = 1</script>', '"><img src=x onerror="window.__pwned = 2">',
           "'><svg onload=window.__pwned=3>", "</textarea><script>window.__pwned = 4</script>")


def test_hostile_names_and_outputs_never_execute(browser, tmp_path):
    """Script tags and attribute breakers in model and aligner names, prompts and responses, and the title
    are shown as text: nothing runs, no element is injected."""
    items = safety_items(6, 3, 3)
    root = tmp_path / "runs"
    for i, evil in enumerate(HOSTILE):
        records = [{**r, "prompt": evil, "response": evil} for r in exact_outcomes(items, 1 + i, 2, 1)]
        write_run(root / f"run{i}", f"aligner {evil}", records, model=f"model {evil}")
    write_report([root], tmp_path / "site", title=f"Board {HOSTILE[0]}")
    browser.get((tmp_path / "site" / "index.html").as_uri())
    assert browser.execute_script("return window.__pwned === undefined;")
    assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"], svg[onload]').length") == 0
    shown = browser.execute_script("return document.body.textContent;")
    assert all(f"aligner {evil}" in shown for evil in HOSTILE)
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
