"""What the web panel's loader reads and what a request may name
(plugins/websocket_api/http.py), on real folders. The same over real sockets:
tests/integration/test_websocket_http.py.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tieline.plugins.websocket_api.http import CONTENT_TYPES, MAX_FILE_BYTES, PanelFiles, file_name


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("the cluster key\n")
    (folder / "secret.html").write_text("<p>secret</p>\n")
    return folder


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return root


def test_every_known_type_is_read_with_its_content_type(tmp_path):
    files = {f"sub/f.{ext}": f"{ext} body" for ext in CONTENT_TYPES}
    panel = PanelFiles.load(_tree(tmp_path / "panel", {"index.html": "<!doctype html>", **files}))
    assert sorted(panel.files) == sorted(["index.html", *files])
    for ext, content_type in CONTENT_TYPES.items():
        found = panel.get(f"sub/f.{ext}")
        assert found.body == f"{ext} body".encode() and found.content_type == content_type
    assert CONTENT_TYPES["js"] == "text/javascript; charset=utf-8"
    assert panel.get("index.html").etag.startswith('"') and len(panel.get("index.html").etag) == 34


def test_symbolic_links_are_never_read(tmp_path, outside, caplog):
    root = _tree(tmp_path / "panel", {"index.html": "<p>panel</p>", "js/main.js": "ok"})
    (root / "leak.txt").symlink_to(outside / "secret.txt")  # to a file outside
    (root / "alias.html").symlink_to(root / "index.html")  # to a file inside: refused too
    (root / "out").symlink_to(outside, target_is_directory=True)  # to a folder outside
    (root / "js" / "up").symlink_to(root, target_is_directory=True)  # a loop
    (root / "dangling.txt").symlink_to(tmp_path / "nothing")
    caplog.set_level(logging.WARNING, logger="tieline")
    panel = PanelFiles.load(root)
    assert sorted(panel.files) == ["index.html", "js/main.js"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ("leak.txt", "alias.html", "out", "js/up", "dangling.txt"):
        assert f"{name} is not served: it is a symbolic link" in warned, name


def test_a_panel_folder_that_is_a_link_is_read_from_where_it_points(tmp_path):
    real = _tree(tmp_path / "real", {"index.html": "x"})
    (tmp_path / "panel").symlink_to(real, target_is_directory=True)
    panel = PanelFiles.load(tmp_path / "panel")
    assert panel.folder == real and sorted(panel.files) == ["index.html"]


def test_hidden_unknown_odd_and_large_files_are_not_read(tmp_path, caplog):
    root = _tree(tmp_path / "panel", {
        "index.html": "x", ".env.txt": "hidden", ".git/config.txt": "hidden",
        "server.py": "code", "README.md": "md", "Makefile": "make", "index.HTML": "case",
        "a b.txt": "space", "a%2e.txt": "percent", "é.txt": "accent", "back\\slash.txt": "bs",
        "big.png": b"\0" * (MAX_FILE_BYTES + 1), "ok-file_1.2.txt": "fine",
    })
    os.mkfifo(root / "pipe.txt")
    caplog.set_level(logging.DEBUG, logger="tieline")
    panel = PanelFiles.load(root)
    assert sorted(panel.files) == ["index.html", "ok-file_1.2.txt"]
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "pipe.txt is not served: not a regular file" in warned
    assert "big.png is not served" in warned
    assert "a b.txt is not served: name it with letters" in warned


def test_deep_folders_stop_somewhere(tmp_path, caplog):
    deep = "/".join(["d"] * 12)
    panel = PanelFiles.load(_tree(tmp_path / "panel", {"index.html": "x", "d/ok.txt": "1",
                                                       f"{deep}/far.txt": "2"}))
    assert "d/ok.txt" in panel.files
    assert not [n for n in panel.files if n.endswith("far.txt")]


def test_a_missing_folder_serves_nothing(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tieline")
    panel = PanelFiles.load(tmp_path / "nowhere")
    assert len(panel) == 0
    assert "the panel is not served" in caplog.text


@pytest.mark.parametrize("target, name", [
    ("/", "index.html"),
    ("/?token=x", "index.html"),
    ("/panel/index.html", "index.html"),
    ("/panel/js/main.js", "js/main.js"),
    ("/panel/js/main.js?v=2", "js/main.js"),
    ("/panel/a.b-c_d.txt", "a.b-c_d.txt"),
])
def test_request_targets_that_name_a_file(target, name):
    assert file_name(target) == name


@pytest.mark.parametrize("target", [
    "", "/index.html", "/panel", "/panel/", "/panel/js/", "/panel//index.html",
    "/panel/../server.py", "/panel/js/../index.html", "/../server.py", "/panel/./index.html",
    "/panel/.env", "/panel/%2e%2e/server.py", "/panel/%2E%2E/server.py",
    "/panel/%252e%252e/server.py", "/panel/..%2fserver.py", "/panel/js%2fmain.js",
    "/panel/..\\server.py", "/panel/js\\main.js", "/panel/index.html\x00.png",
    "/panel/index.html%00", "//etc/passwd", "/panel//etc/passwd", "/panel/%2fetc%2fpasswd",
    "/panel/C:/x.txt", "http://127.0.0.1/panel/index.html", "*", "/panel/index.html\n",
    "/panel/" + "a" * 200 + ".txt",
])
def test_request_targets_that_name_no_file(target):
    assert file_name(target) is None
