"""No Docker engine runs here: parse-check the Dockerfile; check the Makefile's contract and .ci/run."""

import json
import os
import re
import subprocess

from .conftest import ROOT

INSTRUCTIONS = {
    "FROM",
    "ARG",
    "ENV",
    "RUN",
    "COPY",
    "ADD",
    "WORKDIR",
    "ENTRYPOINT",
    "CMD",
    "LABEL",
    "EXPOSE",
    "USER",
    "VOLUME",
    "SHELL",
    "HEALTHCHECK",
    "STOPSIGNAL",
    "ONBUILD",
}


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        buf += " " + stripped.rstrip("\\").strip() if buf else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    assert not buf, "Dockerfile ends inside a line continuation"
    return out


def test_dockerfile_parses_and_keeps_its_contract():
    ins = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    assert all(word in INSTRUCTIONS for word, _ in ins), [w for w, _ in ins if w not in INSTRUCTIONS]
    words = [w for w, _ in ins]
    assert words[0] in ("ARG", "FROM") and "FROM" in words
    base = next(arg for w, arg in ins if w == "ARG" and arg.startswith("BASE_IMAGE="))
    assert "nvidia/cuda" in base and "runtime" in base
    assert any("python3.11" in arg for w, arg in ins if w == "RUN")
    copies = [arg for w, arg in ins if w == "COPY"]
    lock_idx = next(i for i, c in enumerate(copies) if c.startswith("requirements.lock"))
    src_idx = next(i for i, c in enumerate(copies) if c.startswith(". "))
    assert lock_idx < src_idx, "the lock must be copied (and installed) before the source"
    entry = json.loads(next(arg for w, arg in ins if w == "ENTRYPOINT"))
    assert entry[0] == "make"
    assert json.loads(next(arg for w, arg in ins if w == "CMD")) == ["reproduce"]
    stamp = next(arg for w, arg in ins if w == "RUN" and ".installed-" in arg)
    make_stamp = re.search(r"STAMP := .*\$\(shell (.*)\)", (ROOT / "Makefile").read_text()).group(1)
    assert "sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16" in stamp
    assert make_stamp.replace("$(LOCK)", "requirements.lock").startswith("sha256sum requirements.lock pyproject.toml")


def test_make_help_lists_every_required_target():
    out = subprocess.run(["make", "-s", "help"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    for target in ("setup", "reproduce", "test", "lint", "report", "docker-build", "docker-run", "clean"):
        assert re.search(rf"^\s+(\x1b\[\d+m)?{target}\b", out, re.MULTILINE), target


def test_ci_runs_make_test():
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme


def test_make_recipes_use_the_project_venv_without_activation(tmp_path):
    """`dvc repro` runs `python scripts/…`: under make that must be the venv's python, not the system's."""
    probe = tmp_path / "probe.mk"
    probe.write_text("which-python:\n\t@command -v python\n")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    out = subprocess.run(
        ["make", "-s", "-f", "Makefile", "-f", str(probe), "which-python"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    ).stdout.strip()
    assert out == str(ROOT / ".venv" / "bin" / "python")


def test_setup_refuses_a_new_venv_without_disk_space_in_one_line(tmp_path):
    """CI once died mid-install with ENOSPC; a new environment is refused up front instead, nothing created."""
    venv = tmp_path / "venv"
    proc = subprocess.run(
        ["make", "-s", "setup", f"VENV={venv}", "VENV_MIN_GB=100000000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode != 0 and not venv.exists()
    line = next(x for x in proc.stderr.splitlines() if x.startswith("error:"))
    assert "GB free on /" in line and "needs about 100000000 GB" in line
