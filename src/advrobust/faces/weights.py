"""The published face models: obtained with npm (or from a copy the user has), verified, converted once.

    download_faces()                         # npm pack @vladmandic/face-api@1.7.15, verify, convert
    download_faces(source="face-api.tgz")    # or a tarball / unpacked folder already on disk
    tensors, meta = load_weights("face_recognition")

The MIT-licensed npm package ``@vladmandic/face-api`` 1.7.15 ships the models in TensorFlow.js
format (``model/*-weights_manifest.json`` + ``.bin``) and six group photos (``demo/sample1.jpg`` …
``sample6.jpg``). Every file used is checked against the size and SHA-256 below before it is read;
the models are converted to PyTorch layout and written as safetensors files (raw tensors, nothing
executable) with their provenance in the metadata, under ``<cache>/faces/``; the photos are copied
beside them as the built-in face data.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from advrobust.data.download import safe_extract, sha256_of
from advrobust.errors import ChecksumError, DataError
from advrobust.models.tfjs import read_tfjs, to_torch_layout
from advrobust.paths import atomic_path, cache_dir

PACKAGE = "@vladmandic/face-api"
VERSION = "1.7.15"
NPM_TIMEOUT_S = 600.0

# path inside the package -> (size in bytes, SHA-256), as published in version 1.7.15
FILES: dict[str, tuple[int, str]] = {
    "model/face_recognition_model-weights_manifest.json": (
        19615, "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b"
    ),
    "model/face_recognition_model.bin": (6444032, "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"),
    "model/tiny_face_detector_model-weights_manifest.json": (
        3219, "5d1af4849ac48d5b985f4a9b16010c512353ddd6fcc63d50fd0bc9e9e64296e5"
    ),
    "model/tiny_face_detector_model.bin": (193321, "b7503ce7df31039b1c43316a9b865cab6a70dd748cc602d3fa28b551503c3871"),
    "model/face_landmark_68_model-weights_manifest.json": (
        8485, "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9"
    ),
    "model/face_landmark_68_model.bin": (356840, "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b"),
    "demo/sample1.jpg": (144516, "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51"),
    "demo/sample2.jpg": (181758, "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691"),
    "demo/sample3.jpg": (221049, "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936"),
    "demo/sample4.jpg": (210824, "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc"),
    "demo/sample5.jpg": (166400, "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938"),
    "demo/sample6.jpg": (302445, "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87"),
}
# converted model name -> the package's TF.js model name
MODELS = {
    "face_recognition": "face_recognition_model",
    "tiny_face_detector": "tiny_face_detector_model",
    "face_landmark_68": "face_landmark_68_model",
}
DEMO_PHOTOS = tuple(f"sample{i}.jpg" for i in range(1, 7))


def faces_dir() -> Path:
    """Where the converted models and the demo photos live: ``<cache>/faces``."""
    return cache_dir() / "faces"


def weights_path(name: str, folder: Path | None = None) -> Path:
    return (folder or faces_dir()) / f"{name}.safetensors"


def demo_photo_paths(folder: Path | None = None) -> list[Path]:
    """The six demo photos (after :func:`download_faces`)."""
    return [(folder or faces_dir()) / "demo" / name for name in DEMO_PHOTOS]


def is_available(folder: Path | None = None) -> bool:
    """Whether the converted models and demo photos are in the cache."""
    paths = [weights_path(name, folder) for name in MODELS] + demo_photo_paths(folder)
    return all(path.is_file() for path in paths)


def npm_pack(workdir: Path, timeout_s: float = NPM_TIMEOUT_S) -> Path:
    """``npm pack @vladmandic/face-api@1.7.15`` in ``workdir``; the tarball it wrote."""
    try:
        result = subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            ["npm", "pack", f"{PACKAGE}@{VERSION}"],  # noqa: S607 (npm found on PATH)
            cwd=workdir, capture_output=True, text=True, timeout=timeout_s, check=False,
        )
    except FileNotFoundError as exc:
        raise DataError(
            "npm not found: install Node.js (which provides npm), or fetch the package elsewhere with "
            f"`npm pack {PACKAGE}@{VERSION}` and pass the tarball with --from PATH"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise DataError(f"`npm pack {PACKAGE}@{VERSION}` took over {timeout_s:.0f} s; check the network") from exc
    tarballs = sorted(workdir.glob("*.tgz"))
    if result.returncode != 0 or not tarballs:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"`npm pack {PACKAGE}@{VERSION}` failed ({detail}); check the network or use --from PATH")
    return tarballs[0]


def package_root(source: Path, staging: Path) -> Path:
    """The package folder (the one holding ``model/``) of a tarball or an unpacked folder."""
    source = source.expanduser()
    if source.is_file():
        safe_extract(source, staging)
        source = staging
    elif not source.is_dir():
        raise DataError(f"{source}: no such file or folder; pass the face-api tarball or its unpacked folder")
    for candidate in (source, source / "package"):
        if (candidate / "model").is_dir():
            return candidate
    raise DataError(f"{source}: no model/ folder inside; pass the {PACKAGE} {VERSION} tarball or its package folder")


def verify_package(root: Path) -> None:
    """Check every file of :data:`FILES` in the package folder ``root``: present, right size, right SHA-256."""
    for relative, (size, sha256) in FILES.items():
        path = root / relative
        if not path.is_file():
            raise DataError(f"{path}: missing from the package; is this {PACKAGE} {VERSION}?")
        actual = path.stat().st_size
        if actual < size:
            raise ChecksumError(f"{path}: truncated ({actual} of {size} bytes); download the package again")
        digest = sha256_of(path)
        if actual != size or digest != sha256:
            raise ChecksumError(
                f"{path}: SHA-256 {digest} ({actual} bytes), expected {sha256} ({size} bytes); "
                f"this is not the file of {PACKAGE} {VERSION}: download the package again"
            )


def convert_model(root: Path, name: str, dest: Path) -> Path:
    """Convert the verified TF.js model ``MODELS[name]`` under ``root`` to ``dest`` (safetensors, PyTorch layout)."""
    tfjs_name = MODELS[name]
    tensors = read_tfjs(root / "model" / f"{tfjs_name}-weights_manifest.json")
    converted = {key.replace("/", "."): to_torch_layout(key, value) for key, value in tensors.items()}
    bin_sha256 = FILES[f"model/{tfjs_name}.bin"][1]
    metadata = {
        "format": "advrobust.faces", "model": name, "source": f"npm {PACKAGE}@{VERSION} model/{tfjs_name}",
        "source_sha256": bin_sha256, "license": "MIT",
    }
    with atomic_path(dest) as tmp:
        save_file(converted, str(tmp), metadata=metadata)
    return dest


def install_package(root: Path, folder: Path) -> list[Path]:
    """Verify the package folder ``root`` and install its models and photos into ``folder``."""
    verify_package(root)
    written = [convert_model(root, name, weights_path(name, folder)) for name in MODELS]
    for photo, target in zip(DEMO_PHOTOS, demo_photo_paths(folder), strict=True):
        with atomic_path(target) as tmp:
            shutil.copyfile(root / "demo" / photo, tmp)
        written.append(target)
    return written


def download_faces(source: str | Path | None = None, folder: Path | None = None) -> list[Path]:
    """Obtain (``npm pack``, or ``source``: a tarball or folder), verify and install the face models.

    Returns the files written under ``folder`` (default :func:`faces_dir`). Raises
    :class:`~advrobust.errors.DataError` for a missing npm, a failed download or a package without
    the files, :class:`~advrobust.errors.ChecksumError` for a truncated or different file.
    """
    folder = folder or faces_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".face-api.", dir=folder) as work:
        staging = Path(work) / "unpacked"
        staging.mkdir()
        tarball = Path(source) if source is not None else npm_pack(Path(work))
        return install_package(package_root(tarball, staging), folder)


def load_weights(name: str, folder: Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The converted tensors of model ``name`` (see :data:`MODELS`) and their metadata."""
    if name not in MODELS:
        raise DataError(f"unknown face model {name!r}; known: {', '.join(MODELS)}")
    path = weights_path(name, folder)
    if not path.is_file():
        raise DataError(f"face model {name!r} not found at {path}: run `advrobust data download faces`")
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open API)
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); run `advrobust data download faces` again") from exc
    if metadata.get("format") != "advrobust.faces" or metadata.get("model") != name:
        raise DataError(f"{path}: not a converted {name!r} face model; run `advrobust data download faces` again")
    return tensors, metadata
