"""Headless Chromium (Debian's ``chromium``) from its command line: a page's DOM once its scripts
ran, the URLs the page requested, and a screenshot.

Every name but ``127.0.0.1`` resolves to nothing (``--host-resolver-rules``), so a page that
reaches outside cannot silently succeed on a machine with internet, and no test depends on it.
Which URLs a page requested comes from Chromium's network log (``--log-net-log``): each URL
request names its initiator, the origin of the document that made it. Chromium's own
background requests (component updates, time, accounts) have none, and are left out.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.requirements import require_command

INSTALL_HINT = "scripts/system-deps installs it; or apt-get install chromium"
# Browser-initiated requests (the navigation typed on the command line, background traffic).
_NO_INITIATOR = (None, "not an origin")
# Elements with no end tag: they hold no text, and never close.
# fmt: off
_VOID_ELEMENTS = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr",
})
# fmt: on


def chromium() -> str:
    """The ``chromium`` command; the test skips without it (fails if services are required)."""
    return require_command("chromium", INSTALL_HINT)


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class PageRequest:
    """One URL a document asked for (a redirect's target is a request of its own)."""

    initiator: str
    url: str


@dataclass(frozen=True)
class Rendered:
    """A page as Chromium rendered it: the DOM after its scripts ran, and what it requested."""

    url: str
    dom: str
    requests: tuple[PageRequest, ...]

    def requests_outside(self, allowed_origin: str) -> list[str]:
        """The URLs requested from anywhere but ``allowed_origin``."""
        return [r.url for r in self.requests if origin(r.url) != allowed_origin]


def _run(chromium_path: str, profile: Path, *args: str, timeout: float) -> str:
    command = [
        chromium_path,
        "--headless",
        "--no-sandbox",  # as root (CI), Chromium refuses to start with its sandbox
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        "--virtual-time-budget=8000",  # virtual ms to let the scripts run before the dump
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",  # a fresh profile: no cache from an earlier run
        *args,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, (
        f"{command} exited {completed.returncode}:\n{completed.stderr}"
    )
    return completed.stdout


def page_requests(net_log: Path) -> tuple[PageRequest, ...]:
    """The URL requests that documents made, from a Chromium network log (JSON)."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    initiators: dict[int, str | None] = {}  # by request: its redirects carry no initiator
    requests = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start_job or "url" not in params:
            continue
        source = event["source"]["id"]
        initiator = initiators.setdefault(source, params.get("initiator"))
        if initiator not in _NO_INITIATOR:
            requests.append(PageRequest(str(initiator), params["url"]))
    return tuple(requests)


def render(url: str, tmp: Path, *, timeout: float = 90) -> Rendered:
    """``url`` rendered by headless Chromium: its DOM once scripts ran, and its requests."""
    tmp.mkdir(parents=True, exist_ok=True)
    net_log = tmp / "net-log.json"
    dom = _run(
        chromium(),
        tmp / "profile",
        f"--log-net-log={net_log}",
        "--dump-dom",
        url,
        timeout=timeout,
    )
    return Rendered(url, dom, page_requests(net_log))


def screenshot(url: str, png: Path, *, width: int = 1280, height: int = 2000) -> Path:
    """A ``width`` x ``height`` screenshot of ``url`` (once its scripts ran) into ``png``."""
    png.parent.mkdir(parents=True, exist_ok=True)
    profile = png.parent / f"{png.stem}-profile"
    _run(
        chromium(),
        profile,
        f"--screenshot={png}",
        f"--window-size={width},{height}",
        url,
        timeout=90,
    )
    assert png.is_file(), f"chromium wrote no screenshot of {url}"
    return png


class _Texts(HTMLParser):
    """The attributes and text of each element that has attribute ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.found: list[tuple[dict[str, str | None], list[str]]] = []
        self.open: list[tuple[str, list[str] | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        texts: list[str] | None = None
        if any(key == self.name for key, _ in attrs):
            texts = []
            self.found.append((dict(attrs), texts))
        if tag not in _VOID_ELEMENTS:
            self.open.append((tag, texts))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_ELEMENTS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, texts in self.open:
            if texts is not None:
                texts.append(data)


def elements_with(dom: str, attribute: str) -> list[tuple[dict[str, str | None], str]]:
    """Each element of ``dom`` that has ``attribute``: its attributes, and its text nodes
    joined by single spaces (so that adjacent elements' words stay apart)."""
    parser = _Texts(attribute)
    parser.feed(dom)
    parser.close()
    return [(attrs, " ".join(" ".join(texts).split())) for attrs, texts in parser.found]
