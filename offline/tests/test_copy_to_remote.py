"""command:remote:CopyToRemote through the plugin's gRPC interface, against a real sshd."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pulumi.runtime.proto import provider_pb2

from .conftest import COPY_TO_REMOTE, SSHServer, check, create, delete, diff, rpc_error, secret, update

import propvalues as pv  # isort: skip


def file_asset(path: Path) -> dict[str, Any]:
    return {pv.SIG_KEY: pv.ASSET_SIG, "path": str(path), "hash": hashlib.sha256(path.read_bytes()).hexdigest()}


def string_asset(text: str) -> dict[str, Any]:
    return {pv.SIG_KEY: pv.ASSET_SIG, "text": text, "hash": hashlib.sha256(text.encode()).hexdigest()}


def dir_archive(path: str, digest: str = "h1") -> dict[str, Any]:
    return {pv.SIG_KEY: pv.ARCHIVE_SIG, "path": path, "hash": digest}


def checked(provider: Any, sshd: SSHServer, source: Any, remote_path: Path | str) -> dict[str, Any]:
    news = {"connection": secret(sshd.connection()), "source": source, "remotePath": str(remote_path)}
    inputs, failures = check(provider, COPY_TO_REMOTE, "copy", news)
    assert failures == []
    return inputs


def make_tree(root: Path) -> Path:
    (root / "site" / "conf").mkdir(parents=True)
    (root / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (root / "site" / "conf" / "app.env").write_text("A=1\n")
    return root / "site"


def test_copies_a_file_creating_missing_parent_directories(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    source = tmp_path / "compose.yaml"
    source.write_text("services: {}\n")
    dest = tmp_path / "remote" / "a" / "b" / "compose.yaml"
    inputs = checked(provider, sshd, file_asset(source), dest)
    resource_id, outs = create(provider, COPY_TO_REMOTE, "copy", inputs)
    assert len(resource_id) == 8
    assert dest.read_text() == "services: {}\n"
    assert outs["remotePath"] == str(dest)
    assert pv.is_secret(outs["connection"])
    assert "stdout" not in outs


def test_a_file_into_an_existing_directory_keeps_its_name(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("A")
    (tmp_path / "into").mkdir()
    create(provider, COPY_TO_REMOTE, "copy", checked(provider, sshd, file_asset(source), tmp_path / "into"))
    assert (tmp_path / "into" / "a.txt").read_text() == "A"


def test_a_directory_is_copied_into_the_destination(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    site = make_tree(tmp_path / "local")
    dest = tmp_path / "remote" / "srv"
    create(provider, COPY_TO_REMOTE, "copy", checked(provider, sshd, dir_archive(str(site)), dest))
    assert (dest / "site" / "index.html").read_text() == "<h1>hi</h1>\n"
    assert (dest / "site" / "conf" / "app.env").read_text() == "A=1\n"
    # Copying again over the existing tree works (overwrites files).
    (site / "index.html").write_text("v2")
    create(provider, COPY_TO_REMOTE, "copy", checked(provider, sshd, dir_archive(str(site), "h2"), dest))
    assert (dest / "site" / "index.html").read_text() == "v2"


def test_a_directory_with_a_trailing_slash_copies_its_contents(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    site = make_tree(tmp_path / "local")
    dest = tmp_path / "remote" / "srv"
    create(provider, COPY_TO_REMOTE, "copy", checked(provider, sshd, dir_archive(f"{site}/"), dest))
    assert (dest / "index.html").exists() and (dest / "conf" / "app.env").exists()


def test_a_directory_onto_an_existing_file_fails(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    site = make_tree(tmp_path / "local")
    dest = tmp_path / "file"
    dest.write_text("x")
    inputs = checked(provider, sshd, dir_archive(str(site)), dest)
    error = rpc_error(lambda: create(provider, COPY_TO_REMOTE, "copy", inputs))
    assert error.details() == f"remote path {dest} exists but is not a directory"


def test_a_string_asset_is_written_to_the_remote_path(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    dest = tmp_path / "etc" / "app" / "settings.env"
    create(provider, COPY_TO_REMOTE, "copy", checked(provider, sshd, secret(string_asset("KEY=value\n")), dest))
    assert dest.read_text() == "KEY=value\n"


def test_preview_copies_nothing(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    dest = tmp_path / "never"
    resource_id, outs = create(provider, COPY_TO_REMOTE, "copy", checked(provider, sshd, string_asset("x"), dest), preview=True)
    assert resource_id == ""
    assert outs["remotePath"] == str(dest)
    assert not dest.exists()


def test_update_copies_only_when_the_content_or_path_changed(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    dest = tmp_path / "out.txt"
    olds = checked(provider, sshd, string_asset("one"), dest)
    create(provider, COPY_TO_REMOTE, "copy", olds)
    dest.unlink()

    # Only the connection changed: no copy.
    news = {**olds, "connection": secret(sshd.connection(perDialTimeout=5))}
    update(provider, COPY_TO_REMOTE, "copy", olds, news)
    assert not dest.exists()

    update(provider, COPY_TO_REMOTE, "copy", olds, {**olds, "source": string_asset("two")})
    assert dest.read_text() == "two"

    moved = tmp_path / "moved.txt"
    update(provider, COPY_TO_REMOTE, "copy", olds, {**olds, "remotePath": str(moved)})
    assert moved.read_text() == "one"


def test_diff_replaces_on_triggers_and_updates_on_source(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    olds = checked(provider, sshd, string_asset("one"), tmp_path / "x")
    assert diff(provider, COPY_TO_REMOTE, "copy", olds, olds).changes == provider_pb2.DiffResponse.DIFF_NONE
    source = diff(provider, COPY_TO_REMOTE, "copy", olds, {**olds, "source": string_asset("two")})
    assert list(source.diffs) == ["source"] and list(source.replaces) == []
    triggered = diff(provider, COPY_TO_REMOTE, "copy", olds, {**olds, "triggers": [1]})
    assert list(triggered.replaces) == ["triggers"]


def test_check_rejects_sources_that_cannot_be_copied(provider: Any, sshd: SSHServer) -> None:
    remote_asset = {pv.SIG_KEY: pv.ASSET_SIG, "uri": "https://example.test/x", "hash": "h"}
    news = {"connection": secret(sshd.connection()), "source": remote_asset, "remotePath": "/tmp/x"}
    _, failures = check(provider, COPY_TO_REMOTE, "copy", news)
    assert failures == [("asset", "asset must be a path-based file asset or a string asset")]
    _, failures = check(provider, COPY_TO_REMOTE, "copy", {"connection": secret(sshd.connection())})
    assert sorted(p for p, _ in failures) == ["remotePath", "source"]


def test_delete_does_nothing(provider: Any, tmp_path: Path) -> None:
    delete(provider, COPY_TO_REMOTE, "copy", {"connection": secret({"host": "nowhere.invalid"}), "remotePath": "/x"})
