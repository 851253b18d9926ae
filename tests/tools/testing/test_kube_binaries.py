"""How the tests find the Kubernetes binaries: KUBE_BIN_DIR, the workplace's shared/kube, or the
official release downloaded with its published checksums (here from a loopback HTTP server)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.pins import KUBERNETES_TEST_RELEASE
from tools.testing import kube_binaries

STAND_IN = b"#!/bin/sh\necho Kubernetes v1.32.4\n"


def _stand_ins(directory: Path, names: tuple[str, ...] = kube_binaries.BINARIES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(STAND_IN)
        (directory / name).chmod(0o755)
    return directory


@contextlib.contextmanager
def release_server(root: Path) -> Iterator[str]:
    """dl.k8s.io's layout (<release>/bin/linux/amd64/<binary>[.sha256]) served from `root` on loopback."""
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _publish(root: Path, release: str, corrupt: str | None = None) -> None:
    directory = root / release / "bin" / "linux" / "amd64"
    directory.mkdir(parents=True)
    for name in kube_binaries.BINARIES:
        (directory / name).write_bytes(STAND_IN)
        digest = hashlib.sha256(STAND_IN if name != corrupt else b"something else").hexdigest()
        (directory / f"{name}.sha256").write_text(digest)


def test_kube_bin_dir_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBE_BIN_DIR", str(_stand_ins(tmp_path / "bin")))
    assert kube_binaries.find() == tmp_path / "bin"


def test_an_incomplete_kube_bin_dir_is_one_line_naming_what_lacks(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("KUBE_BIN_DIR", str(_stand_ins(tmp_path / "bin", kube_binaries.BINARIES[:3])))
    lacks = r"^KUBE_BIN_DIR=\S+ lacks executable kubelet, kube-proxy$"
    with pytest.raises(kube_binaries.KubeBinariesError, match=lacks):
        kube_binaries.find()


def test_the_shared_copy_is_found_from_a_clone_at_any_depth(tmp_path: Path) -> None:
    script = tmp_path / "shared" / "kube" / "unpack"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert kube_binaries.shared_unpack_script(tmp_path / "ci" / "clone" / "main") == script
    assert kube_binaries.shared_unpack_script(tmp_path.parent / "elsewhere" / "main") != script


def test_the_release_is_downloaded_and_checked_against_its_published_checksums(tmp_path: Path) -> None:
    _publish(tmp_path / "site", KUBERNETES_TEST_RELEASE)
    with release_server(tmp_path / "site") as url:
        directory = kube_binaries.download(base_url=url, target=tmp_path / "cache")
    assert sorted(p.name for p in directory.iterdir()) == sorted(kube_binaries.BINARIES)
    assert (directory / "kubelet").read_bytes() == STAND_IN


def test_a_binary_whose_checksum_does_not_match_is_refused_and_not_kept(tmp_path: Path) -> None:
    _publish(tmp_path / "site", KUBERNETES_TEST_RELEASE, corrupt="kube-scheduler")
    with release_server(tmp_path / "site") as url, \
            pytest.raises(kube_binaries.KubeBinariesError, match=r"kube-scheduler: sha256 [0-9a-f]{64} does not match"):
        kube_binaries.download(base_url=url, target=tmp_path / "cache")
    assert not (tmp_path / "cache" / "kube-scheduler").exists()


def test_with_nothing_to_use_the_error_is_one_line_saying_what_was_tried(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    monkeypatch.delenv("KUBE_BIN_DIR", raising=False)
    monkeypatch.setattr(kube_binaries, "PROJECT_DIR", tmp_path / "nowhere" / "main")
    monkeypatch.setenv("KUBE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KUBE_RELEASE_URL", "http://127.0.0.1:9")  # the discard port: nothing answers
    with pytest.raises(kube_binaries.KubeBinariesError) as failed:
        kube_binaries.find()
    message = str(failed.value)
    assert "\n" not in message and message.startswith("no Kubernetes binaries: KUBE_BIN_DIR is not set;")
    assert "no shared/kube/unpack above" in message and "downloading http://127.0.0.1:9/" in message


@pytest.mark.real
def test_this_machine_has_the_binaries_of_the_pinned_minor() -> None:
    directory = kube_binaries.find()
    assert kube_binaries.version(directory / "kube-apiserver").startswith("Kubernetes v1.32")
