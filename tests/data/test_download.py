"""Resumable downloads and safe extraction against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import copy
import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aesthetic_llm.data.download import download, safe_extract
from aesthetic_llm.data.manifest import manifest_path
from aesthetic_llm.data.prepare import prepare
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import read_csv

from .test_ava import ava_params, make_ava_root

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB, so a drop lands mid-file


class Server:
    """Serves `files`; Range-aware; per-path faults: drop the first response mid-body, or fail with 503 first."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_first: set[str] = set()
        self.fail_first: dict[str, int] = {}  # path -> how many 503s before serving
        self.ignore_range: set[str] = set()
        self.log: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                rng = self.headers.get("Range")
                server.log.append((self.path, rng))
                if server.fail_first.get(self.path, 0) > 0:
                    server.fail_first[self.path] -= 1
                    self.send_error(503, "busy")
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "no such file")
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng and self.path not in server.ignore_range else 0
                if start >= len(body) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                chunk = body[start:]
                if self.path in server.drop_first:
                    server.drop_first.discard(self.path)
                    self.wfile.write(chunk[: len(chunk) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)


@pytest.fixture
def server():
    srv = Server()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_and_renames_atomically(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    dest = download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256=sha(PAYLOAD), size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "a.bin.part").exists()
    download(f"{server.url}/a.bin", dest, sha256=sha(PAYLOAD))  # already there and verified: no request
    assert len(server.log) == 1


def test_resumes_an_existing_part_file_with_range(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:1000])
    download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256=sha(PAYLOAD))
    assert server.log == [("/a.bin", "bytes=1000-")]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_dropped_connection_is_retried_from_where_it_stopped(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.drop_first.add("/a.bin")
    sleeps: list[float] = []
    download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256=sha(PAYLOAD), backoff=0.01, sleep=sleeps.append)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert len(server.log) == 2 and server.log[0][1] is None
    resumed_at = int(server.log[1][1].split("=")[1].rstrip("-"))
    assert 0 < resumed_at < len(PAYLOAD) and len(sleeps) == 1


def test_5xx_is_retried_with_exponential_backoff_and_jitter(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.fail_first["/a.bin"] = 3
    sleeps: list[float] = []
    download(f"{server.url}/a.bin", tmp_path / "a.bin", retries=5, backoff=0.01, sleep=sleeps.append)
    assert len(sleeps) == 3
    for k, s in enumerate(sleeps):
        assert 0.01 * 2**k * 0.5 <= s <= 0.01 * 2**k * 1.5
    server.fail_first["/b.bin"] = 99
    with pytest.raises(UserError, match=r"/b\.bin: download failed after 2 retries \(HTTP 503"):
        download(f"{server.url}/b.bin", tmp_path / "b.bin", retries=2, backoff=0.0, sleep=sleeps.append)


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.ignore_range.add("/a.bin")
    (tmp_path / "a.bin.part").write_bytes(b"x" * 500)
    download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256=sha(PAYLOAD))
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_partial_file(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD[:-1] + b"\x00"  # one byte off
    with pytest.raises(UserError, match=r"checksum mismatch .*deleted .*a\.bin\.part"):
        download(f"{server.url}/a.bin", tmp_path / "a.bin", sha256=sha(PAYLOAD))
    assert not (tmp_path / "a.bin.part").exists() and not (tmp_path / "a.bin").exists()
    with pytest.raises(UserError, match=r"size mismatch"):
        download(f"{server.url}/a.bin", tmp_path / "a.bin", size=len(PAYLOAD) + 5)


def test_404_is_not_retried(server, tmp_path):
    with pytest.raises(UserError, match=r"nope\.bin: HTTP 404"):
        download(f"{server.url}/nope.bin", tmp_path / "x", sleep=lambda s: pytest.fail("retried a 404"))


# -- extraction ---------------------------------------------------------------------------------------
def tar_with(*members: tuple[str, str, str]) -> bytes:
    """(kind, name, data-or-linkname) -> tar bytes; kind is file, sym or hard."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for kind, name, extra in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(extra.encode())
                tf.addfile(info, io.BytesIO(extra.encode()))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = extra
                tf.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("members", "bad"),
    [
        ([("file", "ok.txt", "fine"), ("file", "/tmp/evil_abs.txt", "x")], "/tmp/evil_abs.txt"),
        ([("file", "data/../../evil.txt", "x")], "data/../../evil.txt"),
        ([("sym", "data/link", "../../outside")], "data/link"),
        ([("sym", "etc", "/etc")], "etc"),
        ([("hard", "pw", "../secret")], "pw"),
    ],
)
def test_malicious_tar_from_the_server_is_refused(server, tmp_path, members, bad):
    server.files["/evil.tar"] = tar_with(*members)
    archive = download(f"{server.url}/evil.tar", tmp_path / "evil.tar")
    target = tmp_path / "x" / "target"
    with pytest.raises(UserError, match=rf"unsafe archive member '{bad}'"):
        safe_extract(archive, target)
    assert not (tmp_path / "x" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (target / "ok.txt").exists()  # checked before anything is written


def test_safe_tar_and_zip_extract(tmp_path):
    (tmp_path / "good.tar").write_bytes(tar_with(("file", "d/a.txt", "A"), ("sym", "d/b.txt", "a.txt")))
    safe_extract(tmp_path / "good.tar", tmp_path / "t")
    assert (tmp_path / "t" / "d" / "b.txt").read_text() == "A"
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(UserError, match=r"unsafe archive member '\.\./evil\.txt'"):
        safe_extract(tmp_path / "evil.zip", tmp_path / "z")


def test_paper_stage_fetches_ava_when_the_root_is_missing(server, tmp_path, repo_params):
    make_ava_root(tmp_path / "src" / "AVA_dataset")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(tmp_path / "src" / "AVA_dataset", arcname="AVA_dataset")  # archives usually add a top dir
    server.files["/AVA.tar.gz"] = buf.getvalue()
    p = copy.deepcopy(repo_params)
    p["data"].update(
        ava_url=f"{server.url}/AVA.tar.gz", ava_sha256=sha(buf.getvalue()), download_dir=str(tmp_path / "dl")
    )
    root = tmp_path / "data" / "AVA"
    stats = prepare(ava_params(p, tmp_path / "out", root))
    assert stats["counts"]["train"] + stats["counts"]["val"] + stats["counts"]["test"] == 56
    assert Path(read_csv(manifest_path(tmp_path / "out", "test"))[0]["path"]).is_file()
    assert stats["roots"]["ava"] == str(root / "AVA_dataset")
    n = len(server.log)
    prepare(ava_params(p, tmp_path / "out2", root))  # root now exists: nothing fetched again
    assert len(server.log) == n
