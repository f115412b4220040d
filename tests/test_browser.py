"""The app in a real browser: streamlit run on 127.0.0.1, headless Debian Chromium, Playwright.

Needs Chromium at /usr/bin/chromium (`apt-get install -y chromium`) and the
playwright package; no browser download. Screenshots of every page go to
artifacts/browser/ (git-ignored): look at them.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from streamlit_app import ICON
from tests.browser_support import CHROMIUM_ARGS, ROOT, settle, start_server
from tests.conftest import skip_or_fail
from tests.lab_sources import LOOPS_FOREVER, RIGHT, WRONG

SHOTS = ROOT / "artifacts" / "browser"
PAGES = {"home": "", "tokenization": "tokenization", "embeddings": "embeddings",
         "positional": "positional", "attention": "attention", "encoder": "encoder",
         "decoder": "decoder", "attribution": "attribution", "quantization": "quantization", "build": "build",
         "training": "training", "runs": "runs"}


@pytest.fixture(scope="module")
def browser(imdb):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        skip_or_fail("Chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -r requirements-dev.txt)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, imdb):
    """A fresh server with no trained run, so pages show random-init weights."""
    env = {**os.environ, "MINITX_CHECKPOINTS": str(tmp_path_factory.mktemp("no-runs")),
           "MINITX_LABS": str(tmp_path_factory.mktemp("my-labs"))}
    try:
        process, url = start_server(env)
    except RuntimeError as error:
        pytest.fail(str(error))
    yield url
    process.terminate()
    try:
        process.wait(timeout=45)    # a run still training is stopped and saved first (runs.py allows 30 s)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the server did not exit within 45 s of SIGTERM")


def _drawn(page) -> None:
    """Every element has its code (Streamlit shows a skeleton until a chart's is loaded) and every chart has
    drawn (Vega puts a canvas or an svg in it a moment later), then two frames painted. Bounded: a chart
    with nothing to draw must not hold the test up."""
    from playwright.sync_api import TimeoutError as StillDrawing

    try:
        page.wait_for_function("() => !document.querySelector('[data-testid=stSkeleton]') && "
                               "[...document.querySelectorAll('[data-testid=stVegaLiteChart]')]"
                               ".every(chart => chart.querySelector('canvas, svg'))", timeout=3_000)
    except StillDrawing:
        pass
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def _settle(page, timeout_ms: int = 60_000) -> None:
    """The page has rendered, the shared sidebar is there, and the charts have drawn."""
    settle(page, timeout_ms)
    page.wait_for_selector("[data-testid=stSidebar] >> text=Your model", timeout=timeout_ms)
    _drawn(page)


def _screenshot(page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 16_000)})
    _drawn(page)        # the charts redrawn at the new size
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})


def _heatmaps(page) -> int:
    return page.locator("[data-testid=stVegaLiteChart]").count()


def _new_page(browser) -> tuple:
    """A page, and the list its JavaScript errors go into (the tests end by asserting it empty)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors


def test_click_through_the_app(browser, server):
    page, errors = _new_page(browser)

    # 1) a page URL opened cold, first thing on a fresh server: the frame and the sidebar are there
    page.goto(f"{server}/attention")
    _settle(page)
    sidebar = page.locator("[data-testid=stSidebar]")
    assert sidebar.get_by_text("Your model").is_visible()
    assert sidebar.get_by_text("4 · Grouped-query attention").is_visible()   # our labels, not legacy ones
    assert page.get_by_role("heading", name="Grouped-query attention").is_visible()
    _screenshot(page, "a-cold-deep-link-attention")

    # the tab's icon is ours and inline (ui/icon.svg): no request to the internet on each page
    icon = page.locator("link[rel='shortcut icon']").get_attribute("href")
    assert icon.startswith("data:image/svg+xml;base64,"), icon[:80]
    assert base64.b64decode(icon.split(",", 1)[1]) == ICON.read_bytes()

    # 2) changing the head count redraws one heatmap per head
    assert _heatmaps(page) == 4
    heads = sidebar.locator("[data-testid=stSlider]").filter(has_text="heads H").first.get_by_role("slider")
    heads.focus()
    page.keyboard.press("ArrowRight")          # 4 -> 8 heads
    _settle(page)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=stVegaLiteChart]').length === 8")
    assert page.get_by_role("heading", name="8 query heads, 2 key/value head(s)").is_visible()
    _screenshot(page, "b-attention-8-heads")

    # 3) every page, through the navigation
    for n, (name, path) in enumerate(PAGES.items()):
        sidebar.locator("[data-testid=stSidebarNav] a").nth(n).click()
        page.wait_for_url(f"{server}/{path}", timeout=60_000)
        _settle(page)
        assert not page.locator("[data-testid=stException]").count(), name
        assert sidebar.get_by_text("Your model").is_visible(), name
        _screenshot(page, f"page-{n}-{name}")
    assert not errors, errors


