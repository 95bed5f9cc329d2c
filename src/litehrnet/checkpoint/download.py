"""Download checkpoints over HTTP(S): progress bar, size and sha256 checks, atomic rename, cache reuse.

A file already at the destination is reused without network access. If a sha256 is known and the cached
file does not match, that is an error asking the user to delete it: the file may have been put there by
hand, so it is never deleted or replaced silently. A fresh download that does not match is deleted.
"""
import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from tqdm import tqdm

__all__ = ["DownloadError", "download", "sha256_file"]

TIMEOUT_S = 30  # seconds to connect and between received chunks
_CHUNK = 1 << 16
_log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download failed: no network, an HTTP error, a short transfer or a checksum mismatch."""


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks so that large checkpoints need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest_dir, sha256: Optional[str] = None, filename: Optional[str] = None,
             progress: bool = True) -> str:
    """Download ``url`` to ``dest_dir/filename`` (default: the URL's last path part); return its path.

    Raises DownloadError (one line) when the server cannot be reached, the transfer is short, or the
    sha256 does not match; logs a warning when no sha256 is known, since the file cannot be verified then.
    """
    expected = _normalise_sha256(sha256)
    dest = Path(dest_dir) / (filename or _url_filename(url))
    if dest.exists():
        actual = None if expected is None else sha256_file(dest)
        if actual != expected:
            raise DownloadError(f"cached file {dest} has sha256 {actual}, expected {expected}; "
                                "delete it to download it again")
        if expected is None:
            _warn_unverified(dest, url)
        return str(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _fetch(url, part, dest, progress)
        if expected is not None:
            actual = sha256_file(part)
            if actual != expected:
                raise DownloadError(f"sha256 mismatch for {url}: expected {expected}, got {actual}; "
                                    "the downloaded file was deleted")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
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
        raise DownloadError(f"cannot download {url} ({_one_line(reason)}); download it by hand "
                            f"and put it at {dest}") from None
    if total is not None and received != total:
        raise DownloadError(f"transfer of {url} was cut short: got {received} of {total} bytes; "
                            "the partial file was deleted")


def _normalise_sha256(sha256: Optional[str]) -> Optional[str]:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
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
