"""Resumable, verified downloads and safe archive extraction for the paper datasets (AVA, AADB).

A download lands in `dest.part`, resumes with HTTP Range after a dropped connection, retries
connection errors / 5xx / truncated bodies with exponential backoff + jitter, checks size and
sha256, and only then is renamed to `dest`, so `dest` existing means "complete and verified".
"""

from __future__ import annotations

import http.client
import os
import random
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import sha256_file

CHUNK = 1 << 20
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class _Retry(Exception):
    """A transient failure: try again (resuming from what is on disk)."""


def _content_range_start(header: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", header or "")
    return int(match.group(1)) if match else None


def _fetch_once(url: str, part: Path, size: int | None, timeout: float) -> None:
    """One request: append to `part` from its current length; raise _Retry on anything transient."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # a stale .part from another file: start over
        part.unlink()
        have = 0
    if size is not None and have == size:
        return
    headers = {"User-Agent": "aesthetic-llm/0.1", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status = getattr(resp, "status", None) or 200
            if have and status == 206 and _content_range_start(resp.headers.get("Content-Range")) != have:
                raise _Retry(f"server resumed at the wrong offset ({resp.headers.get('Content-Range')})")
            if status != 206:  # the server ignored Range: the body is the whole file
                have = 0
            length = resp.headers.get("Content-Length")
            expected = have + int(length) if length is not None else size
            got = have
            with part.open("ab" if have else "wb") as fh:
                while block := resp.read(CHUNK):
                    fh.write(block)
                    got += len(block)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing past our offset: either complete already or a bad .part
            if size is None or have == size:
                return
            part.unlink()
            raise _Retry("HTTP 416 on resume; restarting from zero") from None
        if exc.code in _RETRY_STATUS:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise UserError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
        # urllib wraps a refused/reset connection in URLError; IncompleteRead is an HTTPException.
        if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, str) and "unknown url type" in exc.reason:
            raise UserError(f"{url}: {exc.reason}") from None
        raise _Retry(f"{type(exc).__name__}: {exc}") from None
    # HTTPResponse.read(n) returns b"" on a dropped connection instead of raising: compare lengths.
    if expected is not None and got < expected:
        raise _Retry(f"truncated body ({got} of {expected} bytes)")


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Fetch `url` to `dest` (resumable via `dest.part`), verify size/sha256, then rename atomically."""
    dest = Path(dest)
    if dest.exists() and (sha256 is None or sha256_file(dest) == sha256.lower()):
        return dest  # already complete and verified: a rerun of the stage costs nothing
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, size, timeout)
            break
        except _Retry as exc:
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1  # progress made: the budget is per stall
            if failures > retries:
                raise UserError(
                    f"{url}: download failed after {retries} retries ({exc}); partial data kept in {part}"
                ) from None
            sleep(backoff * 2 ** max(failures - 1, 0) * (0.5 + random.random()))
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise UserError(f"{url}: size mismatch ({got} bytes, expected {size}); deleted {part}")
    if sha256 is not None:
        actual = sha256_file(part)
        if actual != sha256.lower():
            part.unlink()
            raise UserError(f"{url}: checksum mismatch (sha256 {actual}, expected {sha256.lower()}); deleted {part}")
    os.replace(part, dest)
    return dest


# -- extraction ------------------------------------------------------------------------------------
def _inside(name: str) -> bool:
    """True if `name` (archive-relative, posix) stays inside the target: not absolute, no `..`."""
    p = PurePosixPath(name.replace("\\", "/"))
    return not p.is_absolute() and not re.match(r"^[A-Za-z]:", name) and ".." not in p.parts


def _check_tar_member(m: tarfile.TarInfo) -> None:
    if not _inside(m.name):
        raise UserError(f"unsafe archive member {m.name!r}: absolute path or '..' component")
    if m.issym():
        # A symlink's target is relative to the link's own directory.
        target = (PurePosixPath(m.name).parent / m.linkname).as_posix()
        if (
            os.path.isabs(m.linkname)
            or not _inside(os.path.normpath(target))
            or ".." in PurePosixPath(m.linkname).parts
        ):
            raise UserError(f"unsafe archive member {m.name!r}: symlink to {m.linkname!r} points outside the target")
    elif m.islnk():
        if not _inside(m.linkname):
            raise UserError(f"unsafe archive member {m.name!r}: hardlink to {m.linkname!r} points outside the target")
    elif not (m.isfile() or m.isdir()):
        raise UserError(f"unsafe archive member {m.name!r}: device or fifo")


def safe_extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a tar (any compression) or zip into `target`, refusing members that could escape it."""
    archive, target = Path(archive), Path(target)
    if not archive.exists():
        raise UserError(f"{archive}: file not found")
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not _inside(info.filename):
                    raise UserError(f"unsafe archive member {info.filename!r}: absolute path or '..' component")
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UserError(f"unsafe archive member {info.filename!r}: symlink in a zip")
            zf.extractall(target)
        return target
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _check_tar_member(m)
            # The stdlib "data" filter re-checks at extraction time (link chains resolved on disk).
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(target, members=members, **kwargs)
    except tarfile.TarError as exc:
        raise UserError(f"{archive}: not a readable tar or zip archive ({exc})") from None
    return target


def fetch_root(name: str, url: str, root: Path, download_dir: Path, sha256: str | None, marker: str) -> Path:
    """Download + extract a dataset archive into `root`; return the directory that holds `marker`.

    Extraction goes to a sibling temp dir renamed into place at the end, so a crash never leaves a
    half-extracted `root` that the next run would take for a complete one.
    """
    archive = download(url, download_dir / (Path(urllib.parse.urlparse(url).path).name or f"{name}.archive"), sha256)
    staging = root.with_name(root.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    safe_extract(archive, staging)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, root)
    found = find_marker(root, marker)
    if found is None:
        raise UserError(f"{url}: archive extracted to {root} has no {marker}")
    return found


def find_marker(root: Path, marker: str, depth: int = 2) -> Path | None:
    """The directory at most `depth` levels under `root` that contains `marker` (archives often add a top dir)."""
    frontier = [root]
    for _ in range(depth + 1):
        for d in sorted(frontier):
            if (d / marker).exists():
                return d
        frontier = [c for d in frontier for c in d.iterdir() if c.is_dir()] if frontier else []
    return None