def _progress(page) -> float:
    return float(page.locator("[data-testid=stProgress] [role=progressbar]").first.get_attribute("aria-valuenow"))


def _status(page) -> str:
    return page.locator("h4").filter(has_text="browser-run").first.inner_text()


def _wait_for_status(page, status: str, timeout_ms: int) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('h4')].some("
                           f"h => h.innerText.includes('browser-run') && h.innerText.includes('{status}'))",
                           timeout=timeout_ms)


def _wait_until_training(page, timeout_ms: int) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stProgress]')]"
                           ".some(e => e.innerText.includes('tokens/s'))", timeout=timeout_ms)


def _nav(page, label: str, heading: str) -> None:
    """Click a page in the sidebar and wait until that page has been drawn. Its heading first:
    right after the click the script state can still read "notRunning" from the page before,
    and the Runs page's run list was once looked for before its script had run (CI, 5378a2b)."""
    page.locator("[data-testid=stSidebarNav]").get_by_text(label, exact=True).click()
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    _settle(page)


def _choose_preset(page, label: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text="start from a preset").click()
    page.get_by_role("option", name=label, exact=True).click()
    _settle(page)


def _name_run(page, name: str) -> None:
    box = page.get_by_role("textbox", name="run name (optional)")
    box.fill(name)
    box.press("Enter")
    _settle(page)


