"""ImageFolder layouts: ``DIR/<class>/*`` or ``DIR/{train,val,test}/<class>/*``."""

from __future__ import annotations

from pathlib import Path

from foveal.data.imageio import is_image_file
from foveal.data.sample import Sample
from foveal.errors import DataError

SPLIT_NAMES = ("train", "val", "test")


def has_split_folders(root: Path) -> bool:
    """True when ``root`` holds a ``train`` folder (and so uses the split layout)."""
    return (root / "train").is_dir()


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` in sorted order (hidden ones ignored)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))


def read_class_tree(root: Path, class_names: list[str] | None = None) -> tuple[list[Sample], list[str]]:
    """Read ``root/<class>/**/<image>`` into samples.

    ``class_names`` fixes the class list (e.g. from a checkpoint or the train split); otherwise
    the sorted folder names are the classes. Raises DataError for an empty tree, an empty class
    folder, or a folder that is not a known class.
    """
    folders = class_folders(root)
    if not folders:
        loose = [p for p in root.iterdir() if p.is_file() and is_image_file(p)]
        fix = (
            "move the images into one sub-folder per class"
            if loose
            else "add one sub-folder of images per class"
        )
        raise DataError(f"{root}: no class folders found; {fix} (DIR/<class>/*.png)")
    names = class_names if class_names is not None else [f.name for f in folders]
    index = {name: i for i, name in enumerate(names)}
    samples: list[Sample] = []
    for folder in folders:
        if folder.name not in index:
            raise DataError(
                f"{folder}: class '{folder.name}' is not one of the known classes "
                f"{names}; rename or remove the folder"
            )
        images = _images_in(folder)
        if not images:
            raise DataError(
                f"{folder}: class folder '{folder.name}' holds no images; add images or remove the folder"
            )
        samples.extend(Sample(str(p), index[folder.name]) for p in images)
    return samples, list(names)
