"""`covseg data fetch` against an HTTP server on 127.0.0.1 serving files the tests make."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.data import fetch as fetch_module
from covseg.data.fetch import RemoteFile, fetch_files

IMAGE = bytes(range(256)) * 4000  # about 1 MB: several chunks
MASK = b"mask volume" * 1000


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.files`` by name, with HTTP Range support, and records every request."""

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        self.server.requests.append((name, self.headers.get("Range")))
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        requested = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if requested:
            start = int(requested.group(1))
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if name in self.server.cut_once:  # the connection drops half-way, once
            self.server.cut_once.discard(name)
            self.wfile.write(data[start:start + (len(data) - start) // 2])
            return
        self.wfile.write(data[start:])

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.files = {"tr_im.nii.gz": IMAGE, "tr_mask.nii.gz": MASK}
    httpd.requests = []
    httpd.cut_once = set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _remote(name: str, data: bytes, **changes) -> RemoteFile:
    fields = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **changes}
    return RemoteFile(name, f"http://unused.invalid/{name}", **fields)


def test_downloads_verifies_and_keeps_present_files(server, tmp_path):
    files = [_remote("tr_im.nii.gz", IMAGE), _remote("tr_mask.nii.gz", MASK)]
    results = fetch_files(files, tmp_path, base_url=server.url)
    assert [(result.name, result.status, result.size) for result in results] == [
        ("tr_im.nii.gz", "downloaded", len(IMAGE)), ("tr_mask.nii.gz", "downloaded", len(MASK))]
    assert (tmp_path / "tr_im.nii.gz").read_bytes() == IMAGE
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tr_im.nii.gz", "tr_mask.nii.gz"]
    again = fetch_files(files, tmp_path, base_url=server.url)
    assert [result.status for result in again] == ["present", "present"] and len(server.requests) == 2


def test_resumes_a_partial_download_with_a_range_request(server, tmp_path):
    (tmp_path / "tr_im.nii.gz.part").write_bytes(IMAGE[:300_000])
    results = fetch_files([_remote("tr_im.nii.gz", IMAGE)], tmp_path, base_url=server.url)
    assert results[0].status == "resumed"
    assert server.requests == [("tr_im.nii.gz", "bytes=300000-")]
    assert (tmp_path / "tr_im.nii.gz").read_bytes() == IMAGE
    assert not (tmp_path / "tr_im.nii.gz.part").exists()


def test_a_dropped_connection_keeps_the_part_file_for_the_next_run(server, tmp_path):
    server.cut_once.add("tr_im.nii.gz")
    files = [_remote("tr_im.nii.gz", IMAGE)]
    with pytest.raises(CovsegError, match=f"download of tr_im.nii.gz stopped after {len(IMAGE) // 2:,} bytes "
                                          r".*; run the command again to resume"):
        fetch_files(files, tmp_path, base_url=server.url)
    assert not (tmp_path / "tr_im.nii.gz").exists()
    assert (tmp_path / "tr_im.nii.gz.part").stat().st_size == len(IMAGE) // 2
    assert fetch_files(files, tmp_path, base_url=server.url)[0].status == "resumed"
    assert server.requests[-1] == ("tr_im.nii.gz", f"bytes={len(IMAGE) // 2}-")
    assert (tmp_path / "tr_im.nii.gz").read_bytes() == IMAGE


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    wrong = _remote("tr_im.nii.gz", IMAGE, sha256="0" * 64)
    pattern = r"tr_im\.nii\.gz: sha256 [0-9a-f]{64} does not match the known 0{64}; deleted the download"
    with pytest.raises(CovsegError, match=pattern):
        fetch_files([wrong], tmp_path, base_url=server.url)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_leaves_no_file_and_missing_optional_is_skipped(server, tmp_path):
    with pytest.raises(CovsegError, match="got 11,000 bytes, expected 10; deleted the download"):
        fetch_files([_remote("tr_mask.nii.gz", MASK, size=10, sha256=None)], tmp_path, base_url=server.url)
    assert list(tmp_path.iterdir()) == []
    results = fetch_files([_remote("tr_mask.nii.gz", MASK), RemoteFile("val_im.nii.gz", "x", required=False)],
                          tmp_path, base_url=server.url)
    assert [result.status for result in results] == ["downloaded", "skipped"]
    assert "HTTP 404" in results[1].detail
    with pytest.raises(CovsegError, match=r"val_im\.nii\.gz: HTTP 404"):
        fetch_files([RemoteFile("val_im.nii.gz", "x")], tmp_path, base_url=server.url)


def test_cli_fetch_against_a_mirror(server, tmp_path, monkeypatch):
    files = (_remote("tr_im.nii.gz", IMAGE), _remote("tr_mask.nii.gz", MASK),
             RemoteFile("val_im.nii.gz", "x", required=False))
    monkeypatch.setattr(fetch_module, "MEDSEG_FILES", files)
    dest = tmp_path / "medseg"
    result = CliRunner().invoke(app, ["data", "fetch", "medseg", "--out", str(dest), "--url", server.url],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (dest / "tr_mask.nii.gz").read_bytes() == MASK
    assert "downloaded" in result.stdout and "optional val_im.nii.gz skipped" in result.stderr


def test_cli_fetch_with_the_real_checksums_rejects_a_wrong_mask(server, tmp_path):
    """The built-in tr_mask.nii.gz entry carries the known size and sha256 of the original."""
    arguments = ["data", "fetch", "medseg", "--out", str(tmp_path), "--url", server.url]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: tr_mask.nii.gz: got 11,000 bytes, expected 1,430,936; deleted the download")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tr_im.nii.gz"]


def test_offline_says_what_to_download_by_hand(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dest = tmp_path / "medseg"
    result = CliRunner().invoke(app, ["data", "fetch", "medseg", "--out", str(dest),
                                      "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach http://127.0.0.1:{port}/tr_im.nii.gz")
    names = "tr_im.nii.gz, tr_mask.nii.gz, val_im.nii.gz, tr_lungmasks_updated.nii.gz"
    assert f"download {names} by hand" in lines[0]
    assert '"MedSeg Covid Dataset 1"' in lines[0] and lines[0].endswith(f"put them in {dest}")
    assert list(tmp_path.iterdir()) == []  # the folder it made for --out is gone again

    # Folders that existed before stay, even empty; only what this command made goes.
    (tmp_path / "kept").mkdir()
    deeper = tmp_path / "kept" / "a" / "medseg"
    again = CliRunner().invoke(app, ["data", "fetch", "medseg", "--out", str(deeper),
                                     "--url", f"http://127.0.0.1:{port}"])
    assert again.exit_code == 2 and again.stderr.strip().startswith("error: cannot reach")
    assert [path.name for path in tmp_path.iterdir()] == ["kept"] and not any((tmp_path / "kept").iterdir())


def test_only_medseg_can_be_fetched(tmp_path):
    result = CliRunner().invoke(app, ["data", "fetch", "lidc", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "covseg can fetch 'medseg', not 'lidc'" in result.stderr


@pytest.mark.parametrize(("url", "line"), [
    ("not a url", "error: --url 'not a url': not an http(s) or file URL (e.g. https://host/medseg or "
                  "file:///data/medseg)"),
    ("ftp://127.0.0.1:9/", "error: --url 'ftp://127.0.0.1:9/': not an http(s) or file URL (e.g. "
                           "https://host/medseg or file:///data/medseg)"),
    ("http:///medseg", "error: --url 'http:///medseg': not an http(s) or file URL (e.g. https://host/medseg "
                       "or file:///data/medseg)"),
    ("http://[::1", "error: --url 'http://[::1': not a valid URL (ValueError: Invalid IPv6 URL)"),
    ("http://host:port/", "error: --url 'http://host:port/': not a valid URL (ValueError: Port could not be "
                          "cast to integer value as 'port')"),
    ("http://a host/", "error: --url 'http://a host/': a URL cannot hold spaces or control characters "
                       "(write %20)"),
])
def test_a_malformed_url_is_one_line_before_anything_is_made(tmp_path, url, line):
    result = CliRunner().invoke(app, ["data", "fetch", "medseg", "--out", str(tmp_path / "medseg"),
                                      "--url", url])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [line]
    assert list(tmp_path.iterdir()) == []


def test_an_out_folder_that_cannot_be_made_names_out(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = CliRunner().invoke(app, ["data", "fetch", "medseg", "--out", str(afile / "medseg")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: --out {afile / 'medseg'}: cannot create "
                                          f"{afile / 'medseg'}: {afile} is a file, not a folder"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_an_out_folder_in_proc_names_the_folder_that_cannot_be_created():
    result = CliRunner().invoke(app, ["data", "fetch", "medseg", "--out", "/proc/x"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [  # no blank line first: the progress display never started
        "error: --out /proc/x: cannot create /proc/x: /proc takes no new files or folders"]


def test_the_old_dest_spelling_still_works_with_one_warning(server, tmp_path, monkeypatch):
    # --dest was data fetch's name for what every other writer calls --out.
    monkeypatch.setattr(fetch_module, "MEDSEG_FILES", (_remote("tr_mask.nii.gz", MASK),))
    dest = tmp_path / "medseg"
    result = CliRunner().invoke(app, ["data", "fetch", "medseg", "--dest", str(dest), "--url", server.url])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == "warning: --dest is deprecated in `covseg data fetch`: use --out"
    assert (dest / "tr_mask.nii.gz").read_bytes() == MASK
    both = CliRunner().invoke(app, ["data", "fetch", "medseg", "--dest", "a", "--out", "b"])
    assert both.exit_code == 2 and both.stderr.splitlines() == [
        "error: --dest and --out are the same option (--dest is its old name); give --out only"]