def test_live_training_run_stop_and_predict(browser, server):
    """Start a run, watch it move on its own, leave and come back, stop it, find it, ask it."""
    page, errors = _new_page(browser)
    page.goto(f"{server}/training")
    _settle(page)

    # the tiny preset on 12,000 reviews: about 1,350 steps, long enough to watch, leave, come back and stop
    _choose_preset(page, "Tiny (smoke test)")
    reviews = page.get_by_role("spinbutton", name="training reviews (incl. validation)")
    reviews.fill("12000")
    reviews.press("Enter")
    _settle(page)
    page.get_by_text("More knobs").click()          # evaluate every 200 steps: charts mid-run
    every = page.get_by_role("spinbutton", name="also evaluate every N steps (0 = epoch ends)")
    every.fill("200")
    every.press("Enter")
    _settle(page)
    _name_run(page, "browser-run")
    assert page.get_by_text("Estimated time: about").is_visible()
    _screenshot(page, "live-1-configured")

    page.get_by_role("button", name="Start training").click()
    _wait_until_training(page, 120_000)
    assert "running" in _status(page)
    chart = page.get_by_test_id("stVegaLiteChart").first
    first_progress, first_chart = _progress(page), chart.screenshot()
    page.wait_for_timeout(3_000)                    # no clicks: the page must move by itself
    assert _progress(page) > first_progress
    assert chart.screenshot() != first_chart          # the loss chart was redrawn with new steps
    # an evaluation redraws the page by itself: the evaluation accuracy and loss charts appear
    page.wait_for_function("() => document.querySelectorAll('[data-testid=stVegaLiteChart]').length === 3",
                           polling=250, timeout=60_000)
    assert "running" in _status(page)
    _screenshot(page, "live-2-running")

    # leave for another page and come back: the run went on without us
    _nav(page, "5 · Encoder stack", "The encoder stack")
    assert page.get_by_role("heading", name="Encoder stack").is_visible()
    _nav(page, "10 · Training", "Training")
    _wait_until_training(page, 30_000)
    assert "running" in _status(page) and _progress(page) > first_progress
    _screenshot(page, "live-3-back-still-running")

    # a reload, and a second tab: both show the same run, still going
    page.reload()
    _settle(page)
    assert "running" in _status(page)
    other, other_errors = _new_page(browser)
    other.goto(f"{server}/training")
    _settle(other)
    assert "running" in other.locator("h4").filter(has_text="browser-run").first.inner_text()
    other.close()
    assert not other_errors, other_errors

    page.get_by_role("button", name="Stop").click()
    page.wait_for_function("() => [...document.querySelectorAll('h4')].some("
                           "h => h.innerText.includes('browser-run') && h.innerText.includes('stopped'))",
                           timeout=60_000)
    _settle(page)
    assert page.get_by_text("stopped by request").first.is_visible()
    _screenshot(page, "live-4-stopped")

    # Continue: the same run goes on from the step it stopped at; its bar and charts go on from there
    stopped_at = _progress(page)
    assert stopped_at > 0
    page.get_by_role("button", name="Continue").click()
    _wait_for_status(page, "running", 120_000)
    _wait_until_training(page, 120_000)
    assert _progress(page) >= stopped_at                  # not from 0
    page.wait_for_function(f"() => Number(document.querySelector('[data-testid=stProgress] [role=progressbar]')"
                           f".getAttribute('aria-valuenow')) > {stopped_at}", polling=250, timeout=60_000)
    _screenshot(page, "live-4b-continued")
    page.get_by_role("button", name="Stop").click()
    _wait_for_status(page, "stopped", 60_000)
    _settle(page)

    # the run is saved and listed; ask it about a review
    _nav(page, "11 · Runs & predict", "Runs & predict")
    assert page.get_by_test_id("stMultiSelect").get_by_text("browser-run").is_visible()
    review = page.get_by_role("textbox", name="your review")
    review.fill("A wonderful film: moving, funny and beautifully acted. I loved every minute.")
    review.press("Control+Enter")
    _settle(page)
    assert page.get_by_test_id("stMetric").filter(has_text="P(positive)").is_visible()
    page.get_by_test_id("attribution-chips").wait_for(timeout=30_000)   # its own delta, a moment later
    assert page.get_by_test_id("attribution-chips").count() == 1
    _screenshot(page, "live-5-predict")

    # the chart toolbar saves PNG; this button saves the loss curves as SVG, drawn on the click
    with page.expect_download(timeout=60_000) as download:
        page.get_by_test_id("stDownloadButton").filter(has_text="Download as SVG").first.click()
    svg = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename == "training-loss.svg"
    assert svg.startswith(b"<svg") and b"browser-run" in svg, svg[:200]
    assert not page.locator("[data-testid=stException]").count()
    assert not errors, errors


