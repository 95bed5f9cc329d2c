"""download() against a local HTTP server: normal, cached, truncated, bad hash, no hash, unreachable."""
import hashlib
import http.server
import logging
import socket
import threading

import pytest

from litehrnet.checkpoint.download import DownloadError, download, sha256_file

PAYLOAD = bytes(range(256)) * 400  # 100 KiB: several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """/model.ckpt: the payload; /truncated.ckpt: announces the full length, sends half, closes."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in ('/model.ckpt', '/truncated.ckpt'):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(len(PAYLOAD)))
        self.end_headers()
        body = PAYLOAD[: len(PAYLOAD) // 2] if self.path == '/truncated.ckpt' else PAYLOAD
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    yield httpd, f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_sha256_file(tmp_path):
    (tmp_path / 'f').write_bytes(PAYLOAD)
    assert sha256_file(tmp_path / 'f') == PAYLOAD_SHA


def test_download_verifies_and_reuses_the_cache(server, tmp_path, caplog):
    httpd, base = server
    path = download(f'{base}/model.ckpt', tmp_path / 'ckpts', sha256=PAYLOAD_SHA.upper(), progress=False)
    assert path == str(tmp_path / 'ckpts' / 'model.ckpt')
    assert (tmp_path / 'ckpts' / 'model.ckpt').read_bytes() == PAYLOAD
    # no .part left; the sidecar records where the file came from
    assert sorted(p.name for p in (tmp_path / 'ckpts').iterdir()) == ['model.ckpt', 'model.ckpt.json']
    assert httpd.requests == ['/model.ckpt']
    assert download(f'{base}/model.ckpt', tmp_path / 'ckpts', sha256=PAYLOAD_SHA, progress=False) == path
    assert httpd.requests == ['/model.ckpt']  # the second call made no request
    assert 'cannot be verified' not in caplog.text


def test_filename_and_progress_bar(server, tmp_path, capsys):
    _, base = server
    path = download(f'{base}/model.ckpt', tmp_path, sha256=PAYLOAD_SHA, filename='renamed.ckpt')
    assert path == str(tmp_path / 'renamed.ckpt')
    assert 'renamed.ckpt' in capsys.readouterr().err  # tqdm's bar, labelled with the file name


def test_cached_file_with_wrong_hash_is_an_error(server, tmp_path):
    httpd, base = server
    (tmp_path / 'model.ckpt').write_bytes(b'something else')
    with pytest.raises(DownloadError, match='delete it') as err:
        download(f'{base}/model.ckpt', tmp_path, sha256=PAYLOAD_SHA, progress=False)
    assert PAYLOAD_SHA in str(err.value) and str(tmp_path / 'model.ckpt') in str(err.value)
    assert httpd.requests == []
    assert (tmp_path / 'model.ckpt').read_bytes() == b'something else'  # a user's file is never deleted


def test_truncated_transfer_leaves_nothing(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match=f'got {len(PAYLOAD) // 2} of {len(PAYLOAD)} bytes'):
        download(f'{base}/truncated.ckpt', tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wrong_hash_leaves_nothing(server, tmp_path):
    _, base = server
    wrong = '0' * 64
    with pytest.raises(DownloadError) as err:
        download(f'{base}/model.ckpt', tmp_path, sha256=wrong, progress=False)
    assert wrong in str(err.value) and PAYLOAD_SHA in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_hash_works_and_says_so(server, tmp_path, caplog):
    httpd, base = server
    with caplog.at_level(logging.WARNING):
        path = download(f'{base}/model.ckpt', tmp_path, progress=False)
        assert open(path, 'rb').read() == PAYLOAD
        assert len(caplog.records) == 1 and 'cannot be verified' in caplog.text
        download(f'{base}/model.ckpt', tmp_path, progress=False)  # the cached file cannot be verified either
        assert len(caplog.records) == 2
    assert httpd.requests == ['/model.ckpt']


def test_http_error(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match='404'):
        download(f'{base}/missing.ckpt', tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it now
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    url = f'http://127.0.0.1:{port}/model.ckpt'
    with pytest.raises(DownloadError) as err:
        download(url, tmp_path / 'ckpts', progress=False)
    message = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert url in message and str(tmp_path / 'ckpts' / 'model.ckpt') in message and '\n' not in message
    assert not (tmp_path / 'ckpts' / 'model.ckpt.part').exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='sha256'):
        download('http://127.0.0.1:9/model.ckpt', tmp_path, sha256='abc')
    with pytest.raises(ValueError, match='filename='):
        download('http://127.0.0.1:9/', tmp_path)
