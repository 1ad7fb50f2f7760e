"""Run folders: ``PROJECT/NAME`` that never overwrite an earlier run (NAME, NAME-2, NAME-3, ...)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from foveal.errors import ConfigError


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


def claim_folder(
    out: Path,
    settings: dict[str, Any],
    *,
    file: str,
    what: str,
    kind: str,
    flag: str,
    own: Iterable[str] = (),
) -> bool:
    """Create the resumable folder ``out`` with ``settings`` in ``out/file`` (True), or check that it
    already holds ``what`` (e.g. "a study") of the same settings (False): one-line ConfigErrors name
    the changed settings, or a folder that is not ``kind``, and the ``flag`` to pass instead. Files
    named in ``own`` (and hidden ones) may be there before ``file``. Safe when several processes claim
    the same folder at once: one creates ``file`` (an exclusive link), the others compare with it."""
    saved = out / file
    if not saved.is_file() and out.is_dir():
        allowed = set(own)
        if any(p.name not in allowed and not p.name.startswith(".") for p in out.iterdir()):
            raise ConfigError(f"{out}: exists and is not {kind}; pass another {flag}")
    text = json.dumps(settings, indent=1)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not saved.is_file():
            staged = out / f".{file}.{os.getpid()}"
            staged.write_text(text, encoding="utf-8")
            try:
                os.link(staged, saved)
                return True
            except FileExistsError:
                pass  # another process created it first
            finally:
                staged.unlink()
    except OSError as err:
        raise ConfigError(f"{out}: cannot write the folder ({err.strerror}); pass another {flag}") from None
    before = json.loads(saved.read_text(encoding="utf-8"))
    if before != json.loads(text):
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        raise ConfigError(
            f"{out}: holds {what} with other {', '.join(changed)}; pass another {flag} "
            "(or delete the folder) to start a new one"
        )
    return False
