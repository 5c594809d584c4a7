"""Dense labels users bring: PNG label masks (segmentation) and COCO-style JSON boxes (detection).

**Segmentation** — a folder pair ``root/images/`` and ``root/masks/``: each image ``name.png`` (or
``.jpg``) has a mask ``masks/name.png`` of the same size, an 8-bit grayscale or palette PNG whose
pixel values are the class ids (255: ignore, the Pascal VOC convention). Class names come from an
optional ``root/classes.txt`` (one per line, the first the background); without it the classes are
``0..max`` of the masks. A missing mask, a size mismatch or a label outside the classes is a one-line
:class:`~advrobust.errors.DataError`.

**Detection** — a COCO-style JSON file (Lin et al. 2014, the "instances" format): ``images``
(``id``, ``file_name``, ``width``, ``height``), ``annotations`` (``image_id``, ``bbox`` as
``[x, y, width, height]`` in pixels, ``category_id``) and ``categories`` (``id``, ``name``). Category
ids are mapped in sorted order to ``1..K`` (0 is the background). A box outside its image, an unknown
category or image id, or a file whose size differs from the JSON is a one-line error.

Images are read as :mod:`advrobust.data.folder` reads them (8-bit grayscale or RGB, one size for all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advrobust.data.dataset import images_to_tensor
from advrobust.data.folder import EXTENSIONS, read_image
from advrobust.data.scenes import SceneDataset, pack
from advrobust.errors import DataError

IGNORE = 255


def _same_size(images: list[np.ndarray], paths: list[Path]) -> np.ndarray:
    for image, path in zip(images, paths, strict=True):
        if image.shape != images[0].shape:
            raise DataError(
                f"{path}: size {image.shape[1]}×{image.shape[0]} differs from {paths[0]} "
                f"({images[0].shape[1]}×{images[0].shape[0]}): all images must have one size and mode"
            )
    return np.stack(images)


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as mask:
            if mask.mode not in ("L", "P"):
                raise DataError(f"{path}: masks must be 8-bit grayscale or palette PNG of class ids, not {mask.mode}")
            return np.asarray(mask)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable PNG mask ({exc})") from exc


def load_mask_folder(root: str | Path) -> SceneDataset:
    """Images and PNG label masks from ``root/images`` and ``root/masks`` (see the module docstring)."""
    root = Path(root).expanduser()
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DataError(f"{root} must hold two folders, images/ and masks/ (one PNG mask per image, same name)")
    paths = sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not paths:
        raise DataError(f"{images_dir} holds no .png/.jpg/.jpeg images")
    images, masks = [], []
    for path in paths:
        mask_path = masks_dir / f"{path.stem}.png"
        if not mask_path.is_file():
            raise DataError(f"{path.name} has no mask: expected {mask_path}")
        image, mask = read_image(path), _read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{mask_path}: mask is {mask.shape[1]}×{mask.shape[0]} but its image {path.name} is "
                f"{image.shape[1]}×{image.shape[0]}: a mask must match its image's size"
            )
        images.append(image)
        masks.append(mask)
    classes_file = root / "classes.txt"
    labels = np.stack(masks).astype(np.int64)
    seen = labels[labels != IGNORE]
    if classes_file.is_file():
        classes = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
        if seen.size and int(seen.max()) >= len(classes):
            where = paths[int(np.flatnonzero((labels.reshape(len(paths), -1) >= len(classes))
                                             & (labels.reshape(len(paths), -1) != IGNORE))[0] // labels[0].size)]
            raise DataError(
                f"mask of {where.name} holds label {int(seen.max())} but {classes_file} names {len(classes)} classes "
                f"(0..{len(classes) - 1}; {IGNORE} = ignore)"
            )
    else:
        classes = [str(c) for c in range(int(seen.max()) + 1 if seen.size else 1)]
    if len(classes) < 2:
        raise DataError(f"{root}: segmentation needs at least 2 classes (background and one more)")
    x = images_to_tensor(_same_size(images, paths), str(images_dir))
    return SceneDataset("masks", "all", x, torch.from_numpy(labels), classes, "segmentation", IGNORE)


def _field(entry: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise DataError(f"{where} lacks '{key}' (COCO format: images, annotations, categories)")
    return entry[key]


def load_coco(json_path: str | Path, image_root: str | Path | None = None) -> SceneDataset:
    """Images and boxes from a COCO-style JSON file; images are read from ``image_root`` (default:
    the JSON file's folder)."""
    json_path = Path(json_path).expanduser()
    root = Path(image_root).expanduser() if image_root is not None else json_path.parent
    try:
        spec = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{json_path}: not a readable JSON file ({exc})") from exc
    where = json_path.name
    categories = sorted(int(_field(c, "id", f"{where}: a category")) for c in _field(spec, "categories", where))
    if not categories:
        raise DataError(f"{where}: no categories")
    label_of = {cid: i + 1 for i, cid in enumerate(categories)}
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in spec["categories"]}
    entries = sorted(_field(spec, "images", where), key=lambda e: int(_field(e, "id", f"{where}: an image")))
    if not entries:
        raise DataError(f"{where}: no images")
    position = {int(e["id"]): i for i, e in enumerate(entries)}
    images, paths = [], []
    for e in entries:
        path = root / str(_field(e, "file_name", f"{where}: image {e['id']}"))
        if not path.is_file():
            raise DataError(f"{where}: image file {path} does not exist (pass the image folder)")
        image = read_image(path)
        w, h = (int(_field(e, key, f"{where}: image {e['id']}")) for key in ("width", "height"))
        if (image.shape[1], image.shape[0]) != (w, h):
            raise DataError(f"{path.name} is {image.shape[1]}×{image.shape[0]} but {where} says {w}×{h}")
        images.append(image)
        paths.append(path)
    boxes: list[list[tuple[int, float, float, float, float]]] = [[] for _ in entries]
    for a in _field(spec, "annotations", where):
        image_id, category = int(_field(a, "image_id", f"{where}: an annotation")), int(_field(a, "category_id", where))
        if image_id not in position:
            raise DataError(f"{where}: an annotation refers to unknown image id {image_id}")
        if category not in label_of:
            raise DataError(f"{where}: an annotation of image {image_id} has unknown category_id {category}")
        x, y, bw, bh = (float(v) for v in _field(a, "bbox", f"{where}: an annotation"))
        e = entries[position[image_id]]
        if bw <= 0 or bh <= 0 or x < 0 or y < 0 or x + bw > e["width"] or y + bh > e["height"]:
            raise DataError(
                f"{where}: box [{x:g}, {y:g}, {bw:g}, {bh:g}] (x, y, width, height) of image {image_id} lies outside "
                f"its {e['width']}×{e['height']} image or is empty"
            )
        boxes[position[image_id]].append((label_of[category], x, y, x + bw, y + bh))
    x = images_to_tensor(_same_size(images, paths), str(root))
    classes = ["background"] + [names[c] for c in categories]
    return SceneDataset("coco", "all", x, pack(boxes), classes, "detection")
