"""Stream events against a real `packager run`: an HTTP push seen on /events, by a webhook and on the dashboard."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fixtures.media import make_clip
from tests.support.procs import packager
from tests.support.readme import readme_receiver

KEYS = {"cam1": "cam1-key-12345", "cam2": "cam2-key-67890"}
SECRET = "e2e-webhook-secret-123"
verify = readme_receiver()["verify"]


class Collector:
    """Things arriving on other threads, with a wait for a condition over them."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self.cond = threading.Condition()

    def add(self, item: dict) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0) -> list[dict]:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.items), timeout):
                raise TimeoutError(f"not seen in {timeout} s; got {[i.get('type') for i in self.items]}")
            return list(self.items)


class Hooks(BaseHTTPRequestHandler):
    collector: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = verify(SECRET.encode(), self.headers, body)
        self.send_response(204 if ok else 401)
        self.end_headers()
        if ok:
            self.collector.add({**json.loads(body), "delivery": self.headers["X-Packager-Delivery"]})

    def log_message(self, *args: object) -> None:
        pass


def listen(base: str, collector: Collector, stop: threading.Event) -> threading.Thread:
    """Follows /events on a thread, adding each event's JSON to ``collector``."""
    host, port = base.removeprefix("http://").split(":")

    def run() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("GET", "/events")
        resp = conn.getresponse()
        assert resp.status == 200
        collector.add({"type": "_open"})
        data = None
        while not stop.is_set():
            line = resp.readline()
            if not line:
                break
            text = line.decode().rstrip("\n")
            if text.startswith("data: "):
                data = json.loads(text[6:])
            elif text == "" and data is not None:
                collector.add(data)
                data = None
        conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def push(base: str, stream: str, clip) -> int:
    req = urllib.request.Request(f"{base}/ingest/{stream}?key={KEYS[stream]}", data=clip.read_bytes(), method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("events")
    hooks = Collector()
    handler = type("H", (Hooks,), {"collector": hooks})
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    config = work / "packager.toml"
    config.write_text(
        f"""
[[webhooks]]
url = "http://127.0.0.1:{receiver.server_address[1]}/hook"
secret = "{SECRET}"
events = ["*"]
timeout_s = 5
allow_private = true
"""
    )
    args = ["--config", str(config), "--rtmp-port", "0", "--srt-port", "0", "--reconnect-window", "1"]
    args += ["--ladder", "320x180@250k", "--preset", "ultrafast"]
    for name, key in KEYS.items():
        args += ["--stream-key", f"{name}={key}"]
    clip = make_clip(work / "clip.ts", seconds=2)
    try:
        with packager(args, out=work / "out", ready_path="/healthz") as (_proc, base):
            yield {"base": base, "hooks": hooks, "clip": clip, "out": work / "out"}
    finally:
        receiver.shutdown()


def _of(items: list[dict], stream: str) -> list[str]:
    return [i["type"] for i in items if i.get("stream") == stream]


def test_a_push_is_seen_on_the_event_feed_and_by_the_webhook(server):
    base = server["base"]
    feed, stop = Collector(), threading.Event()
    listen(base, feed, stop)
    feed.wait_for(lambda items: items, 10)
    assert push(base, "cam1", server["clip"]) == 200
    items = feed.wait_for(lambda items: "vod.ready" in _of(items, "cam1"), 30)
    stop.set()
    seen = _of(items, "cam1")
    assert seen[0] == "stream.started" and seen[-2:] == ["stream.stopped", "vod.ready"], seen
    first = next(i for i in items if i.get("stream") == "cam1")
    assert {r["name"] for r in first["data"]["renditions"]} == {"180p", "audio"}
    ready = next(i for i in items if i["type"] == "vod.ready")
    assert "#EXT-X-ENDLIST" in (server["out"] / "cam1" / "180p" / "index.m3u8").read_text()
    assert ready["data"]["folder"].endswith("cam1")
    # the same events, signed, reached the webhook (each once, under its own id)
    on_feed = {i["id"] for i in items if i.get("stream") == "cam1"}
    hooks = server["hooks"].wait_for(lambda got: on_feed <= {h["id"] for h in got}, 15)
    by_id = {h["id"]: h for h in hooks}
    assert all(h["delivery"] == h["id"] for h in hooks) and len(by_id) == len(hooks)


@pytest.mark.browser
def test_the_dashboard_shows_a_stream_appear_and_end_without_reload(server, browser):
    base = server["base"]
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{base}/")
        page.wait_for_function("document.getElementById('feed').textContent === 'live updates'", timeout=10_000)
        assert page.query_selector("section[data-stream='cam2']") is None
        # remember every state the card shows; a reload would lose this marker and the record
        page.evaluate(
            """() => {
              window.__marker = 'same page';
              window.__states = [];
              new MutationObserver(() => {
                const card = document.querySelector("section[data-stream='cam2']");
                const state = card && card.dataset.state;
                if (state && window.__states[window.__states.length - 1] !== state) window.__states.push(state);
              }).observe(document.getElementById('streams'), {subtree: true, childList: true, attributes: true});
            }"""
        )
        pusher = threading.Thread(target=push, args=(base, "cam2", server["clip"]))
        pusher.start()
        page.wait_for_function("window.__states.includes('live')", timeout=30_000)
        page.wait_for_function("window.__states[window.__states.length - 1] === 'ended'", timeout=30_000)
        pusher.join(30)
        assert page.evaluate("window.__marker") == "same page"
        states = page.evaluate("window.__states")
        assert states[0] == "live" and states[-1] == "ended", states
        card = page.query_selector("section[data-stream='cam2']")
        assert card.query_selector(".badge.ended") is not None
        assert {r.get_attribute("data-rendition") for r in card.query_selector_all("tr[data-rendition]")} == {
            "180p",
            "audio",
        }
        links = [a.get_attribute("href") for a in card.query_selector_all("a")]
        assert "/players/hls.html?src=%2Flive%2Fcam2%2Fmaster.m3u8" in links
        assert "/players/dash.html?src=%2Flive%2Fcam2%2Fmanifest.mpd" in links
        log = page.inner_text("#log")
        assert "stream.started cam2" in log and "stream.stopped cam2" in log
    finally:
        context.close()
