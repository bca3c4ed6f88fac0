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
    targets = ("setup", "reproduce", "test", "lint", "report", "docker-build", "docker-run", "clean")
    for target in targets + ("docker-base", "docker-test"):
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
    # VENV from the environment (the image sets VENV=/opt/venv) is the project's environment there.
    assert out == str(ROOT / os.environ.get("VENV", ".venv") / "bin" / "python")


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


PIP_SETTINGS = (
    "PIP_CERT",
    "PIP_CONFIG_FILE",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_CONSTRAINT",
)
TLS_SETTINGS = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")


def test_dockerfile_gets_pip_settings_as_build_secrets_only():
    """The host's CA bundle and pip config reach the pip steps as build secrets, never a layer or ENV."""
    ins = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    pip_runs = [arg for w, arg in ins if w == "RUN" and re.search(r"pip\"? install", arg)]
    assert len(pip_runs) >= 2, "the lock install and the project's editable install"
    for run in pip_runs:
        assert "--mount=type=secret,id=pip_cert" in run and "--mount=type=secret,id=pip_conf" in run, run
        assert "PIP_CERT=/run/secrets/pip_cert" in run and "PIP_CONFIG_FILE=/run/secrets/pip_conf" in run, run
    for w, arg in ins:
        if w in ("COPY", "ADD"):
            assert not re.search(r"\.(crt|pem|cer)\b|pip\.conf|/etc/(ssl|pip|xdg)|constraints|/opt/wheels", arg), arg
        if w in ("ENV", "ARG"):
            assert not any(k in arg for k in PIP_SETTINGS + TLS_SETTINGS), f"{w} {arg}"
        if w == "RUN":
            # a secret is read where it is mounted, never copied out of /run/secrets
            assert not re.search(r"(cp|mv|cat|tee|install)\b[^&;|]*/run/secrets", arg), arg
            assert "/run/secrets" not in arg or "--mount=type=secret" in arg, arg
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".venv-*"} <= set(ignored)


def test_dockerfile_takes_python311_from_the_ppa_on_ubuntu_else_from_the_base():
    ins = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    apt = next(arg for w, arg in ins if w == "RUN" and "apt-get install" in arg)
    assert '[ "$ID" = ubuntu ]' in apt and "add-apt-repository -y ppa:deadsnakes/ppa" in apt
    assert "apt-cache show python3.11" in apt  # other bases: their own python3.11, or a clear error
    assert "python3.11 python3.11-venv python3.11-dev" in apt


def _stub(path, body):
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


def test_build_script_passes_only_network_pip_settings_as_secrets(tmp_path):
    """docker/build_image.sh: the CA bundle and the http(s) index settings go in as secrets; file:// indexes,
    find-links and constraint files (host paths) are dropped."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    pip = _stub(
        tmp_path / "pip",
        "echo \"global.extra-index-url='file:///opt/pypi/simple https://mirror.example/simple'\"\n"
        "echo \"global.find-links='/opt/wheels'\"\n"
        "echo \"global.constraint='/etc/xdg/pip/constraints.txt'\"\n"
        "echo \"global.timeout='60'\"\n",
    )
    _stub(
        tmp_path / "docker",
        'echo "ARGS: $*"\n'
        'for a in "$@"; do case "$a" in id=pip_conf,src=*) echo "PIP_CONF:"; cat "${a#id=pip_conf,src=}";; esac; done\n',
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(ENGINE="docker", HEAVY="", PIP_BIN=str(pip), PIP_CERT=str(ca), PATH=f"{tmp_path}:{env['PATH']}")
    proc = subprocess.run(
        [str(ROOT / "docker/build_image.sh"), "-t", "t:1", "--base", "localhost/base"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    args = next(line for line in proc.stdout.splitlines() if line.startswith("ARGS: "))
    assert f"--secret id=pip_cert,src={ca}" in args and "--secret id=pip_conf,src=" in args
    assert "--build-arg BASE_IMAGE=localhost/base" in args and "-t t:1" in args
    conf = proc.stdout.split("PIP_CONF:", 1)[1]
    assert "extra-index-url = https://mirror.example/simple" in conf and "timeout = 60" in conf
    assert "file://" not in conf and "/opt/wheels" not in conf and "constraint" not in conf
    conf_src = re.search(r"id=pip_conf,src=(\S+)", args).group(1)
    assert not os.path.exists(conf_src), "the generated pip.conf outlives the build"


def test_make_docker_targets_call_the_scripts():
    def dry(*args: str) -> str:
        return subprocess.run(["make", "-n", *args], capture_output=True, text=True, cwd=ROOT, check=True).stdout

    assert "docker/test_image.sh --base localhost/debian-bookworm-base" in dry(
        "docker-test", "BASE_IMAGE=localhost/debian-bookworm-base"
    )
    assert "docker/build_image.sh -t aesthetic-llm:latest" in dry("docker-build")
    assert "docker/build_base.sh localhost/debian-bookworm-base" in dry("docker-base")
    for script in ("engine.sh", "build_base.sh", "build_image.sh", "test_image.sh"):
        subprocess.run(["bash", "-n", str(ROOT / "docker" / script)], check=True)
    test = (ROOT / "docker/test_image.sh").read_text()
    # the image is checked for copies of the host's pip config and CA certificates, then tested
    assert "sha256sum" in test and "host_only_lines" in test and "make VENV=/opt/venv test-fast" in test
    assert "--entrypoint bash" in test
