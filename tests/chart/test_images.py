"""The images the chart deploys are the ones the Dockerfile and ``make images`` build: the CUDA
variants the Ray GPU workers run take torch, at the project's pin, from an index that carries
that version (PyPI), and digests pin any image instead of its tag."""

from __future__ import annotations

import re
import subprocess

import pytest

from .rendering import CHART, REPO, pods, render

GPU = CHART / "ci" / "gpu-8-values.yaml"
IMAGES = ("storage", "inference", "scoring", "rendering", "tracking", "training", "web")


def _make_variable(name: str) -> list[str]:
    match = re.search(rf"^{name} := (.+)$", (REPO / "Makefile").read_text(), re.M)
    assert match, name
    return match.group(1).split()


def _containers(documents: list[dict]):
    for _owner, spec in pods(documents):
        yield from spec["containers"]


def test_the_cuda_variant_takes_the_pinned_torch_from_an_index_that_has_it():
    dockerfile = (REPO / "Dockerfile").read_text()
    pinned = re.search(r"^torch==([\d.]+)$", (REPO / "constraints.txt").read_text(), re.M).group(1)
    assert re.search(rf"^ARG TORCH_VERSION={re.escape(pinned)}$", dockerfile, re.M)
    assert f"torch=={pinned}" in (REPO / "Makefile").read_text()
    # PyTorch's cuXYZ indexes carry only some versions (none had 2.13 when a build needed it);
    # PyPI carries every release, and its Linux x86_64 wheel is the CUDA build.
    assert not re.search(r"download\.pytorch\.org/whl/cu\d+", dockerfile)
    assert re.search(r'TORCH_VARIANT}" = cuda \]; then index=https://pypi\.org/simple', dockerfile)
    assert '--index-url "${index}"' in dockerfile and '"torch==${TORCH_VERSION}"' in dockerfile


def test_make_images_builds_every_image_the_chart_deploys(helm):
    documents = render(helm, GPU)
    deployed = {c["image"].rsplit("/", 1)[1] for c in _containers(documents)}
    built = {f"{s}:0.1.0" for s in _make_variable("SERVICES")} | {
        f"{s}:0.1.0-cuda" for s in _make_variable("GPU_SERVICES")
    }
    assert deployed == built == {f"{s}:0.1.0" for s in IMAGES} | {"inference:0.1.0-cuda", "training:0.1.0-cuda"}


def test_digests_pin_every_image_instead_of_its_tag(helm):
    digests = {name: "sha256:" + f"{i:x}" * 64 for i, name in enumerate([*IMAGES, "inference-cuda", "training-cuda"])}
    sets = [f"image.digests.{name}={digest}" for name, digest in digests.items()]
    images = {c["image"] for c in _containers(render(helm, GPU, *sets))}
    assert images == {
        f"registry.example.com/atlasloop/{name.removesuffix('-cuda')}@{digest}" for name, digest in digests.items()
    }
    with pytest.raises(subprocess.CalledProcessError) as refused:
        render(helm, GPU, "image.digests.storage=latest")
    assert "digests" in refused.value.stderr
