"""Reading image files with the problems named: a JPEG cut short (interrupted copy or download), which OpenCV
decodes with a grey remainder, and what the decoders print on stderr, caught and attributed to the file."""
import logging
import os
import sys
import tempfile
import threading

import cv2

_LOG = logging.getLogger(__name__)
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STDERR_LOCK = threading.Lock()


def jpeg_is_truncated(data):
    """True when JPEG bytes end before the end-of-image marker (False for complete files and non-JPEGs).

    Walks the marker segments and the entropy-coded data after each start-of-scan, so that an embedded
    thumbnail's end marker (inside an APP segment) is not mistaken for the image's own.
    """
    data = bytes(data)
    if data[:2] != b"\xff\xd8":
        return False
    n, pos = len(data), 2
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            return False  # not a marker where one must be: damaged, not truncated (the decoder says so)
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _EOI:
            return False
        if 0xD0 <= marker <= 0xD7 or marker in (0x01, _SOI):  # markers without a length
            pos += 2
            continue
        if pos + 4 > n:
            return True
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == _SOS:  # entropy-coded data up to the next marker (0xFF00 is a stuffed byte, RSTn inline)
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return True
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    pos += 2
                elif following == 0xFF:
                    pos += 1
                else:
                    break
    return True


def _decode_capturing_stderr(path):
    """(cv2.imread(path) in BGR or None, the lines the decoder printed on the process's stderr).

    libjpeg and libpng write their complaints ('Premature end of JPEG file', 'libpng warning: ...') to
    file descriptor 2 themselves; they are caught in a temporary file instead, so the caller can say which
    file they are about. One decode at a time holds the descriptor (a lock).
    """
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no stderr to borrow: decode as it is
            return cv2.imread(os.fspath(path), cv2.IMREAD_COLOR), []
        try:
            os.dup2(sink.fileno(), 2)
            image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        said = sink.read().decode(errors="replace")
    return image, [line.strip() for line in said.splitlines() if line.strip()]


def _is_truncated_jpeg(path):
    try:
        with open(os.fspath(path), "rb") as f:
            return jpeg_is_truncated(f.read())
    except OSError:
        return False


def read_image_bgr(path):
    """An image file as BGR uint8 HWC (cv2.imread), or None when it is missing or unreadable.

    A decoded image that is a JPEG cut short (OpenCV fills the missing part in grey), or that the decoder
    complained about, is logged as one warning naming the file and quoting the decoder; the decoder's own
    lines never reach the console unattributed. An unreadable file (None) is the caller's to report.
    """
    image, said = _decode_capturing_stderr(path)
    if image is None:
        return None
    quoted = "; ".join(said)
    if _is_truncated_jpeg(path):
        _LOG.warning("%s: truncated JPEG (the file ends before the image does; the missing part is filled in "
                     "by the decoder%s): check the file", path, f", which said: {quoted}" if said else "")
    elif said:
        _LOG.warning("%s: the image decoder said: %s: check the file", path, quoted)
    return image
