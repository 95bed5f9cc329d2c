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
    names = litehrnet.list_pretrained()
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
