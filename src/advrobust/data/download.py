"""Downloads of MNIST and CIFAR-10 from their canonical sources, verified and written atomically.

Each file is fetched to a temporary file in the destination folder
(:func:`advrobust.paths.atomic_path`), checked against its known size and SHA-256, ``fsync``-ed, and
only then renamed over the final name with ``os.replace`` (atomic on POSIX and Windows), so a final
name never holds a partial or unverified download; the temporary file is removed on any failure,
interruption included. A file already present with the right digest is not downloaded again. Mirrors
are tried in order; the digest, not the server, is what is trusted.

Digests and sizes (SHA-256 of the ``.gz`` / ``.tar.gz`` files as served):

* MNIST, from TensorFlow Datasets' ``url_checksums/mnist.txt`` (its ``cvdf-datasets`` mirror holds
  the same bytes as LeCun's site and torchvision's ``ossci-datasets`` mirror: same sizes and files).
* CIFAR-10 (python version), ``6d958be0…`` as published by torchvision's prototype datasets and by
  Keras-based loaders; its MD5 ``c58f30108f718f92721af3b95e74349a`` is torchvision's.

The CIFAR-10 archive is unpacked by :func:`safe_extract`, which refuses absolute paths, ``..``
components, links and device files, and writes regular files itself instead of calling
``extractall``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from advrobust.data import cifar
from advrobust.errors import ChecksumError, DataError
from advrobust.paths import atomic_path
from advrobust.progress import SILENT, Progress

Opener = Callable[[str], contextlib.AbstractContextManager[BinaryIO]]
CHUNK = 1 << 20  # bytes read and hashed at a time
TIMEOUT_S = 60.0  # seconds without data before a mirror counts as unreachable (urllib's socket timeout)


@dataclass(frozen=True)
class Resource:
    """One file to download: its name on disk, size in bytes, SHA-256, and the URLs to try in order."""

    filename: str
    size: int
    sha256: str
    urls: tuple[str, ...]


def _mnist(filename: str, size: int, sha256: str) -> Resource:
    mirrors = (
        "https://yann.lecun.com/exdb/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    )
    return Resource(filename, size, sha256, tuple(m + filename for m in mirrors))


SOURCES: dict[str, tuple[Resource, ...]] = {
    "mnist": (
        _mnist(
            "train-images-idx3-ubyte.gz", 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        _mnist(
            "train-labels-idx1-ubyte.gz", 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        _mnist(
            "t10k-images-idx3-ubyte.gz", 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        _mnist(
            "t10k-labels-idx1-ubyte.gz", 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    ),
    "cifar10": (
        Resource(
            "cifar-10-python.tar.gz",
            170498071,
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        ),
    ),
}
CIFAR_FILES = (cifar.META, *cifar.FILES["train"], *cifar.FILES["test"])


def _urlopen(url: str) -> contextlib.AbstractContextManager[BinaryIO]:
    return urllib.request.urlopen(url, timeout=TIMEOUT_S)  # noqa: S310 (https/file URLs of SOURCES)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_from(url: str, resource: Resource, final: Path, opener: Opener, progress: Progress) -> None:
    with atomic_path(final) as tmp:  # fsync + os.replace on success, tmp removed on any failure
        digest, size = hashlib.sha256(), 0
        with tmp.open("wb") as out, opener(url) as response, progress.task(
            f"download {resource.filename}", total=resource.size
        ) as task:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                task.advance(len(chunk))
        if size != resource.size or digest.hexdigest() != resource.sha256:
            raise ChecksumError(
                f"{resource.filename} from {url}: got {size} bytes with SHA-256 {digest.hexdigest()}, "
                f"expected {resource.size} bytes with {resource.sha256}; the download is corrupt or the "
                "server sent another file: try again later"
            )


def fetch(resource: Resource, folder: Path, *, opener: Opener | None = None, progress: Progress = SILENT) -> Path:
    """``folder/resource.filename``, downloaded unless already there with the right SHA-256.

    Raises :class:`ChecksumError` when a server sent bytes with the wrong digest (no file is left
    under the final name), :class:`DataError` when no URL could be read.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / resource.filename
    if final.is_file() and final.stat().st_size == resource.size and sha256_of(final) == resource.sha256:
        return final
    failures: list[str] = []
    checksum_failed = False
    for url in resource.urls:
        try:
            _fetch_from(url, resource, final, opener or _urlopen, progress)
            return final
        except ChecksumError as exc:
            checksum_failed = True
            failures.append(str(exc))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            failures.append(f"{url}: {exc}")
    error = ChecksumError if checksum_failed else DataError
    raise error(
        f"could not download {resource.filename} ({'; '.join(failures)}); "
        f"check the network, or copy the file into {folder}"
    )


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")) or ":" in member.name:
        fault = "an absolute path"
    elif ".." in name.parts or "\\" in member.name:
        fault = "a '..' or '\\' in its path"
    elif not (member.isfile() or member.isdir()):
        fault = "a link or special file"
    else:
        return
    raise DataError(f"{archive}: refusing to extract member {member.name!r}: {fault}")


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack the ``.tar.gz`` ``archive`` into ``dest``: regular files and folders only, inside ``dest``.

    Every member is checked before anything is written, so an archive with one unsafe member writes
    nothing.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            for member in members:
                target = dest.joinpath(*PurePosixPath(member.name).parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise DataError(f"{archive}: member {member.name!r} has no data")
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: corrupt archive ({exc}); delete it and download it again") from exc


def _unpack_cifar(archive: Path, root: Path) -> Path:
    folder = root / cifar.FOLDER
    if all((folder / name).is_file() for name in CIFAR_FILES):
        return folder
    staging = Path(tempfile.mkdtemp(prefix=".cifar-10-extract.", dir=root))
    try:
        safe_extract(archive, staging)
        unpacked = staging / cifar.FOLDER
        missing = [name for name in CIFAR_FILES if not (unpacked / name).is_file()]
        if missing:
            raise DataError(f"{archive}: archive lacks {cifar.FOLDER}/{', '.join(missing)}; delete it and retry")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(unpacked, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def is_present(name: str, root: Path) -> bool:
    """Whether every file the loader of ``name`` reads is in ``root`` (MNIST raw or ``.gz``)."""
    if name == "cifar10":
        return any(all((folder / f).is_file() for f in CIFAR_FILES) for folder in (root / cifar.FOLDER, root))
    stems = [r.filename.removesuffix(".gz") for r in SOURCES[name]]
    return all((root / stem).is_file() or (root / f"{stem}.gz").is_file() for stem in stems)


def download_dataset(
    name: str, root: Path, *, opener: Opener | None = None, progress: Progress = SILENT
) -> list[Path]:
    """Download the data set ``name`` (``"mnist"`` or ``"cifar10"``) into ``root``; the files written.

    MNIST: the four ``.gz`` IDX files in ``root``. CIFAR-10: ``cifar-10-python.tar.gz`` in ``root``
    and its ``cifar-10-batches-py`` folder unpacked beside it. ``opener(url)`` returns a readable
    binary stream (default: :func:`urllib.request.urlopen`, which also reads ``file://`` URLs).
    """
    if name not in SOURCES:
        raise DataError(f"data set {name!r} cannot be downloaded; downloadable: {', '.join(SOURCES)}")
    files = [fetch(resource, root, opener=opener, progress=progress) for resource in SOURCES[name]]
    if name == "cifar10":
        files.append(_unpack_cifar(files[0], root))
    return files
