"""The built leaderboard site in a real browser: headless Chromium (Debian's `chromium` and its
`chromedriver`, driven by Selenium; no browser download) opens the pages from file://.

The site is built from three shipped reported entries, a reported entry with a hostile name, and two
reproduced entries made by real tiny `stepwise run` + `stepwise submit`: one scored by `clipscore` on
the tiny CLIP, re-checked by `leaderboard build --models` (the ranked table), and one scored by the
`scripted` test verifier, which scores step previews and so cannot be re-checked from an export
(shown apart, labelled "not re-checked"); and a search entry made by `stepwise run --strategy
parm-prune --budget 2` + `stepwise submit --search` on a stepping generator. `make test` installs
chromium when it is missing; STEPWISE_SKIP_BROWSER=1 skips these tests on machines without it.
A screenshot of each page type is saved under the test's temporary folder (and copied to
$STEPWISE_SCREENSHOTS when set).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import stepwise

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
REPORTED = ("show-o", "show-o-parm-best-of-20", "janus-pro-7b")
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(os.environ.get("STEPWISE_SKIP_BROWSER") == "1", reason="STEPWISE_SKIP_BROWSER=1")



@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    subs = root / "submissions"
    for slug in REPORTED:
        shutil.copytree(REPO / "submissions" / slug, subs / slug)
    # a shipped entry renamed: a hostile name must render as text everywhere (a JSON string is a TOML string)
    shutil.copytree(REPO / "submissions" / "show-o", subs / "hostile")
    manifest = subs / "hostile" / "submission.toml"
    text = manifest.read_text()
    manifest.write_text(text.replace(text.splitlines()[0], f"name = {json.dumps(HOSTILE)}", 1))
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        flags = runner_plugins.tiny_model_flags(tmp_path_factory)
        db = f"sqlite:///{root / 's.db'}"
        code, output = stepwise("run", "--generator", "shapes", "--per-task", "1", "--pool", "2", "--verifier",
                                "scripted", "--db", db, "--out", str(root / "out"), *flags)
        assert code == 0, output
        run_id = output.strip().splitlines()[-1]
        code, output = stepwise("submit", run_id, "--name", "Tiny shapes (random weights)", "--slug", "tiny",
                                "--db", db, "--verifier", "scripted", "--n", "2", "--out", str(subs), *flags)
        assert code == 0, output
        arch, weights, detector = flags[flags.index("--clip-arch") + 1], flags[flags.index("--clip-weights") + 1], \
            flags[flags.index("--detector") + 1]
        clip = ["--verifier", "clipscore", "--verifier-param", f"clipscore:arch={arch}",
                "--verifier-param", f"clipscore:weights={weights}", "--verifier-param", "clipscore:device=cpu"]
        code, output = stepwise("run", "--generator", "shapes", "--param", "size=40", "--per-task", "1", "--pool", "2",
                                *clip, "--db", db, "--out", str(root / "out"), *flags)
        assert code == 0, output
        run_id = output.strip().splitlines()[-1]
        code, output = stepwise("submit", run_id, "--name", "Tiny shapes, re-checked", "--slug", "tiny-rechecked",
                                "--db", db, *clip, "--n", "2", "--out", str(subs), *flags)
        assert code == 0, output
        code, output = stepwise("run", "--generator", "shapes-stepper", "--per-task", "1", "--strategy", "parm-prune",
                                "--strategy-param", "verifier=scripted-parm", "--budget", "2", "--samples", "1",
                                "--db", db, "--out", str(root / "out"), *flags)
        assert code == 0, output
        search_run = output.strip().splitlines()[-1]
        code, output = stepwise("submit", search_run, "--search", "parm-prune", "--name", "Tiny PARM, pruned",
                                "--slug", "tiny-search", "--db", db, "--out", str(subs), *flags)
        assert code == 0, output
        models = ["--models", str(Path(detector).parent), "--models", str(Path(weights).parent)]
        # built while the doubles are registered: the Verifiers page asks the scripted verifier what it states
        code, output = stepwise("leaderboard", "build", "--submissions", str(subs), "--out", str(root / "site"),
                                *models, "--strict")
        assert code == 0, output
    return root / "site"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver; "
                    ".ci/run installs them); STEPWISE_SKIP_BROWSER=1 skips this test")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--allow-file-access-from-files"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # explicit driver: no network
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def no_alert(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 (the property access is the check)


def screenshot(driver: Any, site: Path, name: str) -> Path:
    path = site.parent / f"screenshot-{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 1000
    if os.environ.get("STEPWISE_SCREENSHOTS"):
        Path(os.environ["STEPWISE_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(os.environ["STEPWISE_SCREENSHOTS"]) / path.name)
    return path


def column(driver: Any, key: str, backend: str = "mmdet", board: str = "reported") -> list[str]:
    """The cells of one column of one board's table of one backend, in displayed order."""
    from selenium.webdriver.common.by import By

    selector = f"section#{board}-{backend} table.leaderboard tr.entry-row td.col-{key}"
    return [cell.get_attribute("data-value") for cell in driver.find_elements(By.CSS_SELECTOR, selector)]


