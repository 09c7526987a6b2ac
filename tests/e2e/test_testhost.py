"""The test host behaves like a fresh droplet: its own address and network, cloud-init's first
boot, apt busy at first, a data volume that outlives it. What the other modules rely on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from dev.harness import TestHost, sh, wait_until

VOLUME = "dropship-e2e-testhost-data"
FIRST = replace(TestHost.for_module(__name__), volume=VOLUME)
SECOND = TestHost.for_module(__name__, "2")


@pytest.fixture(scope="module")
def hosts(registry: None) -> Iterator[tuple[TestHost, TestHost]]:
    FIRST.stop()
    FIRST.remove_volume()
    with FIRST.fresh() as first, SECOND.fresh() as second:
        yield first, second
    FIRST.remove_volume()


def host_key(host: TestHost) -> str:
    """The Ed25519 host key that host's sshd presents at its own address, port 22."""
    lines = sh("ssh-keyscan", "-T", "5", "-t", "ed25519", host.address).stdout.split("\n")
    return next(line.split()[2] for line in lines if "ssh-ed25519" in line)


def test_each_host_answers_at_its_own_address_with_its_own_host_key(hosts: tuple[TestHost, TestHost]) -> None:
    first, second = hosts
    assert first.address != second.address
    assert host_key(first) != host_key(second)  # cloud-init made new keys at first boot
    assert first.ssh("root", "hostname").stdout.strip() == first.name
    assert second.ssh("root", "hostname").stdout.strip() == second.name


def test_cloud_init_ran_its_first_boot_from_the_nocloud_seed(hosts: tuple[TestHost, TestHost]) -> None:
    status = hosts[0].run("cloud-init status --wait --long").stdout
    assert "status: done" in status
    assert "DataSourceNoCloud" in status
    assert "errors: []" in status


def test_apt_was_busy_right_after_boot(hosts: tuple[TestHost, TestHost]) -> None:
    """Waits for the first-boot unit to have said it holds the lock (it runs beside boot, not before ssh)."""

    def journal() -> str:
        return hosts[0].run("journalctl -u testhost-first-boot-apt -o cat --no-pager").stdout

    wait_until(lambda: "holding /var/lib/apt/lists/lock for 5 s" in journal(), "the first-boot unit to hold apt's lists lock", 60, journal)


def test_inside_only_the_hosts_own_network(hosts: tuple[TestHost, TestHost]) -> None:
    links = [line.split(":")[1].strip() for line in hosts[0].run("ip -o link show").stdout.splitlines()]
    assert len(links) == 2 and links[0] == "lo", links  # loopback and pasta's interface, nothing of this machine's
    assert hosts[0].run("curl -fsS http://127.0.0.1:5000/v2/").returncode == 0  # the registry, forwarded


def test_the_data_volume_outlives_its_host(hosts: tuple[TestHost, TestHost]) -> None:
    device = f"/dev/disk/by-id/scsi-0DO_Volume_{VOLUME}"
    first = hosts[0]
    mount = f"mkdir -p /mnt/data && mount {device} /mnt/data"
    first.run(f"test -b {device} && {mount} && echo kept > /mnt/data/proof && umount /mnt/data")
    first.stop()
    first.start()  # a new host: new container, first boot again, the same volume attached
    assert first.run(f"{mount} && cat /mnt/data/proof && umount /mnt/data").stdout.strip() == "kept"
    assert first.run("blkid -o value -s TYPE " + device).stdout.strip() == "ext4"
