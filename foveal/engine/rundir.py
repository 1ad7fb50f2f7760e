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


def check_out(out: str | Path | None, project: str | Path | None, name: str | None) -> None:
    """ConfigError when both an ``out`` folder and ``project``/``name`` (a run folder) are given."""
    if out is not None and (project is not None or name is not None):
        from foveal.errors import ConfigError

        raise ConfigError(f"pass either --out {out} or --project/--name, not both")


def output_dir(
    out: str | Path | None,
    task: str,
    default_name: str,
    project: str | Path | None = None,
    name: str | None = None,
) -> Path:
    """The folder a command writes into: ``out`` when given (then ``project``/``name`` must not be),
    else a new run folder ``run_parent(project, task) / (name or default_name)`` (``-2``, ``-3``, ...
    when taken): ``PROJECT/NAME``, by default ``runs/<task>/<default_name>``."""
    check_out(out, project, name)
    return Path(out) if out is not None else new_run_dir(run_parent(project, task), name or default_name)
