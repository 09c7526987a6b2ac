"""mount-volume.sh on a real loop device, in a mount namespace of the test's own (nothing stays mounted here)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropship.remote import commands

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for loop devices and mounts"),
]


@pytest.fixture
def device(tmp_path: Path) -> Iterator[str]:
    image = tmp_path / "volume.img"
    with image.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield loop
    finally:
        subprocess.run(["losetup", "--detach", loop], check=False)


def mount_volume(tmp_path: Path, device: str, *, then: str = "", wait: int = 4) -> subprocess.CompletedProcess[str]:
    """Runs the script as the mount step does, then `then`, inside a private mount namespace."""
    env = {
        **os.environ,
        "DROPSHIP_FSTAB": str(tmp_path / "fstab"),
        "DROPSHIP_DOCKER_VOLUMES": str(tmp_path / "docker-volumes"),
        "DROPSHIP_UNIT_DIR": str(tmp_path / "units"),
        "DROPSHIP_DEVICE_WAIT": str(wait),
    }
    script = commands.script_text("mount-volume.sh")
    inner = f"bash -c {_quote(script)} mount-volume.sh {device} {tmp_path}/data && {then or 'true'}"
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", inner], capture_output=True, text=True, env=env, timeout=120
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_blank_volume_is_made_ext4_mounted_and_holds_dockers_named_volumes(tmp_path: Path, device: str) -> None:
    result = mount_volume(
        tmp_path,
        device,
        then=f"findmnt -n -o FSTYPE {tmp_path}/data && echo kept >{tmp_path}/docker-volumes/v && cat {tmp_path}/data/docker-volumes/v",
    )
    assert result.returncode == 0, result.stderr
    assert f"formatting blank volume {device} as ext4" in result.stdout
    assert result.stdout.splitlines()[-2:] == ["ext4", "kept"]
    assert (tmp_path / "fstab").read_text().splitlines() == [
        f"{device} {tmp_path}/data ext4 defaults,nofail,discard,noatime 0 2 # dropship data volume",
        f"{tmp_path}/data/docker-volumes {tmp_path}/docker-volumes none bind,nofail,x-systemd.requires-mounts-for={tmp_path}/data 0 0"
        " # dropship data volume",
    ]
    dropin = tmp_path / "units" / "docker.service.d" / "dropship-volume.conf"
    assert dropin.read_text() == f"[Unit]\nRequiresMountsFor={tmp_path}/docker-volumes\n"


def test_a_second_run_keeps_the_data_and_fstab_has_each_line_once(tmp_path: Path, device: str) -> None:
    (tmp_path / "fstab").write_text("UUID=1234 / ext4 defaults 0 1\n")
    assert mount_volume(tmp_path, device, then=f"echo rows >{tmp_path}/data/db").returncode == 0
    again = mount_volume(tmp_path, device, then=f"cat {tmp_path}/data/db")
    assert again.returncode == 0, again.stderr
    assert "formatting" not in again.stdout
    assert again.stdout.splitlines()[-1] == "rows"
    lines = (tmp_path / "fstab").read_text().splitlines()
    assert lines[0] == "UUID=1234 / ext4 defaults 0 1"
    assert len(lines) == 3


def test_named_volumes_docker_made_before_the_volume_move_onto_it(tmp_path: Path, device: str) -> None:
    (tmp_path / "docker-volumes" / "shop_db").mkdir(parents=True)
    (tmp_path / "docker-volumes" / "shop_db" / "row").write_text("1")
    result = mount_volume(tmp_path, device, then=f"cat {tmp_path}/data/docker-volumes/shop_db/row")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "1"


def test_another_file_system_is_refused(tmp_path: Path, device: str) -> None:
    subprocess.run(["mkswap", device], capture_output=True, check=True)
    result = mount_volume(tmp_path, device)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"dropship: {device} holds a swap file system; dropship mounts ext4 volumes only (DigitalOcean: initial_filesystem_type ext4)"
    )
    assert not (tmp_path / "fstab").exists()


def test_a_volume_that_never_appears_fails_with_its_path(tmp_path: Path) -> None:
    result = mount_volume(tmp_path, "/dev/disk/by-id/scsi-0DO_Volume_missing", wait=2)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "dropship: no block device at /dev/disk/by-id/scsi-0DO_Volume_missing after 2s: is the volume attached to this server?"
    )
