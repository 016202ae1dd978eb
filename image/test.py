#!/usr/bin/env python3
"""The image check (part of e2e/test.sh): builds the image from a binary with image/build.sh,
then reads it back as a container runtime would, with nothing but the OCI layout: the config
runs as uid 65532 with the CCM as entrypoint, every file belongs to root and only /tmp is
writable by others, the entrypoint, run inside the image's own files (chroot) as 65532:65532,
prints the version Cargo.toml says, and `--push` to a local registry (go-containerregistry's)
stores this very image.

    python3 image/test.py [BINARY]    (default: the debug binary in $CARGO_TARGET_DIR)
"""

import gzip
import hashlib
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent


def blob(layout: pathlib.Path, digest: str) -> bytes:
    algorithm, hexdigest = digest.split(":", 1)
    data = (layout / "blobs" / algorithm / hexdigest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexdigest, f"blob {digest} does not match its digest"
    return data


def main() -> int:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else target / "debug" / "cloud-controller-manager"
    cargo = (REPO / "ccm" / "Cargo.toml").read_text()
    version = re.search(r'^version\s*=\s*"([^"]+)"', cargo, re.M).group(1)

    with tempfile.TemporaryDirectory() as tmp:
        # A registry to push to: go-containerregistry's in-memory one, on a free local port.
        registry_bin = pathlib.Path(tmp) / "registry"
        subprocess.run(["go", "build", "-o", str(registry_bin), "github.com/google/go-containerregistry/cmd/registry"],
                       cwd=REPO / "image" / "ocibuild", check=True)
        registry = subprocess.Popen([str(registry_bin), "-port", "0"], stderr=subprocess.PIPE, text=True)
        try:
            line = registry.stderr.readline()
            port = re.search(r"serving on port (\d+)", line)
            assert port, f"the registry did not start: {line}"
            pushed = check(binary, version, pathlib.Path(tmp), f"localhost:{port.group(1)}")
        finally:
            registry.kill()
            registry.wait()
        print(pushed)
    return 0


def check(binary: pathlib.Path, version: str, tmp: pathlib.Path, registry: str) -> str:
    out = tmp / "out"
    subprocess.run([str(REPO / "image" / "build.sh"), "--binary", str(binary), "--out", str(out),
                    "--tag", "cloud-controller-manager:test",
                    "--push", f"{registry}/cloud-controller-manager:test"], check=True, stdout=subprocess.DEVNULL)
    layout = out / "oci"
    assert json.loads((layout / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    index = json.loads((layout / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "test", entry
    manifest = json.loads(blob(layout, entry["digest"]))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json", manifest["mediaType"]
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    settings = config["config"]
    assert config["os"] == "linux" and config["architecture"] == "amd64", config
    assert settings["User"] == "65532:65532", settings
    assert settings["Entrypoint"] == ["/usr/local/bin/cloud-controller-manager"], settings
    assert "10258/tcp" in settings["ExposedPorts"], settings

    root = tmp / "root"
    root.mkdir()
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layout, layer["digest"])))) as t:
            for member in t.getmembers():
                assert member.uid == 0 and member.gid == 0, f"{member.name} is not root's"
                writable_by_others = member.mode & 0o002
                assert not writable_by_others or member.name.rstrip("/") == "tmp", f"{member.name} is world-writable"
            t.extractall(root, filter="fully_trusted")
    assert (root / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 0, "no CA certificates"
    assert "65532" in (root / "etc/passwd").read_text()

    # The docker/podman tarball names the tag.
    with tarfile.open(out / "cloud-controller-manager.tar") as t:
        docker_manifest = json.load(t.extractfile("manifest.json"))
    assert docker_manifest[0]["RepoTags"] == ["cloud-controller-manager:test"], docker_manifest

    run = ["chroot", "--userspec=65532:65532", str(root), *settings["Entrypoint"], "--version"]
    as_user = "as 65532:65532"
    if os.geteuid() != 0:
        # Unprivileged: in a user namespace, as its root (so not as 65532 then).
        run = ["unshare", "--user", "--map-root-user", "chroot", str(root), *settings["Entrypoint"], "--version"]
        as_user = "in a user namespace (not root here, so not as 65532)"
    done = subprocess.run(run, capture_output=True, text=True, env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert done.returncode == 0, f"the entrypoint failed in the image: {done.stderr}"
    assert done.stdout.strip() == f"cloud-controller-manager {version}", done.stdout
    size = sum(f.stat().st_size for f in (layout / "blobs" / "sha256").iterdir())

    # What the registry holds is this image.
    request = urllib.request.Request(f"http://{registry}/v2/cloud-controller-manager/manifests/test",
                                     headers={"Accept": manifest["mediaType"]})
    with urllib.request.urlopen(request, timeout=10) as answer:
        served = answer.headers["Docker-Content-Digest"]
    assert served == entry["digest"], f"the registry has {served}, the layout {entry['digest']}"
    return (f"image check passed: {done.stdout.strip()} runs in the image {as_user}; "
            f"{len(manifest['layers'])} layer, {size / 1e6:.1f} MB; pushed to a registry and read back")


if __name__ == "__main__":
    sys.exit(main())
