"""Published checkpoints: the registry, and pretrained=NAME downloads (against a local HTTP server)."""
import hashlib
import http.server
import threading

import numpy as np
import pytest

import litehrnet
from litehrnet.checkpoint.download import DownloadError
from litehrnet.models import registry


def test_ten_published_checkpoints():
    names = [n for n in litehrnet.list_pretrained() if litehrnet.PUBLISHED[n].source == "mindspore"]
    assert len(names) == 10
    coco = [n for n in names if "_coco_" in n]
    mpii = [n for n in names if "_mpii_" in n]
    assert len(coco) == 6 and len(mpii) == 4
    for name in names:
        entry = litehrnet.PUBLISHED[name]
        assert entry.url == "https://download.mindspore.cn/vision/litehrnet/ckpts/" + name + ".ckpt"
        assert entry.num_joints == (16 if entry.dataset == "mpii" else 17)
        assert f"{entry.input_size[0]}x{entry.input_size[1]}" in name
        assert litehrnet.canonical_model_type(entry.model_type) == entry.model_type


def test_unknown_checkpoint_reference_lists_the_published_ones():
    with pytest.raises(litehrnet.CheckpointError) as e:
        registry.resolve_checkpoint("no_such_weights")
    assert "litehrnet_18_coco_256x192" in str(e.value)


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 and count requests."""
    root = tmp_path / "www"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            hits.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", hits
    httpd.shutdown()
    httpd.server_close()


def test_pretrained_name_downloads_verifies_and_reuses(server, tmp_path, monkeypatch, caplog):
    root, base, hits = server
    source = litehrnet.create_model("naive_litehrnet_18", conv_impl="native")
    litehrnet.save_checkpoint(source, str(root / "naive_litehrnet_18_coco_256x192.ckpt"))
    ckpts = tmp_path / "ckpts"
    monkeypatch.setenv("LITEHRNET_CKPT_DIR", str(ckpts))
    monkeypatch.setattr(registry, "BASE_URL", base)

    net = litehrnet.create_model("naive_litehrnet_18", conv_impl="native",
                                 pretrained="naive_litehrnet_18_coco_256x192")
    for a, b in zip(source.get_parameters(), net.get_parameters()):
        assert np.array_equal(a.asnumpy(), b.asnumpy())
    assert (ckpts / "naive_litehrnet_18_coco_256x192.ckpt").is_file()
    assert not list(ckpts.glob("*.part"))
    assert "cannot be verified" in caplog.text  # no sha256 is published
    n = len(hits)
    litehrnet.create_model("naive_litehrnet_18", conv_impl="native", pretrained="naive_litehrnet_18_coco_256x192")
    assert len(hits) == n  # the complete cached file is reused

    # A known sha256 that does not match: the download is deleted and the load fails.
    (ckpts / "naive_litehrnet_18_coco_256x192.ckpt").unlink()
    entry = registry.PUBLISHED["naive_litehrnet_18_coco_256x192"]
    monkeypatch.setitem(registry.PUBLISHED, entry.name,
                        registry.PublishedCheckpoint(**{**entry.__dict__, "sha256": "0" * 64}))
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        litehrnet.create_model("naive_litehrnet_18", conv_impl="native", pretrained=entry.name)
    assert not list(ckpts.iterdir())
    good = hashlib.sha256((root / f"{entry.name}.ckpt").read_bytes()).hexdigest()
    monkeypatch.setitem(registry.PUBLISHED, entry.name,
                        registry.PublishedCheckpoint(**{**entry.__dict__, "sha256": good}))
    litehrnet.create_model("naive_litehrnet_18", conv_impl="native", pretrained=entry.name)


def test_no_network_fails_in_one_line_naming_url_and_destination(tmp_path, monkeypatch):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    monkeypatch.setenv("LITEHRNET_CKPT_DIR", str(tmp_path))
    monkeypatch.setattr(registry, "BASE_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(DownloadError) as e:
        registry.resolve_checkpoint("litehrnet_30_mpii_256x256")
    msg = str(e.value)
    assert "\n" not in msg and f"127.0.0.1:{port}/litehrnet_30_mpii_256x256.ckpt" in msg
    assert str(tmp_path / "litehrnet_30_mpii_256x256.ckpt") in msg


HRNET_TYPES = {"hrnet_w32", "hrnet_w48"}
ZOO_NAMES = [n for n, e in registry.PUBLISHED.items() if e.source != "mindspore"]


def test_zoo_entries_carry_source_url_prefix_and_published_figures():
    """mmpose 0.x / 1.x and official entries: names with the source, URLs, sha256 prefixes from the file name."""
    by_source = {}
    for name in ZOO_NAMES:
        entry = registry.PUBLISHED[name]
        by_source.setdefault(entry.source, []).append(name)
        assert name == f"{entry.model_type}_{entry.dataset}_{entry.input_size[0]}x{entry.input_size[1]}_{entry.source}"
        assert entry.num_joints == (16 if entry.dataset == "mpii" else 17)
        assert entry.metric == ("PCKh@0.5" if entry.dataset == "mpii" else "AP")
        assert entry.model_type in HRNET_TYPES or litehrnet.canonical_model_type(entry.model_type) == entry.model_type
        if entry.source == "official":
            assert entry.url is None and entry.sha256 is None
            assert entry.filename.startswith(f"pose_{entry.model_type}_") and "deep-high-resolution-net" in entry.where
        else:
            assert entry.url.startswith("https://download.openmmlab.com/mmpose/")
            stem = entry.url.rsplit("/", 1)[1]
            digits = stem.rsplit("-", 1)[1][:8]
            assert entry.sha256 == digits and len(digits) == 8 and int(digits, 16) >= 0
            assert f"{entry.input_size[0]}x{entry.input_size[1]}" in stem
            assert ("/v1/" in entry.url) == (entry.source == "mmpose1")
    assert len(by_source["mmpose"]) == 10 and len(by_source["mmpose1"]) == 4 and len(by_source["official"]) == 5
    # figures of the sources' tables; files without one say so with None
    figures = {"hrnet_w48_coco_384x288_mmpose1": 0.767, "hrnet_w32_mpii_256x256_mmpose": 0.900,
               "litehrnet_30_coco_384x288_mmpose": 0.700, "hrnet_w32_coco_256x192_official": 0.744,
               "hrnet_w32_mpii_256x256_official": 0.903, "hrnet_w32_coco_256x192_mmpose": None,
               "litehrnet_18_mpii_256x256_mmpose": None}
    for name, value in figures.items():
        assert registry.PUBLISHED[name].value == value, name
    # the earlier port's names keep theirs
    assert registry.PUBLISHED["litehrnet_18_coco_256x192"].url.startswith(registry.BASE_URL)


@pytest.mark.parametrize("alias, name, joints", [
    ("hrnet_w48_384x288", "hrnet_w48_coco_384x288_official", 17),
    ("hrnet_w32_256x192", "hrnet_w32_coco_256x192_official", 17),
    ("hrnet_w32_256x256", "hrnet_w32_mpii_256x256_official", 16)])
def test_google_drive_only_files_say_where_to_get_them(alias, name, joints, tmp_path, monkeypatch):
    """An official file (alias or name): one-line CheckpointError naming where and --checkpoint, no download."""
    from litehrnet.checkpoint import download as download_module

    def no_download(*args, **kwargs):
        raise AssertionError("a Google-Drive-only file must not be downloaded")
    monkeypatch.setattr(download_module, "download", no_download)
    monkeypatch.setenv("LITEHRNET_CKPT_DIR", str(tmp_path))
    entry = registry.PUBLISHED[registry.PRETRAINED_ALIASES[alias]]
    assert entry.name == name and entry.num_joints == joints
    for ref in (alias, name):
        with pytest.raises(litehrnet.CheckpointError) as e:
            registry.resolve_checkpoint(ref)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(ref) and entry.filename in msg
        assert "Google Drive" in msg and "--checkpoint PATH" in msg and "deep-high-resolution-net" in msg
    assert list(tmp_path.iterdir()) == []
    # the file put in the checkpoint folder by hand is used
    (tmp_path / entry.filename).write_bytes(b"x")
    assert registry.resolve_checkpoint(alias) == str(tmp_path / entry.filename)


def test_downloadable_alternative_is_named():
    with pytest.raises(litehrnet.CheckpointError, match="downloadable instead: hrnet_w48_coco_384x288_mmpose1"):
        registry.resolve_checkpoint("hrnet_w48_384x288", ckpt_dir="/nonexistent-dir")
    with pytest.raises(litehrnet.CheckpointError) as e:
        registry.resolve_checkpoint("hrnet_w32_coco_384x288_official", ckpt_dir="/nonexistent-dir")
    assert "hrnet_w32_coco_384x288_mmpose1" in str(e.value)


@pytest.mark.parametrize("name", [n for n in ZOO_NAMES if registry.PUBLISHED[n].url])
def test_zoo_names_download_with_their_url_and_sha256_prefix(name, tmp_path, monkeypatch):
    from litehrnet.checkpoint import download as download_module
    calls = []
    monkeypatch.setattr(download_module, "download", lambda url, folder, sha256=None, validate=None: calls.append(
        (url, folder, sha256)) or "downloaded")
    assert registry.resolve_checkpoint(name, ckpt_dir=str(tmp_path)) == "downloaded"
    entry = registry.PUBLISHED[name]
    assert calls == [(entry.url, str(tmp_path), entry.sha256)]


def test_unknown_name_lists_aliases_too():
    with pytest.raises(litehrnet.CheckpointError) as e:
        registry.resolve_checkpoint("hrnet_w64_256x192")
    assert "hrnet_w32_256x256" in str(e.value) and "hrnet_w32_coco_256x192_mmpose1" in str(e.value)


def test_readme_lists_every_zoo_entry():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in ZOO_NAMES:
        entry = registry.PUBLISHED[name]
        row = next((line for line in readme.splitlines() if line.startswith(f"| {name} |")), None)
        assert row is not None, name
        assert (entry.sha256 or entry.filename) in row
        assert ("not published" in row) if entry.value is None else (f"{entry.value:.3f}" in row)
    for alias, name in registry.PRETRAINED_ALIASES.items():
        assert f"`{alias}` = {name}" in readme