def test_a_language_model_trained_from_the_page_writes_on_the_decoder_page(browser, server):
    """lm-tiny from the Training page to the end, then listed on the Runs page, exported from there as a
    Hugging Face folder, and generating on the Decoder page."""
    page, errors = _new_page(browser)
    page.goto(f"{server}/training")
    _settle(page)
    _choose_preset(page, "Language model, tiny (smoke test)")
    _name_run(page, "browser-lm")
    assert page.get_by_text("Estimated time: about").is_visible()
    page.get_by_role("button", name="Start training").click()
    page.wait_for_function("() => [...document.querySelectorAll('h4')].some("
                           "h => h.innerText.includes('browser-lm') && h.innerText.includes('finished'))",
                           timeout=180_000)
    _settle(page)
    assert page.get_by_text("What the model wrote as it learned").is_visible()
    assert page.get_by_test_id("stMetric").filter(has_text="test bits per character").is_visible()
    _screenshot(page, "lm-1-trained")

    _nav(page, "11 · Runs & predict", "Runs & predict")
    assert page.get_by_test_id("stMultiSelect").get_by_text("browser-lm").is_visible()
    page.get_by_role("heading", name="Take your model with you").wait_for(timeout=60_000)   # the newest run's
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Hugging Face folder (.zip").click()
    assert download.value.suggested_filename == "browser-lm-hf.zip"
    with zipfile.ZipFile(download.value.path()) as archive:
        assert "browser-lm/model.safetensors" in archive.namelist() and "browser-lm/tokenizer.json" in archive.namelist()
    _screenshot(page, "lm-2-runs")

    _nav(page, "6 · Decoder & generation", "Decoder & generation")
    assert page.get_by_text("Run browser-lm").first.is_visible()
    prompt = page.get_by_role("textbox", name="prompt")
    prompt.fill("The acting was")
    prompt.press("Control+Enter")
    _settle(page)
    text = page.get_by_test_id("generated-text").inner_text()
    assert text.startswith("The acting was") and len(text) > len("The acting was"), text
    _screenshot(page, "lm-3-decoder")
    assert not page.locator("[data-testid=stException]").count()
    assert not errors, errors


def _type_into_editor(page, code: str) -> None:
    """Select everything in the lab's editor (Ace, in the component's iframe) and type code in its
    place, as a paste does (typed key by key, Ace would indent every line again), then Ctrl+Enter."""
    editor = page.frame_locator("iframe[title*=code_editor]")
    editor.locator(".ace_content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(code)
    page.keyboard.press("Control+Enter")


def test_build_attention_in_the_editor_and_draw_the_attention_page_with_it(browser, server):
    """Type an attention that never ends, and the server still serves other pages; type a right
    one, see it pass; then the attention page draws its heatmaps with it."""
    import urllib.request

    page, errors = _new_page(browser)
    page.goto(f"{server}/build?lab=attention")
    _settle(page)
    page.frame_locator("iframe[title*=code_editor]").locator(".ace_content").wait_for(timeout=30_000)
    assert page.get_by_role("heading", name="Scaled dot-product attention").is_visible()

    _type_into_editor(page, LOOPS_FOREVER.format(function="attention"))
    page.wait_for_selector("[data-testid=stSpinner]", timeout=10_000)      # the check is running
    other, other_errors = _new_page(browser)
    started = time.monotonic()
    other.goto(f"{server}/positional")                                      # meanwhile, another tab
    _settle(other)
    assert other.get_by_role("heading", name="Positional encoding").is_visible()
    assert urllib.request.urlopen(f"{server}/_stcore/health", timeout=5).read() == b"ok"
    assert time.monotonic() - started < 30
    other.close()
    page.get_by_text("and was stopped").wait_for(timeout=30_000)        # its processor time, or the wall clock
    _screenshot(page, "build-1-endless-loop")

    _type_into_editor(page, WRONG["attention"][0][1])                      # no 1/sqrt(Dh)
    page.get_by_text("No 1/√Dh").wait_for(timeout=30_000)
    _settle(page)
    assert page.get_by_text("Your line 5: scores = torch.matmul(q, k.transpose(-1, -2))").is_visible()
    gutter = page.frame_locator("iframe[title*=code_editor]").locator(".ace_gutter-cell.ace_error")
    gutter.first.wait_for(timeout=10_000)
    assert gutter.count() == 1 and gutter.inner_text().strip() == "5"    # the line the message quotes
    assert _heatmaps(page) == 3                                             # target, yours, difference
    _screenshot(page, "build-2-attention-no-scale")

    _type_into_editor(page, RIGHT["attention"])
    page.get_by_text("Passed: 7 cases").wait_for(timeout=30_000)
    _settle(page)
    assert page.get_by_text("1 of 13 labs passed").is_visible()
    _screenshot(page, "build-3-attention-passed")

    _nav(page, "4 · Grouped-query attention", "Grouped-query attention")
    page.locator("[data-testid=stCheckbox]").filter(has_text="use my").first.click()
    page.get_by_text("Drawn with your").first.wait_for(timeout=30_000)
    _settle(page)
    assert page.get_by_text("largest |logit difference|").is_visible()
    assert _heatmaps(page) >= 4 + 3          # a heatmap per head, drawn with the learner's weights, and the model's
    assert not page.locator("[data-testid=stException]").count()
    _screenshot(page, "build-4-attention-page-with-my-attention")
    assert not errors and not other_errors, (errors, other_errors)


def _draw_smollm2(page) -> None:
    """Pick SmolLM2 as the model the pages draw (the sidebar's choice holds on every page). A page that
    shows SmolLM2 by default has it marked already: another pick first, so that the learner's pick is made."""
    choices = page.locator("[data-testid=stSidebar] [data-testid=stRadio]")
    smollm2 = choices.get_by_role("radio", name="SmolLM2-135M-Instruct (pretrained)")
    if smollm2.is_checked():
        choices.get_by_text("random weights of the sliders' model").click()
        _settle(page, 180_000)
    choices.get_by_text("SmolLM2-135M-Instruct (pretrained)").click()
    _settle(page, 180_000)


def test_smollm2_answers_its_heads_are_found_and_it_runs_with_my_attention(browser, server):
    """The pretrained model in the browser: the Decoder page's chat answers with Paris, the attention
    page's head finder draws, the tour reaches the contribution graph, and a passing attention lab runs
    SmolLM2 to the same answer."""
    page, errors = _new_page(browser)
    page.goto(f"{server}/decoder")
    _settle(page, 180_000)
    _draw_smollm2(page)
    page.get_by_test_id("generated-text").wait_for(timeout=120_000)
    answer = page.get_by_test_id("generated-text").inner_text()
    assert "Paris" in answer, answer
    assert page.get_by_test_id("template-chips").is_visible()
    _screenshot(page, "smollm2-1-decoder-chat")

    _nav(page, "4 · Grouped-query attention", "Grouped-query attention")
    page.get_by_role("heading", name="Head finder").wait_for(timeout=120_000)
    _settle(page, 120_000)
    assert _heatmaps(page) >= 9 + 3 + 1                # a layer's 9 heads, the three scores, the drawn head
    assert page.get_by_text("induction", exact=True).first.is_visible()
    _screenshot(page, "smollm2-2-head-finder")

    _nav(page, "8 · Quantization", "Quantization")
    page.get_by_role("heading", name="What is stored").wait_for(timeout=60_000)
    _settle(page, 60_000)
    assert page.get_by_text("210 in Q4_1").first.is_visible()          # the file's own blocks, drawn
    assert page.get_by_text("Block 0 of row 0").first.is_visible() and _heatmaps(page) >= 2
    _screenshot(page, "smollm2-2b-quantization-stored-blocks")

    _nav(page, "Home", "minitx: build a transformer, then watch it learn")     # the tour, to the graph
    page.locator(".st-key-tour_start_prediction button").click()
    for step in range(2, 9):
        page.get_by_text(f"step {step - 1} of 9").first.wait_for(timeout=60_000)
        _settle(page, 120_000)
        page.locator(".st-key-tour_next button").click()
    page.get_by_text("step 8 of 9: The routes it took").first.wait_for(timeout=120_000)
    page.get_by_role("heading", name="What built this answer").wait_for(timeout=60_000)
    _settle(page, 120_000)
    assert page.get_by_text("SmolLM2 predicts ' Paris' after the sentence.").first.is_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".st-key-tour_panel").screenshot(path=str(SHOTS / "smollm2-2c-tour-contribution-graph-panel.png"))
    _screenshot(page, "smollm2-2c-tour-contribution-graph")

    page.goto(f"{server}/build?lab=attention")
    _settle(page)
    page.frame_locator("iframe[title*=code_editor]").locator(".ace_content").wait_for(timeout=30_000)
    _type_into_editor(page, RIGHT["attention"])
    page.get_by_text("Passed: 7 cases").wait_for(timeout=30_000)
    _settle(page)
    page.get_by_role("button", name="Run SmolLM2 with your attention").click()
    page.get_by_text("The same answer, token for token.").wait_for(timeout=240_000)
    _settle(page)
    assert page.get_by_text("The capital of France is Paris.").first.is_visible()
    _screenshot(page, "smollm2-3-build-with-my-attention")
    assert not page.locator("[data-testid=stException]").count()
    assert not errors, errors


def test_a_rebinding_name_for_this_machine_gets_no_editor(browser, server):
    """A name that resolves to 127.0.0.1 (Chromium's resolver told so, as a rebinding attacker's DNS
    would): the page loads, the Host header names the other site, and Build it refuses to run code."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    port = server.rsplit(":", 1)[1]
    rebinding = browser.browser_type.launch(
        executable_path=chromium, args=CHROMIUM_ARGS + ["--host-resolver-rules=MAP rebind.example 127.0.0.1"])
    try:
        page = rebinding.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"http://rebind.example:{port}/build")
        page.get_by_text("DNS rebinding").wait_for(timeout=60_000)
        assert not page.frame_locator("iframe[title*=code_editor]").locator(".ace_content").count()
        _screenshot(page, "build-refused-rebinding-name")
    finally:
        rebinding.close()
