"""The stack's data volume: mounted before Docker, Docker's named volumes on it, and the app's data
still there when the host is replaced by a new one that gets the same volume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest

from dev.harness import Project, TestHost

VOLUME = "dropship-e2e-data-volume-data"
DEVICE = f"/dev/disk/by-id/scsi-0DO_Volume_{VOLUME}"
HOST = replace(TestHost.for_module(__name__), volume=VOLUME)
SECRETS = {"env.APP_SECRET": "volume-secret"}


@pytest.fixture(scope="module")
def host(registry: None) -> Iterator[TestHost]:
    HOST.stop()
    HOST.remove_volume()
    with HOST.fresh() as test_host:
        yield test_host
    HOST.remove_volume()


@pytest.fixture(scope="module")
def project(host: TestHost, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("data-volume"), bin_dir)
    settings = {
        "existingHost.volumeDevice": DEVICE,
        "existingHost.volumeMountPath": "/mnt/data",
        "existingHost.id": "first",
        "existingHost.hostnames": '["shop.test"]',
        "app.postDeploy": json.dumps(['echo "$DROPSHIP_HOSTNAMES|$DROPSHIP_DATA_DIR" > seen']),
    }
    project.init_local(host, settings, SECRETS)
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def write_row(host: TestHost, row: str) -> None:
    host.ssh("deploy", f"docker exec example-web-1 sh -c 'echo {row} >> /data/rows'")


def rows(host: TestHost) -> list[str]:
    return host.ssh("deploy", "docker exec example-web-1 cat /data/rows").stdout.split()


def test_the_volume_is_mounted_before_docker_and_holds_its_named_volumes(project: Project, host: TestHost) -> None:
    project.up()
    assert host.run("findmnt -n -o SOURCE,FSTYPE /mnt/data").stdout.split() == [host.run(f"readlink -f {DEVICE}").stdout.strip(), "ext4"]
    fstab = host.run("grep 'dropship data volume' /etc/fstab").stdout.splitlines()
    assert fstab[0].split()[:4] == [DEVICE, "/mnt/data", "ext4", "defaults,nofail,discard,noatime"]
    assert host.run("findmnt -n -o TARGET /var/lib/docker/volumes").stdout.strip() == "/var/lib/docker/volumes"
    assert host.run("test -d /mnt/data/docker-volumes/example_data/_data").returncode == 0
    # Docker waits for the mount at boot: the drop-in is part of its unit
    assert "/var/lib/docker/volumes" in host.run("systemctl show -p RequiresMountsFor docker.service").stdout


def test_the_hooks_and_compose_receive_the_hostnames_and_the_data_directory(host: TestHost) -> None:
    assert host.run("cat /srv/example/seen").stdout == "shop.test|/mnt/data\n"


def test_rows_survive_a_new_host_that_gets_the_same_volume(project: Project, host: TestHost) -> None:
    write_row(host, "row-1")
    write_row(host, "row-2")
    host.stop()  # the droplet is destroyed; its volume is kept
    host.start()  # a new droplet at the same address, the volume attached again
    assert host.run("ls /var/lib/docker 2>/dev/null | wc -l").stdout.strip() == "0"  # nothing of the old host
    project.set("existingHost.id", "second")
    project.up()
    assert rows(host) == ["row-1", "row-2"]
    changes = project.last_update_changes()
    assert changes.get("update", 0) >= 1 and changes.get("create", 0) == 0


def test_a_second_up_changes_nothing(project: Project) -> None:
    project.up()
    assert set(project.last_update_changes()) == {"same"}
