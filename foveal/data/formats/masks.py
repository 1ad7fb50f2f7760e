"""Images + semantic masks: class specs, folder layouts and mask decoding to (H, W) int64 class maps.

Layouts (a mask belongs to the image with the same path under ``images/``, extension aside):

- ``DIR/images/*`` + ``DIR/masks/*`` (one pool, split ``all``);
- ``DIR/{train,val,test}/images/*`` + ``DIR/{split}/masks/*``;
- ``DIR/images/{train,val,test}/*`` + ``DIR/masks/{split}/*``.

Classes come from ``DIR/classes.yaml`` or ``DIR/classes.txt`` (see ``read_class_file``); without one,
index masks give ``background, class_1 .. class_K`` (K = largest value found) and RGB masks are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from foveal.data.checks import ON_BAD_IMAGE
from foveal.data.imageio import is_image_file
from foveal.data.sample import Sample
from foveal.errors import ConfigError, DataError, check_choice

log = logging.getLogger("foveal")

SPLIT_NAMES = ("train", "val", "test")
CLASS_FILES = ("classes.yaml", "classes.yml", "classes.txt")
Colour = tuple[int, int, int]


@dataclass
class MaskSpec:
    """How mask files map to class indices.

    - ``class_names``: the name of each class index (index 0 is usually "background").
    - ``colours``: the (r, g, b) of each class when masks are RGB colour masks, mapped by exact colour
      (for palette masks these are the palette's display colours; palette indices decode as stored).
    - ``ignore_index``: the mask value of pixels that losses and metrics skip.
    - ``category_to_index``: COCO category id -> class index, for COCO data.
    """

    class_names: list[str]
    colours: list[Colour] | None = None
    ignore_index: int = 255
    category_to_index: dict[int, int] | None = None

    def __post_init__(self) -> None:
        if self.colours is not None:
            self.colours = [tuple(int(v) for v in c) for c in self.colours]  # type: ignore[misc]
            if len(self.colours) != len(self.class_names):
                raise DataError(
                    f"{len(self.colours)} colours for {len(self.class_names)} classes; give one per class"
                )
        if self.category_to_index is not None:
            self.category_to_index = {int(k): int(v) for k, v in self.category_to_index.items()}
        if 0 <= self.ignore_index < len(self.class_names):
            raise ConfigError(
                f"ignore index {self.ignore_index} is also a class index ({len(self.class_names)} classes); "
                "choose an ignore index >= the number of classes"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON- and checkpoint-safe dict (colours as lists, category ids as string keys)."""
        return {
            "class_names": list(self.class_names),
            "colours": None if self.colours is None else [list(c) for c in self.colours],
            "ignore_index": self.ignore_index,
            "category_to_index": None
            if self.category_to_index is None
            else {str(k): v for k, v in self.category_to_index.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskSpec:
        """The spec that ``to_dict`` wrote."""
        return cls(**data)


def _colour(value: object, path: Path, name: str) -> Colour:
    ok = isinstance(value, (list, tuple)) and len(value) == 3
    ok = ok and all(isinstance(v, int) and 0 <= v <= 255 for v in value)  # type: ignore[union-attr]
    if not ok:
        raise DataError(
            f"{path}: class '{name}' has colour {value!r}; write it as [r, g, b] with values 0-255"
        )
    return tuple(value)  # type: ignore[arg-type, return-value]


def _yaml_entries(path: Path) -> list[tuple[str, Colour | None]]:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not valid YAML ({str(err).splitlines()[0]}); fix the syntax") from err
    if isinstance(doc, dict) and len(doc) == 1 and next(iter(doc)) in ("classes", "names"):
        doc = next(iter(doc.values()))
    if isinstance(doc, dict) and doc and all(isinstance(k, int) for k in doc):
        if sorted(doc) != list(range(len(doc))):
            raise DataError(f"{path}: class indices {sorted(doc)} must run 0, 1, 2, ... without gaps")
        return [(str(doc[i]), None) for i in range(len(doc))]
    if isinstance(doc, dict):
        return [(str(name), _colour(colour, path, str(name))) for name, colour in doc.items()]
    if not isinstance(doc, list):
        doc = [] if doc is None else [doc]
    entries: list[tuple[str, Colour | None]] = []
    for item in doc:
        if isinstance(item, str):
            entries.append((item, None))
        elif isinstance(item, dict) and "name" in item:
            colour = item.get("color", item.get("colour"))
            name = str(item["name"])
            entries.append((name, None if colour is None else _colour(colour, path, name)))
        else:
            raise DataError(
                f"{path}: expected a list of class names, a mapping 'name: [r, g, b]' or a list of "
                f"'{{name: ..., color: [r, g, b]}}', found {item!r}; rewrite it in one of these forms"
            )
    return entries


def _txt_entries(path: Path) -> list[tuple[str, Colour | None]]:
    entries: list[tuple[str, Colour | None]] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) >= 4 and all(t.isdigit() for t in tokens[-3:]):
            name = " ".join(tokens[:-3])
            entries.append((name, _colour([int(t) for t in tokens[-3:]], path, name)))
        else:
            entries.append((line, None))
    return entries


def read_class_file(path: Path, ignore_index: int = 255) -> MaskSpec:
    """Read ``classes.yaml`` (names, ``name: [r, g, b]`` or ``{name, color}`` items) or ``classes.txt``.

    ``classes.txt`` has one class per line, optionally followed by ``r g b``. Colours must be given for
    every class or for none; the line/item order is the class index order.
    """
    entries = _yaml_entries(path) if path.suffix.lower() in (".yaml", ".yml") else _txt_entries(path)
    if not entries:
        raise DataError(f"{path}: no classes listed; write one class name per line, background first")
    names = [name for name, _ in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{path}: class name(s) {duplicates} listed twice; give each class once")
    colours = [c for _, c in entries]
    if any(c is None for c in colours) and any(c is not None for c in colours):
        raise DataError(f"{path}: some classes have a colour and some do not; give a colour for every class")
    if colours[0] is not None and len(set(colours)) < len(colours):
        raise DataError(f"{path}: two classes share one colour; give each class its own colour")
    return MaskSpec(names, None if colours[0] is None else colours, ignore_index)  # type: ignore[arg-type]


def find_class_file(root: Path) -> Path | None:
    """The first of ``classes.yaml``, ``classes.yml``, ``classes.txt`` in ``root``, or None."""
    return next((root / name for name in CLASS_FILES if (root / name).is_file()), None)


def _open_mask(path: str) -> tuple[np.ndarray, Image.Image | None]:
    """The raw mask: (H, W) values (palette indices for mode P) or (H, W, 3) RGB; plus the image if P."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("RGB", "RGBA", "RGBX"):
                return np.asarray(image.convert("RGB")), None
            if mode == "LA":
                return np.asarray(image.getchannel("L")), None
            if mode in ("P", "L", "1", "I") or mode.startswith("I;16"):
                return np.asarray(image), image if mode == "P" else None
    except FileNotFoundError as err:
        raise DataError(f"{path}: mask file not found; check the path") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: not a readable mask image ({err}); replace or remove it") from err
    raise DataError(
        f"{path}: mask image mode {mode} is not supported; save masks as 8-bit index PNGs (mode L or P) "
        "or RGB colour PNGs"
    )


def _colour_classes(path: str, rgb: np.ndarray, spec: MaskSpec) -> np.ndarray:
    if spec.colours is None:
        raise DataError(
            f"{path}: an RGB colour mask but no colour table; add classes.yaml to the dataset folder "
            "mapping each class to its colour (e.g. 'background: [0, 0, 0]')"
        )
    keys = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniq, inverse, counts = np.unique(keys.ravel(), return_inverse=True, return_counts=True)
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(spec.colours)}
    lut = np.array([table.get(int(k), -1) for k in uniq], dtype=np.int64)
    unknown = np.flatnonzero(lut < 0)
    if unknown.size:
        worst = int(unknown[np.argmax(counts[unknown])])
        key = int(uniq[worst])
        more = f", and {unknown.size - 1} more unknown colours" if unknown.size > 1 else ""
        raise DataError(
            f"{path}: colour ({key >> 16}, {(key >> 8) & 255}, {key & 255}) ({counts[worst]} pixels{more}) "
            "is not in the class colour table; add it to classes.yaml or fix the mask"
        )
    return lut[inverse].reshape(rgb.shape[:2])


def decode_mask(
    path: str, spec: MaskSpec, size: tuple[int, int] | None = None, image: str | None = None
) -> np.ndarray:
    """Decode a mask file to an (H, W) int64 class map.

    Index masks (modes L, I, I;16, 1) keep their values, palette masks (P) their palette indices,
    RGB masks map by exact colour through ``spec.colours``. ``size`` is the image's (W, H); ``image``
    its path, named in the size error. Raises DataError for a size mismatch, a value that is neither a
    class index nor ``spec.ignore_index``, or an unknown colour.
    """
    raw, _ = _open_mask(path)
    height, width = raw.shape[:2]
    if size is not None and (width, height) != tuple(size):
        raise DataError(
            f"{path}: mask is {width}x{height} pixels but its image{' ' + image if image else ''} is "
            f"{size[0]}x{size[1]}; "
            "resize the mask (nearest neighbour) or pair it with the right image"
        )
    if raw.ndim == 3:
        return _colour_classes(path, raw, spec)
    values = raw.astype(np.int64)
    bad = ((values >= len(spec.class_names)) & (values != spec.ignore_index)) | (values < 0)
    if bad.any():
        value = int(values[bad].max())
        raise DataError(
            f"{path}: mask value {value} ({int(bad.sum())} pixels) is not a class index "
            f"0-{len(spec.class_names) - 1} or the ignore index {spec.ignore_index}; "
            "list every class in classes.txt/classes.yaml (one per index) or fix the mask"
        )
    return values


def _scan(path: str, ignore_index: int) -> tuple[int, bool]:
    """(largest value other than ``ignore_index``, whether the mask is RGB) of one mask."""
    raw, _ = _open_mask(path)
    if raw.ndim == 3:
        return 0, True
    values = raw[raw != ignore_index] if raw.dtype != bool else raw
    return int(values.max(initial=0)), False


def infer_spec(masks: Sequence[str], root: Path, ignore_index: int = 255, workers: int = 4) -> MaskSpec:
    """The class spec of index or palette masks without a class file: ``background, class_1 .. class_K``.

    K is the largest value in any mask (``ignore_index`` aside); palette masks lend their palette as
    display colours. RGB masks raise DataError asking for classes.yaml with colours.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        stats = list(pool.map(lambda p: _scan(p, ignore_index), masks))
    rgb = [p for p, (_, is_rgb) in zip(masks, stats) if is_rgb]
    if rgb:
        raise DataError(
            f"{rgb[0]}: RGB colour masks need a colour table; add classes.yaml to {root} mapping each "
            "class name to its mask colour (e.g. 'background: [0, 0, 0]')"
        )
    top = max(k for k, _ in stats)
    if top == 0:
        raise DataError(
            f"{root}: every mask holds only background (0) or the ignore value {ignore_index}; store the "
            "classes as 1, 2, ... (binary 0/255 masks: divide by 255) or add classes.txt"
        )
    names = ["background", *(f"class_{i}" for i in range(1, top + 1))]
    _, palette_image = _open_mask(masks[0])
    colours = None
    if palette_image is not None:
        palette = palette_image.getpalette() or []
        palette = palette + [0] * max(0, 3 * len(names) - len(palette))
        colours = [tuple(palette[3 * i : 3 * i + 3]) for i in range(len(names))]
        colours = colours if len(set(colours)) == len(colours) else None
    return MaskSpec(names, colours, ignore_index)  # type: ignore[arg-type]


def _split_dirs(root: Path) -> dict[str, tuple[Path, Path]]:
    if any((root / s / "images").is_dir() for s in SPLIT_NAMES):
        return {
            s: (root / s / "images", root / s / "masks")
            for s in SPLIT_NAMES
            if (root / s / "images").is_dir()
        }
    if any((root / "images" / s).is_dir() for s in SPLIT_NAMES):
        return {
            s: (root / "images" / s, root / "masks" / s)
            for s in SPLIT_NAMES
            if (root / "images" / s).is_dir()
        }
    if (root / "images").is_dir():
        return {"all": (root / "images", root / "masks")}
    raise DataError(
        f"{root}: no images/ folder found; put images in DIR/images and masks in DIR/masks "
        "(optionally inside train/, val/, test/)"
    )


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    """Image files under ``folder`` keyed by their relative path without extension."""
    found: dict[str, Path] = {}
    files = (
        sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)) if folder.is_dir() else []
    )
    for path in files:
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in found:
            raise DataError(f"{path}: two {what} named '{key}' ({found[key].name}, {path.name}); keep one")
        found[key] = path
    return found


def _warn_paths(message: str, paths: Sequence[Path], total: int) -> None:
    first = ", ".join(str(p) for p in paths[:3])
    log.warning(message, len(paths), total, first, " ..." if len(paths) > 3 else "")


def read_mask_folder(
    root: Path, class_spec: MaskSpec | None = None, on_bad_image: str = "error"
) -> tuple[dict[str, list[Sample]], MaskSpec]:
    """Read an images + masks dataset into samples (``path`` = image, ``mask`` = mask file) per split.

    The split is ``all`` without split folders. ``class_spec`` (e.g. from a checkpoint) overrides the
    class file. An image without a mask raises DataError, or with ``on_bad_image="skip"`` is dropped
    with one warning; masks without an image are ignored with a warning.
    """
    check_choice("--on-bad-image value", on_bad_image, ON_BAD_IMAGE)
    splits: dict[str, list[Sample]] = {}
    missing: list[Path] = []
    orphans: list[Path] = []
    all_masks: list[str] = []  # the masks of the images kept
    found_any = False
    for split, (image_dir, mask_dir) in _split_dirs(root).items():
        images = _by_stem(image_dir, "images")
        if not images:
            raise DataError(
                f"{image_dir}: no images found; add the images (png, jpg, ...) or remove the folder"
            )
        masks = _by_stem(mask_dir, "masks")
        found_any = found_any or bool(masks)
        all_masks.extend(str(path) for key, path in masks.items() if key in images)
        missing.extend(path for key, path in images.items() if key not in masks)
        orphans.extend(path for key, path in masks.items() if key not in images)
        splits[split] = [
            Sample(str(path), mask=str(masks[key])) for key, path in images.items() if key in masks
        ]
    if not found_any:
        raise DataError(
            f"{missing[0]}: no mask for this image, nor for any other in {root}; add one mask per image "
            "in a masks/ folder beside images/ (same file name, .png)"
        )
    total = sum(len(s) for s in splits.values()) + len(missing)
    if missing and on_bad_image == "error":
        more = f" (and {len(missing) - 1} more images without masks)" if len(missing) > 1 else ""
        raise DataError(
            f"{missing[0]}: no mask with this file name in the masks folder{more}; add the mask, "
            "or pass --on-bad-image skip"
        )
    if not all_masks:
        raise DataError(f"{root}: no image has a mask; give masks the file names of their images")
    if missing:
        _warn_paths("skipped %d image(s) without a mask of %d: %s%s", missing, total)
    if orphans:
        _warn_paths("ignored %d mask(s) without an image (of %d images): %s%s", orphans, total)
    if class_spec is None:
        class_file = find_class_file(root)
        class_spec = read_class_file(class_file) if class_file else infer_spec(all_masks, root)
    return splits, class_spec
