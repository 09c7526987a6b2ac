"""Uploads keep their paths relative to the compose project directory; directories upload whole."""

from __future__ import annotations

import shutil
from pathlib import Path

from dropship import uploads
from dropship.remote import commands
from tests.unit.program import ROOT, run_program, stack_config
from tests.unit.test_settings import STAGING_SECRETS


def project(tmp_path: Path) -> Path:
    """A copy of the program with the shop example, plus a nested file and a built site directory."""
    shutil.copy(ROOT / "__main__.py", tmp_path)
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path)
    shutil.copytree(ROOT / "examples" / "shop", tmp_path / "examples" / "shop")
    shop = tmp_path / "examples" / "shop"
    (shop / "nginx").mkdir()
    (shop / "nginx" / "default.conf").write_text("server {}\n")
    shutil.rmtree(shop / "web" / "dist")  # replaced by a small one of known content
    (shop / "web" / "dist" / "assets").mkdir(parents=True)
    (shop / "web" / "dist" / "index.html").write_text("<h1>shop</h1>\n")
    (shop / "web" / "dist" / "assets" / "app.js").write_text("console.log(1)\n")
    return tmp_path


FILES = ("examples/shop/Caddyfile", "examples/shop/nginx/default.conf", "examples/shop/web/dist")


def test_host_paths_are_relative_to_the_first_compose_files_directory(tmp_path: Path) -> None:
    planned = uploads.plan(project(tmp_path), ("examples/shop/compose.yaml",), FILES)
    assert [(u.host_path, u.is_directory) for u in planned] == [
        ("compose.yaml", False),
        ("Caddyfile", False),
        ("nginx/default.conf", False),
        ("web/dist", True),
    ]
    assert [path for path, _ in planned[-1].files] == ["web/dist/assets/app.js", "web/dist/index.html"]


def test_a_directorys_digest_follows_its_files(tmp_path: Path) -> None:
    root = project(tmp_path)
    before = uploads.plan(root, ("examples/shop/compose.yaml",), FILES)[-1].digest
    (root / "examples/shop/web/dist/index.html").write_text("<h1>shop v2</h1>\n")
    changed = uploads.plan(root, ("examples/shop/compose.yaml",), FILES)[-1].digest
    (root / "examples/shop/web/dist/assets/app.js").unlink()
    removed = uploads.plan(root, ("examples/shop/compose.yaml",), FILES)[-1].digest
    assert len({before, changed, removed}) == 3


def test_outside_the_compose_directory_there_is_no_host_path() -> None:
    root = uploads.compose_root(("deploy/compose.yaml",))
    assert uploads.host_path("deploy/nginx/x.conf", root) == "nginx/x.conf"
    assert uploads.host_path("deploy/./a/../b", root) == "b"
    assert uploads.host_path("other/x.conf", root) is None
    assert uploads.host_path("deploy", root) == "."


def test_files_and_directories_upload_at_their_paths_under_mocks(tmp_path: Path) -> None:
    root = project(tmp_path)
    config = {**stack_config("staging"), "dropship:app.files": '["' + '", "'.join(FILES) + '"]'}
    run = run_program("staging", config, STAGING_SECRETS, project_dir=root)
    copies = {
        r.name: (r.inputs["remotePath"], r.inputs["source"]["path"])
        for r in run.of_type("command:remote:CopyToRemote")
        if not r.name.startswith("app-code-")  # the release's own code (test_stacks)
    }
    shop = root / "examples" / "shop"
    assert copies == {
        "app-file-compose.yaml": ("/srv/shop/incoming/compose.yaml", str(shop / "compose.yaml")),
        "app-file-Caddyfile": ("/srv/shop/incoming/Caddyfile", str(shop / "Caddyfile")),
        "app-file-nginx/default.conf": ("/srv/shop/incoming/nginx/default.conf", str(shop / "nginx" / "default.conf")),
        # a directory source lands at <remotePath>/<its name>
        "app-dir-web/dist": ("/srv/shop/incoming/web", str(shop / "web" / "dist")),
    }
    site = uploads.plan(root, ("examples/shop/compose.yaml",), FILES)[-1]
    emptied = run.named("app-dir-web/dist-empty")
    assert emptied.inputs["create"] == commands.empty_directory("/srv/shop/incoming/web/dist")
    assert site.digest in emptied.inputs["triggers"]
    assert any(d.endswith("::app-dir-web/dist-empty") for d in run.named("app-dir-web/dist").depends_on)
    release = run.named("app-release")
    assert any(d.endswith("::app-dir-web/dist") for d in release.depends_on)
    every_file = {p: c for u in uploads.plan(root, ("examples/shop/compose.yaml",), FILES) for p, c in u.files}
    assert f"--files-digest {commands.files_digest(every_file)}" in release.inputs["create"]
    assert "--compose-file compose.yaml --upload Caddyfile --upload nginx/default.conf --upload web/dist" in release.inputs["create"]
