"""`hybridlab ui` in a real browser: the MLflow UI shows a sweep's trials and compares two of them.

Follows stack-notes.md §3 (MLflow server: healthy after about 13 s, 403 for foreign Host headers; the
hash-router URLs ``#/experiments/<id>/runs`` and ``#/compare-runs?runs=<JSON>&experiments=<JSON>``)
and design.md ("CLI": ``hybridlab ui`` serves MLflow on 127.0.0.1 over HYBRIDLAB_HOME). The server
runs over the small real sweep of ``conftest.small_sweep_home``; headless Chromium (Debian's
``chromium`` package, driven by the ``playwright`` Python package) loads the pages. Screenshots
(mlflow_experiment.png, mlflow_compare.png) go to a temporary folder, or to $HYBRIDLAB_SCREENSHOTS
(``HYBRIDLAB_SCREENSHOTS=docs/images`` refreshes the ones in the docs).

Skips, with the install line, when playwright or a Chromium binary is missing. Set
HYBRIDLAB_CHROMIUM to use another Chromium binary.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from analysis.store import client

REPO = Path(__file__).resolve().parents[2]
# Screenshots land in a temporary folder unless HYBRIDLAB_SCREENSHOTS names one (docs/images refreshes them).
IMAGES = Path(os.environ.get("HYBRIDLAB_SCREENSHOTS") or tempfile.mkdtemp(prefix="hybridlab-ui-"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HEALTH_TIMEOUT_S = 60
UI_TIMEOUT_MS = 30_000


def _chromium() -> str | None:
    for path in (os.environ.get("HYBRIDLAB_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < HEALTH_TIMEOUT_S:
        if proc.poll() is not None:
            pytest.fail(f"`hybridlab ui` exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and r.read().strip() == b"OK":
                    return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not OK after {HEALTH_TIMEOUT_S} s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def _goto_until(page, url: str, ready, debug: Path, attempts: int = 3) -> None:  # type: ignore[no-untyped-def]
    """Open ``url`` until ``ready`` shows; a page whose first search came back empty under load is reloaded."""
    for attempt in range(1, attempts + 1):
        page.goto(url)
        try:
            ready.wait_for(state="visible", timeout=UI_TIMEOUT_MS // attempts)
            return
        except Exception:
            page.screenshot(path=f"{debug}-attempt{attempt}.png")
            if attempt == attempts:
                raise
            page.goto("about:blank")


def _wheel(page, dy: float) -> None:  # type: ignore[no-untyped-def]
    """Scroll by ``dy`` with the wheel, then nudge -1/+1 pixel: MLflow 3.17.2's compare view moves the metric-name
    column to the value column's previous scroll position (one scroll event late), so a large step alone leaves
    names and values misaligned by that step; after the nudge they differ by at most a pixel.
    """
    for d in (dy, -1, 1):
        page.mouse.wheel(0, d)
        page.wait_for_timeout(80)


def _reveal(page, text: str, in_table: bool = False):  # type: ignore[no-untyped-def]
    """The element showing exactly ``text``, brought into view as a user would: the page scrolled to it, or
    (``in_table``) MLflow's virtualized metric table scrolled with the mouse wheel until the row is rendered
    and inside the table.
    """
    if not in_table:
        loc = page.get_by_text(text, exact=True).first
        loc.scroll_into_view_if_needed()
        return loc
    loc = page.locator(".ReactVirtualized__Grid").get_by_text(text, exact=True)
    inside = """e => { const g = e.closest('.ReactVirtualized__Grid'), r = e.getBoundingClientRect(),
                        b = g.getBoundingClientRect(); return r.top >= b.top - 1 && r.bottom <= b.bottom + 1; }"""
    grids = page.locator(".ReactVirtualized__Grid")
    for i in range(grids.count()):
        grid = grids.nth(i)
        if grid.evaluate("g => !['auto', 'scroll'].includes(getComputedStyle(g).overflowY)"):
            continue
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        for _ in range(80):
            if loc.count() and loc.first.evaluate(inside):
                return loc.first
            before = grid.evaluate("g => g.scrollTop")
            _wheel(page, 90)
            if grid.evaluate("g => g.scrollTop") == before:
                _wheel(page, -10_000)
                if grid.evaluate("g => g.scrollTop") == before:
                    break
    raise AssertionError(f"{text!r} is not shown on {page.url}")


def _row_values(name_el) -> list[str]:  # type: ignore[no-untyped-def]
    """Texts of the value cells drawn on the same row as a metric name (MLflow draws names and values in two grids)."""
    return name_el.evaluate("""e => {
        const r = e.getBoundingClientRect(), mid = (r.top + r.bottom) / 2;
        const own = e.closest('.ReactVirtualized__Grid');
        const cells = [];
        for (const g of document.querySelectorAll('.ReactVirtualized__Grid')) {
            if (g === own) continue;
            for (const c of g.querySelectorAll('*')) {
                const b = c.getBoundingClientRect();
                if (c.children.length === 0 && c.innerText.trim() && b.top <= mid && b.bottom >= mid) cells.push([b.left, c.innerText.trim()]);
            }
        }
        return cells.sort((a, b) => a[0] - b[0]).map(c => c[1]);
    }""")


def test_mlflow_ui_lists_trials_and_compares_two_runs(small_sweep_home, tmp_path) -> None:
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install playwright (no `playwright install`: Debian's chromium is used)")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium binary: apt-get install -y chromium (or set HYBRIDLAB_CHROMIUM)")

    s = small_sweep_home
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "ui.log"
    env = {**os.environ, "HYBRIDLAB_HOME": str(s.home)}
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sweeps.cli", "ui", "--port", str(port)], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        healthy_s = _wait_healthy(f"{base}/health", proc, log)
        IMAGES.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(UI_TIMEOUT_MS)

                parent_link = page.locator(f'a[href$="/runs/{s.parent_run_id}"]').first
                _goto_until(page, f"{base}/#/experiments/{s.experiment_id}/runs", parent_link, tmp_path / "experiment")
                if not page.get_by_text(s.child_run_names[0], exact=True).count():
                    page.locator('[role="gridcell"]').filter(has=parent_link).locator("button").first.click()
                for name in s.child_run_names:
                    expect(page.get_by_text(name, exact=True).first).to_be_visible()
                close = page.get_by_role("button", name="Close")
                if close.count():
                    close.first.click()
                page.screenshot(path=str(IMAGES / "mlflow_experiment.png"))

                a, b = s.child_run_ids[:2]
                runs = urllib.parse.quote(json.dumps([a, b]))
                exps = urllib.parse.quote(json.dumps([s.experiment_id]))
                _goto_until(page, f"{base}/#/compare-runs?runs={runs}&experiments={exps}",
                            page.get_by_text("Comparing 2 Runs", exact=False), tmp_path / "compare")
                for name in s.child_run_names[:2]:
                    el = _reveal(page, name)
                    expect(el).to_be_visible()
                    expect(el).to_be_in_viewport()
                c = client(s.home)
                for metric in ("entropy/attn/mean", "val/ppl"):
                    el = _reveal(page, metric, in_table=True)
                    expect(el).to_be_visible()
                    expect(el).to_be_in_viewport()
                    expected = [f"{c.get_run(r).data.metrics[metric]:.4g}" for r in (a, b)]
                    assert _row_values(el) == expected, metric
                for section in ("Visualizations", "Parameters", "Tags"):
                    page.get_by_text(section, exact=True).first.click()
                page.get_by_text("Run details", exact=True).first.evaluate("e => e.scrollIntoView({block: 'start'})")
                el = _reveal(page, "val/ppl", in_table=True)
                assert _row_values(el) == [f"{c.get_run(r).data.metrics['val/ppl']:.4g}" for r in (a, b)]
                page.screenshot(path=str(IMAGES / "mlflow_compare.png"))
            finally:
                browser.close()
    finally:
        _stop(proc)
    total_s = time.monotonic() - t0
    print(f"mlflow server healthy after {healthy_s:.1f} s; browser test {total_s:.1f} s")
    assert (IMAGES / "mlflow_compare.png").stat().st_size > 20_000
    assert (IMAGES / "mlflow_experiment.png").stat().st_size > 20_000
