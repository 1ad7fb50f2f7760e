"""Run folders: ``PROJECT/NAME`` that never overwrite an earlier run (NAME, NAME-2, NAME-3, ...)."""

from __future__ import annotations

from pathlib import Path


def new_run_dir(project: str | Path, name: str) -> Path:
    """Create and return a fresh run folder under ``project``."""
    project = Path(project)
    project.mkdir(parents=True, exist_ok=True)
    candidate, n = project / name, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = project / f"{name}-{n}"


def run_parent(project: str | Path | None, task: str) -> Path:
    """The folder a command's run goes in: ``PROJECT`` when given, else ``runs/<task>`` (the same rule
    for train, cv, baseline, predict, ensemble, errors, ...)."""
    return Path("runs") / task if project in (None, "runs") else Path(project)


def safe_name(model: str) -> str:
    """A folder-safe version of a model name ('tv:resnet18' -> 'tv-resnet18')."""
    return model.replace(":", "-").replace("/", "-")