def test_index_table_sorting_and_hostile_name(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get((site / "index.html").as_uri())
    assert browser.find_elements(By.CSS_SELECTOR, "table.leaderboard.sortable-ready")  # the sort script ran
    rows = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tr.entry-row")
    expected = [*REPORTED, "hostile", "tiny", "tiny-rechecked", "tiny-search"]
    assert sorted(r.get_attribute("data-slug") for r in rows) == sorted(expected)
    kinds = {r.get_attribute("data-slug"): r.get_attribute("data-kind") for r in rows}
    assert kinds["tiny"] == "reproduced" and kinds["show-o"] == "reported"

    # the hostile name is shown as text, nothing ran
    link = browser.find_element(By.CSS_SELECTOR, "tr.entry-row[data-slug='hostile'] a.entry-link")
    assert link.text == HOSTILE
    assert browser.find_elements(By.CSS_SELECTOR, "img[src='x']") == []
    no_alert(browser)

    # default order: overall, best first; a header click sorts by that column, a second click reverses
    overall = [float(v) for v in column(browser, "overall") if v]  # the mmdet table
    assert overall == sorted(overall, reverse=True)
    # one table per board and evaluator backend: the reported numbers are GenEval's (mmdet), the tiny runs used hf
    assert len(column(browser, "overall", "hf", "rechecked")) == 1 and len(column(browser, "overall")) == 4
    mmdet = "section#reported-mmdet th[data-key='position'] button.sort-button"
    browser.find_element(By.CSS_SELECTOR, mmdet).click()
    position = [float(v) for v in column(browser, "position") if v]
    assert position == sorted(position, reverse=True) and len(position) >= 4
    browser.find_element(By.CSS_SELECTOR, mmdet).click()
    again = [float(v) for v in column(browser, "position") if v]
    assert again == sorted(again)
    screenshot(browser, site, "index")


def test_verification_labels_and_separate_tables(site: Path, browser: Any) -> None:
    """Re-checked reproduced entries are ranked in the first table; the one that could not be re-checked
    is shown apart, labelled; reported numbers have their own table; entry pages say what was checked."""
    from selenium.webdriver.common.by import By

    browser.get((site / "index.html").as_uri())
    boards = [b.get_attribute("data-board") for b in browser.find_elements(By.CSS_SELECTOR, "section.board")]
    assert boards == ["rechecked", "unverified", "reported"]

    def slugs(board: str) -> list[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, f"section#board-{board} tr.entry-row")
        return [r.get_attribute("data-slug") for r in rows]

    # the search entry too: its picks are checked for consistency, but only running it again re-checks them
    assert slugs("rechecked") == ["tiny-rechecked"] and sorted(slugs("unverified")) == ["tiny", "tiny-search"]
    assert sorted(slugs("reported")) == sorted([*REPORTED, "hostile"])
    label = browser.find_element(By.CSS_SELECTOR, "tr.entry-row[data-slug='tiny-rechecked'] span.verify-rechecked")
    assert label.text == "re-checked" and label.is_displayed()
    label = browser.find_element(By.CSS_SELECTOR, "tr.entry-row[data-slug='tiny'] span.verify-consistent")
    assert label.text == "not re-checked" and label.is_displayed()
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h2.board-title")]
    assert headings == ["Reproduced and re-checked", "Reproduced, not re-checked", "Reported (numbers from papers)"]
    assert not browser.find_elements(By.CSS_SELECTOR, "section#board-reported span.verify-rechecked")
    screenshot(browser, site, "boards")

    browser.get((site / "entry" / "tiny-rechecked.html").as_uri())
    section = browser.find_element(By.ID, "verification")
    assert section.get_attribute("data-level") == "rechecked"
    assert "170 of 170" not in section.text and "64 of 170" in section.text  # the default sample
    assert "Candidates re-scored by clipscore" in section.text and "Re-check seed" in section.text
    browser.get((site / "entry" / "tiny.html").as_uri())
    section = browser.find_element(By.ID, "verification")
    assert section.get_attribute("data-level") == "consistent"
    assert "scores step previews, which exports do not ship" in section.text
    assert browser.find_element(By.CSS_SELECTOR, "p.entry-meta span.verify-consistent").text == "not re-checked"
    screenshot(browser, site, "verification")


def test_links_lead_to_entry_pages_and_the_gallery(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get((site / "index.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, "tr.entry-row[data-slug='tiny'] a.entry-link").click()
    assert browser.find_element(By.CSS_SELECTOR, "body").get_attribute("data-page") == "entry"
    assert browser.find_element(By.ID, "entry").get_attribute("data-slug") == "tiny"
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.chart-bars rect.bar")
    assert {b.get_attribute("data-task") for b in bars} >= {"single_object", "color_attr"} and len(bars) >= 6
    figures = browser.find_elements(By.CSS_SELECTOR, "#gallery figure.candidate")
    assert len(figures) == 85 * 2
    verdicts = {f.get_attribute("data-verdict") for f in figures}
    assert verdicts <= {"correct", "incorrect"}
    # thumbnails load from the site folder (naturalWidth > 0), with their detection overlays
    first = figures[0].find_element(By.CSS_SELECTOR, "img.thumb-img")
    browser.execute_script("arguments[0].scrollIntoView()", first)
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", first) > 0
    assert figures[0].find_elements(By.CSS_SELECTOR, "svg.boxes")
    assert figures[0].find_element(By.CSS_SELECTOR, "span.reason").text
    screenshot(browser, site, "entry")

    # every nav link resolves to a page of the site
    for nav in [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "nav#site-nav a.nav-link")]:
        browser.get(nav)
        if nav.endswith(".json"):  # the table as data
            data = json.loads(browser.find_element(By.TAG_NAME, "body").text)
            assert "tiny" in json.dumps(data) and HOSTILE in json.dumps(data, ensure_ascii=False)
        else:
            assert browser.find_element(By.ID, "page-title").text
    browser.get((site / "entry" / "hostile.html").as_uri())
    assert browser.find_element(By.ID, "entry-name").text == HOSTILE
    no_alert(browser)


def test_scaling_and_compare_pages(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get((site / "scaling.html").as_uri())
    section = browser.find_element(By.CSS_SELECTOR, "section.scaling-entry[data-slug='tiny']")
    series = {g.get_attribute("data-series") for g in section.find_elements(By.CSS_SELECTOR, "g.series")}
    assert {"scripted", "random", "oracle"} <= series
    screenshot(browser, site, "scaling")

    browser.get((site / "compare.html").as_uri())
    assert browser.find_elements(By.CSS_SELECTOR, "form#compare-form.compare-ready")
    pair = browser.find_element(By.CSS_SELECTOR, "li.pair a.pair-link")
    pair.click()
    assert browser.find_element(By.CSS_SELECTOR, "body").get_attribute("data-page") == "pair"
    assert len(browser.find_elements(By.CSS_SELECTOR, "table#compare-table tr[data-task]")) >= 6
    screenshot(browser, site, "compare")


def test_verifiers_page(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get((site / "entry" / "tiny.html").as_uri())
    browser.find_element(By.ID, "verifiers-link").click()
    assert browser.find_element(By.CSS_SELECTOR, "body").get_attribute("data-page") == "verifiers"
    assert browser.find_element(By.ID, "verifiers").get_attribute("data-slug") == "tiny"
    table = browser.find_element(By.CSS_SELECTOR, "table.verifier-table[data-verifier='scripted']")
    groups = [r.get_attribute("data-group") for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert groups[-1] == "overall" and {"single_object", "color_attr"} <= set(groups)
    overall = table.find_element(By.CSS_SELECTOR, "tr[data-group='overall']")
    for key in ("within_auroc", "pooled_auroc", "regret_at_n"):
        value = overall.find_element(By.CSS_SELECTOR, f"td.col-{key}").get_attribute("data-value")
        assert value == "" or -1.0 <= float(value) <= 1.0
    # the reliability diagram (the scripted double states a probability) and the per-step curve, drawn inline
    bins = browser.find_elements(By.CSS_SELECTOR, "svg.chart-reliability rect.reliability-bin")
    assert bins and sum(int(b.get_attribute("data-count")) for b in bins) == 85 * 2
    steps = browser.find_element(By.CSS_SELECTOR, "section#steps svg.chart-lines")
    assert [g.get_attribute("data-series") for g in steps.find_elements(By.CSS_SELECTOR, "g.series")] == ["scripted"]
    assert len(steps.find_elements(By.CSS_SELECTOR, "circle.point")) >= 1
    screenshot(browser, site, "verifiers")
    browser.find_element(By.ID, "entry-back-link").click()
    assert browser.find_element(By.CSS_SELECTOR, "body").get_attribute("data-page") == "entry"


def test_a_search_entry_in_the_index_the_scaling_page_and_its_trace_view(site: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get((site / "index.html").as_uri())
    row = browser.find_element(By.CSS_SELECTOR, "tr.entry-row[data-slug='tiny-search']")
    badge = row.find_element(By.CSS_SELECTOR, "span.badge.search-entry")
    assert badge.get_attribute("data-budget") == "2" and "budget 2" in badge.text
    assert row.find_element(By.CSS_SELECTOR, "td.col-strategy").text == "parm-prune"

    browser.get((site / "scaling.html").as_uri())
    figure = browser.find_element(By.CSS_SELECTOR, "section#search-scaling section.search-figure")
    points = figure.find_elements(By.CSS_SELECTOR, "svg.chart-compute g.search-point[data-slug='tiny-search']")
    assert points and float(points[0].get_attribute("data-x")) > 0
    screenshot(browser, site, "search-scaling")

    browser.get((site / "entry" / "tiny-search.html").as_uri())
    assert browser.find_element(By.ID, "search").find_elements(By.CSS_SELECTOR, "dl.fields dt")
    trace = browser.find_element(By.CSS_SELECTOR, "#prompt-0 details.trace")
    browser.execute_script("arguments[0].open = true; arguments[0].scrollIntoView()", trace)
    paths = trace.find_elements(By.CSS_SELECTOR, "tr.trace-path")
    assert len(paths) == 2  # budget 2: two paths
    assert sum(p.get_attribute("data-fate") == "picked" for p in paths) == 1
    preview = trace.find_element(By.CSS_SELECTOR, "img.trace-preview")  # the previews the search saw load
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", preview) > 0
    assert trace.find_element(By.CSS_SELECTOR, "ul.trace-scores li").text.startswith("step 1:")
    screenshot(browser, site, "search-trace")
