"""Download the public MedSeg COVID-19 files: resumable, verified, never a half-written file.

Each file streams into ``NAME.part`` beside its destination; an interrupted download resumes from
there with an HTTP Range request. Only a file whose size and sha256 match (where known) is renamed
to its final name; a mismatch deletes the download. Standard library only (urllib).

Sources: figshare's "MedSeg Covid Dataset 1" (article 13521488: tr_im, tr_mask, val_im) and the
MedSeg page's Google Drive link (tr_lungmasks_updated). ``base_url`` replaces them all with
``BASE/NAME`` (a mirror, or a local server in tests).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from covseg import __version__
from covseg.core.errors import CovsegError
from covseg.files import ONE_LINE_LIMIT, folder_made_for, one_line

logger = logging.getLogger(__name__)

OnProgress = Callable[[str, int, "int | None"], None]
"""``on_progress(name, bytes_written, total_bytes_or_None)``: after each block of a download."""

CONNECT_TIMEOUT_S = 10.0
CHUNK_BYTES = 1 << 20
MEDSEG_FIGSHARE = "https://figshare.com/articles/dataset/MedSeg_Covid_Dataset_1/13521488"
MEDSEG_SITE = "http://medicalsegmentation.com/covid19/"
URL_SCHEMES = ("http", "https", "file")
"""What ``--url`` may start with: the schemes urllib opens that can serve a mirror."""


@dataclass(frozen=True)
class RemoteFile:
    """A file to download: its name, default URL, and size and sha256 where known."""

    name: str
    url: str
    size: int | None = None
    sha256: str | None = None
    required: bool = True


MEDSEG_FILES: tuple[RemoteFile, ...] = (
    RemoteFile("tr_im.nii.gz", "https://ndownloader.figshare.com/files/25953977"),
    RemoteFile("tr_mask.nii.gz", "https://ndownloader.figshare.com/files/25953980", size=1_430_936,
               sha256="bcd1713830998cb31497a1fa189b367230942d8b85df3cdcb9be5e85c86679e4"),
    RemoteFile("val_im.nii.gz", "https://ndownloader.figshare.com/files/25953983", required=False),
    RemoteFile("tr_lungmasks_updated.nii.gz",
               "https://drive.google.com/uc?export=download&id=1zj4N_KV0LBko1VSQ7FPZ38eaEGNU0K6-",
               required=False),
)


@dataclass(frozen=True)
class FetchResult:
    """What happened to one file: ``downloaded``, ``resumed``, ``present`` or ``skipped`` (why)."""

    name: str
    path: Path
    status: str
    size: int
    detail: str = ""


class _Unreachable(Exception):
    """The server cannot be reached at all (offline, DNS, refused, timed out)."""


class _NotServed(Exception):
    """The server answered but does not serve the file (HTTP error, a web page instead)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _matches(path: Path, remote: RemoteFile) -> bool:
    size = path.stat().st_size
    return (remote.size is None or size == remote.size) and (
        remote.sha256 is None or sha256_of(path) == remote.sha256)


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": f"covseg/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left after the offset: the .part is complete
            return None
        raise _NotServed(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as error:  # ValueError: InvalidURL
        reason = getattr(error, "reason", error)
        raise _Unreachable(" ".join(str(reason).split())[:ONE_LINE_LIMIT] or type(error).__name__) from None


def _download(url: str, part: Path, remote: RemoteFile, on_progress: OnProgress | None,
              timeout: float) -> bool:
    """Stream ``url`` into ``part``, resuming from its current size; True when it resumed."""
    offset = part.stat().st_size if part.exists() else 0
    if remote.size is not None and offset > remote.size:
        part.unlink()
        offset = 0
    response = _open(url, offset, timeout)
    if response is None:
        return offset > 0
    with response:
        if "text/html" in response.headers.get("Content-Type", ""):
            raise _NotServed("the server sent a web page instead of the file")
        start = 0
        if response.status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            start = int(match.group(1)) if match else -1
            if start != offset:
                raise _NotServed(f"the server resumed at byte {start}, not {offset}")
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else remote.size
        written = start
        if on_progress is not None:
            on_progress(remote.name, written, total)
        try:
            with part.open("ab" if start else "wb") as handle:
                for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                    handle.write(block)
                    written += len(block)
                    if on_progress is not None:
                        on_progress(remote.name, written, total)
        except (TimeoutError, OSError, http.client.HTTPException) as error:
            raise _interrupted(remote, written, one_line(error)) from None
    if length is not None and written < total:
        raise _interrupted(remote, written, f"the server sent {written - start:,} of {int(length):,} bytes")
    return start > 0


def _interrupted(remote: RemoteFile, written: int, reason: str) -> CovsegError:
    return CovsegError(f"download of {remote.name} stopped after {written:,} bytes ({reason}); "
                       "run the command again to resume")


def _manual_hint(files: Sequence[RemoteFile], dest: Path) -> str:
    names = ", ".join(remote.name for remote in files)
    return (f"download {names} by hand from the MedSeg \"COVID-19 CT segmentation dataset\" page "
            f"({MEDSEG_SITE}) or figshare \"MedSeg Covid Dataset 1\" ({MEDSEG_FIGSHARE}) "
            f"and put them in {dest}")


def check_base_url(url: str) -> str:
    """Refuse a ``--url`` that urllib cannot open as a mirror, before anything is made or fetched.

    Accepts ``http://HOST...``, ``https://HOST...`` and ``file:///PATH`` (:data:`URL_SCHEMES`);
    returns ``url``. Raises CovsegError ``--url 'URL': ...`` for anything else (no scheme, another
    scheme, no host, an unparseable host or port, spaces or control characters).
    """
    shown = f"--url {url!r}"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- parses the port: 'http://host:x' raises here, not mid-download
    except ValueError as error:
        raise CovsegError(f"{shown}: not a valid URL ({one_line(error)})") from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES or (scheme != "file" and not parts.hostname):
        raise CovsegError(f"{shown}: not an http(s) or file URL (e.g. https://host/medseg or "
                          "file:///data/medseg)")
    if any(character.isspace() or not character.isprintable() for character in url):
        raise CovsegError(f"{shown}: a URL cannot hold spaces or control characters (write %20)")
    return url


def fetch_files(
    files: Sequence[RemoteFile],
    dest: Path,
    base_url: str | None = None,
    on_progress: OnProgress | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
) -> list[FetchResult]:
    """Download ``files`` into ``dest`` (see the module docstring); returns one result per file.

    Files already there and matching are kept. A required file that cannot be fetched raises a
    one-line :class:`CovsegError` that says what to download by hand; an optional one is skipped
    (its result says why). ``on_progress`` follows each download (the command's progress bars).
    When the fetch fails, the folders it made for ``dest`` are removed again unless they hold a
    file (a partial download kept to resume).
    """
    with folder_made_for(dest):  # a failed fetch leaves no empty folder of its own behind
        return _fetch_into(files, Path(dest), base_url, on_progress, timeout)


def _fetch_into(files: Sequence[RemoteFile], dest: Path, base_url: str | None, on_progress: OnProgress | None,
                timeout: float) -> list[FetchResult]:
    results = []
    for remote in files:
        target, part = dest / remote.name, dest / f"{remote.name}.part"
        if target.is_file() and _matches(target, remote):
            results.append(FetchResult(remote.name, target, "present", target.stat().st_size))
            continue
        url = f"{base_url.rstrip('/')}/{remote.name}" if base_url else remote.url
        logger.info("downloading %s from %s", remote.name, url)
        try:
            resumed = _download(url, part, remote, on_progress, timeout)
        except _Unreachable as error:
            raise CovsegError(f"cannot reach {url} ({error}); {_manual_hint(files, dest)}") from None
        except _NotServed as error:
            if remote.required:
                raise CovsegError(f"{url}: {error}; {_manual_hint(files, dest)}") from None
            results.append(FetchResult(remote.name, target, "skipped", 0, f"{url}: {error}"))
            continue
        _verify(part, remote)
        os.replace(part, target)
        results.append(FetchResult(remote.name, target, "resumed" if resumed else "downloaded",
                                   target.stat().st_size))
    return results


def _verify(part: Path, remote: RemoteFile) -> None:
    size = part.stat().st_size
    if remote.size is not None and size != remote.size:
        part.unlink()
        raise CovsegError(
            f"{remote.name}: got {size:,} bytes, expected {remote.size:,}; deleted the download")
    if remote.sha256 is not None:
        actual = sha256_of(part)
        if actual != remote.sha256:
            part.unlink()
            raise CovsegError(f"{remote.name}: sha256 {actual} does not match the known {remote.sha256}; "
                              "deleted the download")


def fetch_medseg(dest: Path, base_url: str | None = None, on_progress: OnProgress | None = None,
                 timeout: float = CONNECT_TIMEOUT_S) -> list[FetchResult]:
    """Download the public MedSeg files into ``dest`` (``covseg data fetch medseg``)."""
    return fetch_files(MEDSEG_FILES, dest, base_url, on_progress, timeout)
