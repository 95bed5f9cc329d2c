"""The download cache cannot be poisoned or stuck: keyed by URL, sidecars, stale files fetched again, sha256 prefixes.

A local HTTP server on 127.0.0.1 serves files from a folder and counts the requests.
"""
import hashlib
import http.server
import json
import logging
import threading

import numpy as np
import pytest

from litehrnet.checkpoint.download import DownloadError, download, sidecar_path, url_cache_dir
import mindspore as ms

from litehrnet.checkpoint.io import read_tensors
from litehrnet.models import registry

PUBLISHED = "litehrnet_18_coco_256x192"


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (folder, base URL, list of requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _ckpt(path, value):
    """A small valid .ckpt whose one tensor holds `value` (tells files apart)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ms.save_checkpoint([{"name": "w", "data": ms.Tensor(np.full((3,), value, np.float32))}], str(path))
    return path


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_url_never_fills_the_slot_of_a_published_name(server, tmp_path, monkeypatch):
    root, base, hits = server
    _ckpt(root / "x" / f"{PUBLISHED}.ckpt", 1.0)    # anyone's file with the published file name
    _ckpt(root / "pub" / f"{PUBLISHED}.ckpt", 2.0)  # the published one
    monkeypatch.setattr(registry, "BASE_URL", f"{base}/pub/")
    ckpts = tmp_path / "ckpts"

    url = f"{base}/x/{PUBLISHED}.ckpt"
    other = registry.resolve_checkpoint(url, ckpt_dir=ckpts)
    assert read_tensors(other)["w"][0] == 1.0
    published = registry.resolve_checkpoint(PUBLISHED, ckpt_dir=ckpts)
    assert read_tensors(published)["w"][0] == 2.0  # not the file the URL brought
    assert published == str(ckpts / f"{PUBLISHED}.ckpt")
    assert other == str(url_cache_dir(ckpts, url) / f"{PUBLISHED}.ckpt")  # readable name, folder of its own
    assert hits == [f"/x/{PUBLISHED}.ckpt", f"/pub/{PUBLISHED}.ckpt"]
    # Both stay cached side by side.
    assert registry.resolve_checkpoint(url, ckpt_dir=ckpts) == other
    assert registry.resolve_checkpoint(PUBLISHED, ckpt_dir=ckpts) == published
    assert len(hits) == 2
    assert url_cache_dir(ckpts, url) != url_cache_dir(ckpts, f"{base}/y/{PUBLISHED}.ckpt")


def test_sidecar_records_url_and_sha256(server, tmp_path):
    root, base, _ = server
    _ckpt(root / "m.ckpt", 3.0)
    path = download(f"{base}/m.ckpt", tmp_path, progress=False)
    record = json.loads(sidecar_path(path).read_text())
    size = (root / "m.ckpt").stat().st_size
    assert record == {"url": f"{base}/m.ckpt", "sha256": _sha(root / "m.ckpt"), "size": size}


def test_a_cached_file_that_changed_is_downloaded_again_once(server, tmp_path, caplog):
    root, base, hits = server
    _ckpt(root / "m.ckpt", 4.0)
    path = download(f"{base}/m.ckpt", tmp_path, progress=False)
    with open(path, "r+b") as f:  # damaged on disk after the download
        f.seek(40)
        f.write(b"\x00\xff\x00\xff")
    with caplog.at_level(logging.WARNING):
        assert download(f"{base}/m.ckpt", tmp_path, progress=False) == path
    assert path in caplog.text and "changed since it was downloaded" in caplog.text
    assert open(path, "rb").read() == (root / "m.ckpt").read_bytes()
    assert len(hits) == 2
    download(f"{base}/m.ckpt", tmp_path, progress=False)
    assert len(hits) == 2  # repaired: reused again


def test_a_cached_file_from_another_url_is_replaced(server, tmp_path):
    root, base, hits = server
    _ckpt(root / "a" / "m.ckpt", 5.0)
    _ckpt(root / "b" / "m.ckpt", 6.0)
    path = download(f"{base}/a/m.ckpt", tmp_path, progress=False)
    assert download(f"{base}/b/m.ckpt", tmp_path, progress=False) == path  # same folder, same name
    assert read_tensors(path)["w"][0] == 6.0
    assert json.loads(sidecar_path(path).read_text())["url"] == f"{base}/b/m.ckpt"


def test_an_unreadable_download_is_never_cached(server, tmp_path, monkeypatch):
    root, base, hits = server
    (root / f"{PUBLISHED}.ckpt").write_bytes(b"<html>an error page served with status 200</html>")
    monkeypatch.setattr(registry, "BASE_URL", f"{base}/")
    ckpts = tmp_path / "ckpts"
    for attempt in (1, 2):  # never stuck on the bad file: each attempt asks the server again
        with pytest.raises(DownloadError) as err:
            registry.resolve_checkpoint(PUBLISHED, ckpt_dir=ckpts)
        message = str(err.value)
        assert "\n" not in message and "not usable" in message
        assert f"{base}/{PUBLISHED}.ckpt" in message and str(ckpts / f"{PUBLISHED}.ckpt") in message
        assert len(hits) == attempt
        assert list(ckpts.iterdir()) == []
    _ckpt(root / f"{PUBLISHED}.ckpt", 7.0)  # the server is fixed: the next call works
    assert read_tensors(registry.resolve_checkpoint(PUBLISHED, ckpt_dir=ckpts))["w"][0] == 7.0


def test_a_hand_placed_unreadable_file_is_named_and_kept(server, tmp_path, monkeypatch):
    root, base, hits = server
    monkeypatch.setattr(registry, "BASE_URL", f"{base}/")
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    placed = ckpts / f"{PUBLISHED}.ckpt"
    placed.write_bytes(b"half a file")
    with pytest.raises(DownloadError) as err:
        registry.resolve_checkpoint(PUBLISHED, ckpt_dir=ckpts)
    message = str(err.value)
    assert str(placed) in message and "delete it" in message and "\n" not in message
    assert placed.read_bytes() == b"half a file" and hits == []
    placed.unlink()  # as the message says: then it is downloaded
    _ckpt(root / f"{PUBLISHED}.ckpt", 8.0)
    assert read_tensors(registry.resolve_checkpoint(PUBLISHED, ckpt_dir=ckpts))["w"][0] == 8.0


def test_sha256_prefix_is_checked(server, tmp_path):
    root, base, hits = server
    _ckpt(root / "m-prefix.ckpt", 9.0)
    sha = _sha(root / "m-prefix.ckpt")
    path = download(f"{base}/m-prefix.ckpt", tmp_path / "ok", sha256=sha[:8].upper(), progress=False)
    assert open(path, "rb").read() == (root / "m-prefix.ckpt").read_bytes()
    assert download(f"{base}/m-prefix.ckpt", tmp_path / "ok", sha256=sha[:8], progress=False) == path
    assert len(hits) == 1
    wrong = format((int(sha[:8], 16) + 1) % (1 << 32), "08x")
    with pytest.raises(DownloadError, match=f"expected {wrong}, got {sha}"):
        download(f"{base}/m-prefix.ckpt", tmp_path / "bad", sha256=wrong, progress=False)
    assert not list((tmp_path / "bad").iterdir())
    # A cached file is checked against the prefix too: a wrong one makes it download again, then fail.
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(f"{base}/m-prefix.ckpt", tmp_path / "ok", sha256=wrong, progress=False)
    with pytest.raises(ValueError, match="at least 8"):
        download(f"{base}/m-prefix.ckpt", tmp_path, sha256=sha[:7], progress=False)
