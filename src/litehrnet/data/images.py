"""Checks on image files that OpenCV decodes without a word: a JPEG cut short (interrupted copy or download)."""
import logging
import os

_LOG = logging.getLogger(__name__)
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA


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


def warn_if_truncated(path):
    """Log a warning naming ``path`` when it is a JPEG cut short (OpenCV decodes it with a grey remainder)."""
    try:
        with open(os.fspath(path), "rb") as f:
            truncated = jpeg_is_truncated(f.read())
    except OSError:
        return False
    if truncated:
        _LOG.warning("%s: truncated JPEG (the file ends before the image does; the missing part is filled in "
                     "by the decoder): check the file", path)
    return truncated
