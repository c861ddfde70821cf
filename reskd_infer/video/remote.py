"""Opening videos by URL: FFmpeg reads them itself, except from HTTP servers that refuse byte ranges.

An MP4 whose index (the ``moov`` box) sits after its media data cannot be decoded without seeking back,
and FFmpeg seeks over HTTP with byte-range requests. Plain file servers (Python's ``http.server``, many
minimal servers) answer a range request with the whole file (status 200): FFmpeg then fails deep in
decoding with "Input/output error" although the file is fine. So before FFmpeg opens an http(s) URL, one
request with ``Range: bytes=0-0`` asks the server: a 206 answer lets FFmpeg stream as usual; a 200 answer
means no ranges, and the body of that same response is read into memory (at most
``RESKD_URL_BUFFER_MB``, default 256 MB) and decoded from there, with one warning per URL. A file over the
bound is refused with a message that says why and what works (a range-capable server, or MPEG-TS, which
never seeks).
"""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
import warnings

import av

from reskd_infer.errors import UnreadableVideoError

URL_TIMEOUT_S = 10.0  # open and read timeout for URLs: an unreachable server is an error, not a hang
DEFAULT_BUFFER_MB = 256
_warned: set[str] = set()


def is_url(path: object) -> bool:
    """True for ``scheme://...`` inputs, which FFmpeg opens itself (http, https, rtsp, ...)."""
    scheme, sep, _ = path.partition("://") if isinstance(path, str) else ("", "", "")
    return bool(sep) and scheme[:1].isalpha() and all(c.isalnum() or c in "+.-" for c in scheme)


def buffer_limit_bytes() -> int:
    """How much of a video from a server without byte ranges may be read into memory."""
    return int(float(os.environ.get("RESKD_URL_BUFFER_MB", DEFAULT_BUFFER_MB)) * (1 << 20))


def open_url(url: str) -> av.container.InputContainer:
    """A PyAV container reading ``url``: FFmpeg's own HTTP client, or a memory buffer when the server refuses
    byte ranges (see the module doc)."""
    source: str | io.BytesIO = url
    if url.lower().startswith(("http://", "https://")):
        source = _buffer_if_no_ranges(url) or url
    try:
        return av.open(source, mode="r", metadata_errors="ignore", timeout=(URL_TIMEOUT_S, URL_TIMEOUT_S))
    except (av.error.FFmpegError, OSError) as exc:
        raise UnreadableVideoError(url, f"cannot open URL ({getattr(exc, 'strerror', None) or exc})") from None


def _buffer_if_no_ranges(url: str) -> io.BytesIO | None:
    """None when the server honours byte ranges (or cannot be asked: FFmpeg then reports the problem);
    otherwise the whole file in memory."""
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    try:
        response = urllib.request.urlopen(request, timeout=URL_TIMEOUT_S)  # noqa: S310 - the user's own URL
    except (urllib.error.URLError, OSError, ValueError):
        return None
    with response:
        if response.status != 200:  # 206: ranges work, FFmpeg seeks by itself
            return None
        limit = buffer_limit_bytes()
        data = response.read(limit + 1)
    if len(data) > limit:
        raise UnreadableVideoError(url, f"the server does not support byte-range requests, which decoding an MP4 "
                                        f"or MKV needs, and the file is over the {limit / (1 << 20):g} MB read into memory "
                                        "instead (RESKD_URL_BUFFER_MB); serve it from a server with range support, "
                                        "or as MPEG-TS")
    if url not in _warned:
        _warned.add(url)
        warnings.warn(f"{url}: the server does not support byte-range requests; read the whole file "
                      f"({len(data) / 1e6:.1f} MB) into memory to decode it", RuntimeWarning, stacklevel=1)
    return io.BytesIO(data)
