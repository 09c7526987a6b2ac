"""write-env.sh: the .env from stdin, mode 600 from the start, replaced atomically, never printed."""

from __future__ import annotations

import stat

from dropship.remote import commands
from tests.host.conftest import Host

CONTENT = "A='1'\nB=\"two words $$ \\\\ \"\nSECRET='canary-host-7d1f'\n"


def test_writes_stdin_exactly_with_mode_600(host: Host) -> None:
    result = host.run(commands.write_env(str(host.app_dir)), stdin=CONTENT)
    assert result.returncode == 0, result.stderr
    env = host.app_dir / "incoming" / ".env"
    assert env.read_text() == CONTENT
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "canary-host-7d1f" not in result.stdout + result.stderr
    assert result.stdout.strip() == f"wrote {host.app_dir}/incoming/.env (3 variables)"


def test_replaces_an_old_env_and_leaves_no_temp_file(host: Host) -> None:
    env = host.app_dir / "incoming" / ".env"
    env.write_text("OLD='1'\n")
    env.chmod(0o644)
    assert host.run(commands.write_env(str(host.app_dir)), stdin="NEW='2'\n").returncode == 0
    assert env.read_text() == "NEW='2'\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert sorted(p.name for p in env.parent.iterdir()) == [".env", "compose.yaml"]


def test_creates_the_directory_it_writes_to(host: Host) -> None:
    target = host.app_dir.parent / "new-app"
    assert host.run(commands.write_env(str(target)), stdin=CONTENT).returncode == 0
    assert (target / "incoming" / ".env").read_text() == CONTENT
