"""The dashboard page, loaded in headless Chromium, shows what psql shows.

Starts `sluice demo --rate 0` (a day of history through its in-process Kafka
broker, then nothing more, so the numbers hold still), waits until every
message is ingested, loads http://.../?restaurant=1 in headless Chromium until
its panels have refreshed, and compares each number on the page with the same
SQL file run by psql. Saves a screenshot as target/dashboard.png.

Usage: python3 tests/clients/dashboard_check.py path/to/sluice
"""

import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QUERIES = os.path.join(ROOT, "examples", "dashboards", "restaurant")
RESTAURANT = 1


def fail(message):
    print(f"FAIL dashboard: {message}")
    sys.exit(1)


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    fail("no chromium on PATH (apt-get install chromium)")


def start_demo(binary, out):
    demo = subprocess.Popen(
        [binary, "demo", "--rate", "0", "--restaurants", "200",
         "--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
        stdout=out, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        with open(out.name) as f:
            text = f.read()
        found = re.search(r"PostgreSQL on [\d.]+:(\d+), HTTP on [\d.]+:(\d+)", text)
        if found:
            return demo, int(found.group(1)), int(found.group(2))
        time.sleep(0.1)
    demo.kill()
    fail("the demo did not start")


def psql(port, sql):
    """Rows of `sql` as lists of text, run by psql with $1 = the restaurant."""
    text = sql.replace("$1", ":r")
    done = subprocess.run(
        ["psql", "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-v", f"r={RESTAURANT}",
         "-h", "127.0.0.1", "-p", str(port), "-U", "sluice", "-d", "sluice"],
        input=text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        fail(f"psql: {done.stderr}")
    return [line.split("\t") for line in done.stdout.splitlines() if line]


def wait_for_ingestion(port):
    """Until nothing is left to read and the row counts hold still."""
    previous = None
    deadline = time.time() + 120
    while time.time() < deadline:
        counts = psql(port, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items), "
                            "(SELECT count(*) FROM ratings), (SELECT coalesce(sum(lag), 1) FROM sluice.ingestion)")
        if counts == previous and counts[0][3] == "0" and counts[0][0] != "0":
            return counts[0]
        previous = counts
        time.sleep(1)
    fail(f"ingestion did not settle: {previous}")


class Page(html.parser.HTMLParser):
    """Texts by element id, table rows by table id, and body attributes."""

    def __init__(self):
        super().__init__()
        self.text = {}
        self.tables = {}
        self.body = {}
        self._ids = []
        self._table = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag == "table" and "id" in attrs:
            self._table = attrs["id"]
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self._row = []
        if tag == "td" and self._row is not None:
            self._cell = ""
        if "id" in attrs:
            self.text[attrs["id"]] = ""
        self._ids.append(attrs.get("id"))

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        if tag == "table":
            self._table = None
        if self._ids:
            self._ids.pop()

    def handle_data(self, data):
        for i in self._ids:
            if i:
                self.text[i] += data
        if self._cell is not None:
            self._cell += data


def page_numbers(browser, http_port):
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=5000", "--dump-dom",
         f"http://127.0.0.1:{http_port}/?restaurant={RESTAURANT}"],
        capture_output=True, text=True, timeout=120, check=False)
    page = Page()
    page.feed(dom.stdout)
    if int(page.body.get("data-refreshes", "0")) < 1:
        fail(f"the page never refreshed; error: {page.text.get('error')!r}\n{dom.stderr[-2000:]}")
    if page.text.get("error", "").strip():
        fail(f"the page shows an error: {page.text['error']}")
    return page


def sql_numbers(port):
    read = lambda name: open(os.path.join(QUERIES, name + ".sql")).read()
    funnel = {status: n for status, n in psql(port, read("funnel"))}
    couriers = psql(port, read("couriers_waiting"))[0]
    sales = psql(port, read("sales_today"))[0]
    prep = psql(port, read("prep_time"))[0]
    return {
        "funnel": [funnel.get(s, "0") for s in ("NEW", "CONFIRMED", "IN_KITCHEN", "READY_FOR_PICKUP")],
        "couriers": couriers[0],
        "sales": str(Decimal(sales[0]).quantize(Decimal("0.01"))),
        "completed": sales[1],
        "prep": prep[0] if prep[0] else "–",
        "prep_orders": prep[1],
        "top_items": [[r[0], r[1]] for r in psql(port, read("top_items"))],
        "ratings": [r[1] for r in psql(port, read("latest_ratings"))],
    }


def shown(page):
    return {
        "funnel": [page.text.get(f"funnel-{s}", "").strip()
                   for s in ("NEW", "CONFIRMED", "IN_KITCHEN", "READY_FOR_PICKUP")],
        "couriers": page.text["couriers"].strip(),
        "sales": page.text["sales"].strip(),
        "completed": page.text["completed"].strip(),
        "prep": page.text["prep"].strip(),
        "prep_orders": page.text["prep-orders"].strip(),
        "top_items": [[r[0], r[2]] for r in page.tables.get("top-items", [])],
        "ratings": [r[1] for r in page.tables.get("ratings", [])],
    }


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "sluice")
    browser = chromium()
    with tempfile.NamedTemporaryFile("w+", suffix=".out") as out:
        demo, pg_port, http_port = start_demo(binary, out)
        try:
            counts = wait_for_ingestion(pg_port)
            # "Last hour" windows move with the clock: a row can leave one
            # between the page's read and psql's. Three tries; a real
            # mismatch repeats.
            for attempt in range(3):
                page = shown(page_numbers(browser, http_port))
                expected = sql_numbers(pg_port)
                if page == expected:
                    break
                print(f"attempt {attempt + 1}: page {page}\n           psql {expected}")
            else:
                fail("the page's numbers differ from psql's")
            if not any(int(n) for n in expected["funnel"]) or not expected["top_items"]:
                fail(f"restaurant {RESTAURANT} shows nothing to compare: {expected}")
            target = os.path.join(ROOT, "target")
            os.makedirs(target, exist_ok=True)
            shot = os.path.join(target, "dashboard.png")
            subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--hide-scrollbars", "--window-size=1280,1000", "--virtual-time-budget=5000",
                 f"--screenshot={shot}", f"http://127.0.0.1:{http_port}/?restaurant={RESTAURANT}"],
                capture_output=True, timeout=120, check=False)
            if not os.path.exists(shot) or os.path.getsize(shot) < 10_000:
                fail(f"no screenshot at {shot}")
            print(f"ok dashboard: page equals psql for restaurant {RESTAURANT} "
                  f"(orders, items, ratings rows: {counts[:3]}; funnel {page['funnel']}, "
                  f"sales {page['sales']}, {len(page['top_items'])} top items); screenshot {shot}")
        finally:
            demo.terminate()
            demo.wait(timeout=30)


if __name__ == "__main__":
    main()
