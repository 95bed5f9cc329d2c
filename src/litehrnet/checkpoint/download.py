"""Download checkpoints over HTTP(S): progress bar, size and sha256 checks, atomic rename, cache reuse.

Every downloaded file gets a sidecar ``<file>.json`` (written atomically, before the file is renamed
into place) recording its URL and sha256. A cached file with a sidecar is ours: when it no longer
matches its sidecar, the expected sha256 or the URL asked for, it is downloaded again, once, and
replaced (a failed download leaves it, still marked stale). A file without a sidecar was put there by
hand: it is checked (sha256, and the ``validate`` callback) but never deleted or replaced; a mismatch is
an error naming it and saying to delete it. A fresh download that does not match is deleted.
``url_cache_dir`` keys a cache folder by the whole URL, so that two URLs with the same file name never
share a slot.

A sha256 may be given in full or as a prefix of at least 8 hex digits (mmpose's file names end with
``-<the first 8 hex digits of the file's sha256>``).
"""
import hashlib
import http.client
import json
import logging
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from ..fileio import write_json_atomic

__all__ = ["DownloadError", "download", "sha256_file", "url_cache_dir", "sidecar_path"]

TIMEOUT_S = 30  # seconds to connect and between received chunks
_CHUNK = 1 << 16
_MIN_PREFIX = 8  # hex digits of a sha256 prefix
_log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download failed: no network, an HTTP error, a short transfer, a checksum mismatch or an unusable file.

    The message is one line naming the URL, the cache path and what to do.
    """


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks so that large checkpoints need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path) -> Path:
    """The JSON file beside a downloaded file that records its URL and sha256."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def url_cache_dir(cache_dir, url: str) -> Path:
    """A folder of ``cache_dir`` that belongs to exactly this URL: ``urls/<host>-<12 hex digits of its sha256>``.

    The file keeps its readable name inside it; another URL with the same file name gets another folder.
    """
    host = re.sub(r"[^A-Za-z0-9.-]+", "_", urllib.parse.urlsplit(url).netloc) or "local"
    return Path(cache_dir) / "urls" / f"{host}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def download(url: str, dest_dir, sha256: Optional[str] = None, filename: Optional[str] = None,
             progress: bool = True, validate: Optional[Callable[[str], None]] = None) -> str:
    """Download ``url`` to ``dest_dir/filename`` (default: the URL's last path part); return its path.

    ``sha256``: the expected sum, in full or a prefix of >= 8 hex digits. ``validate(path)``: raises
    ValueError when a file cannot be used (e.g. does not parse); a fresh download and a hand-placed
    cached file are validated before they are returned. Raises DownloadError (one line) when the server
    cannot be reached, the transfer is short, the sha256 does not match or the file is not usable; logs a
    warning when no sha256 is known, since the file cannot be verified then.
    """
    expected = _normalise_sha256(sha256)
    dest = Path(dest_dir) / (filename or _url_filename(url))
    side = sidecar_path(dest)
    if dest.exists():
        record = _read_sidecar(side)
        if record is None:
            return _use_hand_placed(dest, url, expected, validate)
        problem = _cached_problem(dest, url, expected, record)
        if problem is None:
            if expected is None:
                _warn_unverified(dest, url)
            return str(dest)
        _log.warning("cached file %s %s: downloading it again to replace it", dest, problem)
    else:
        side.unlink(missing_ok=True)  # a sidecar left without its file
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name (concurrent downloads, e.g. the ranks of one job, never share it) that keeps
    # the file's suffix: MindSpore reads only names ending in .ckpt.
    fd, part = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.stem}.", suffix=f".part{dest.suffix}")
    os.close(fd)
    part = Path(part)
    try:
        _fetch(url, part, dest, progress)
        actual = sha256_file(part)
        if expected is not None and not actual.startswith(expected):
            raise DownloadError(f"sha256 mismatch for {url}: expected {expected}, got {actual}; the downloaded "
                                f"file was deleted (it would have been {dest}): check the URL and the sum")
        if validate is not None:
            try:
                validate(str(part))
            except ValueError as err:
                raise DownloadError(f"the file downloaded from {url} is not usable "
                                    f"({_one_line(err).replace(str(part), 'it')}); it was deleted "
                                    f"(it would have been {dest})") from None
        # The sidecar first: a crash between the two leaves a file that does not match it (downloaded again).
        write_json_atomic(side, dict(url=url, sha256=actual, size=part.stat().st_size), indent=1)
        os.chmod(part, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    if expected is None:
        _warn_unverified(dest, url)
    return str(dest)


def _read_sidecar(side: Path) -> Optional[dict]:
    """The sidecar's record, or None when there is none (a file put in the cache by hand)."""
    try:
        record = json.loads(side.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # ours but damaged: the cached file cannot be trusted
    return record if isinstance(record, dict) else {}


def _cached_problem(dest: Path, url: str, expected: Optional[str], record: dict) -> Optional[str]:
    """Why a cached file with a sidecar cannot be reused (None: it can)."""
    if record.get("url") != url:
        return f"came from {record.get('url', 'an unknown URL')}, not from {url}"
    actual = sha256_file(dest)
    if actual != record.get("sha256"):
        return f"has changed since it was downloaded (sha256 {actual}, recorded {record.get('sha256')})"
    if expected is not None and not actual.startswith(expected):
        return f"has sha256 {actual}, expected {expected}"
    return None


def _use_hand_placed(dest: Path, url: str, expected: Optional[str], validate) -> str:
    """A cached file without a sidecar: checked, never deleted."""
    if expected is not None:
        actual = sha256_file(dest)
        if not actual.startswith(expected):
            raise DownloadError(f"cached file {dest} has sha256 {actual}, expected {expected}; "
                                f"delete it to download it again from {url}")
    if validate is not None:
        try:
            validate(str(dest))
        except ValueError as err:
            raise DownloadError(f"cached file {dest} (put there by hand: no {sidecar_path(dest).name} beside it) "
                                f"is not usable ({_one_line(err).replace(str(dest), 'it')}); delete it to "
                                f"download it again from {url}") from None
    if expected is None:
        _warn_unverified(dest, url)
    return str(dest)


def _fetch(url: str, part: Path, dest: Path, progress: bool) -> None:
    """Stream ``url`` into ``part``, checking the byte count against Content-Length."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None and length.isdigit() else None
            received = 0
            with open(part, "wb") as file, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                                desc=dest.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    file.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
        raise DownloadError(f"cannot download {url} ({_one_line(reason)}); check the URL and the network, "
                            f"or download it by hand and put it at {dest}") from None
    if total is not None and received != total:
        raise DownloadError(f"transfer of {url} was cut short: got {received} of {total} bytes; the partial "
                            f"file was deleted: try again, or download it by hand and put it at {dest}")


def _normalise_sha256(sha256: Optional[str]) -> Optional[str]:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(f"[0-9a-f]{{{_MIN_PREFIX},64}}", value):
        raise ValueError(f"not a sha256 hex digest or a prefix of at least {_MIN_PREFIX} hex digits: {sha256!r}")
    return value


def _url_filename(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not name:
        raise ValueError(f"cannot take a file name from {url}; pass filename=")
    return name


def _warn_unverified(dest: Path, url: str) -> None:
    _log.warning("%s cannot be verified: no sha256 checksum is known for %s", dest, url)


def _one_line(err) -> str:
    return " ".join(str(err).split())
