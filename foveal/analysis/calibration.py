"""Temperature scaling of checkpoints (``foveal calibrate``).

The calibration metrics (expected calibration error, its bins, the negative log-likelihood; single-label
top-label and multilabel per-label rules) are in ``foveal.metrics.calibration``, the reliability
diagram in ``foveal.report.plots``. Multilabel models (and detectors, whose scores are per-box binary
problems) get one temperature fitted on the binary cross-entropy of all labels.

:func:`calibrate` fits the temperature of a checkpoint on a labelled split and stores it in the
checkpoint's task meta (``temperature``), which ``foveal.engine.calibrated`` applies to the model's
outputs through ``Task.temper``. Every task that implements ``Task.calibration_pairs`` is covered.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from foveal.errors import DataError
from foveal.metrics.calibration import ArrayLike, expected_calibration_error, negative_log_likelihood

log = logging.getLogger("foveal")

T_BOUNDS = (0.01, 100.0)


# -- temperature scaling ------------------------------------------------------------------------
def scaled_probabilities(logits: ArrayLike, temperature: float = 1.0, multilabel: bool = False) -> Tensor:
    """(N, C) logits -> probabilities of ``logits / temperature`` (sigmoid if multilabel, else softmax)."""
    scaled = torch.as_tensor(logits).double() / temperature
    return scaled.sigmoid() if multilabel else scaled.softmax(dim=1)


def fit_temperature(logits: ArrayLike, targets: ArrayLike, multilabel: bool | None = None) -> float:
    """The temperature T in [0.01, 100] minimising the NLL of ``logits / T`` (see
    ``foveal.metrics.calibration.negative_log_likelihood``; ``logits`` (N, C), ``targets`` (N,)
    indices or (N, C) 0/1).

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search over log T finds its
    minimum to 1e-6 relative. T = 1 is returned when it is no worse (e.g. no samples).
    """
    z = torch.as_tensor(logits).double().cpu()
    t = torch.as_tensor(targets).cpu()
    if multilabel is None:
        multilabel = tuple(t.shape) == tuple(z.shape)
    if z.numel() == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return negative_log_likelihood(z, t, math.exp(log_t), multilabel)

    lo, hi = math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > 1e-6:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    best = (a + b) / 2.0
    return math.exp(best) if nll(best) < nll(0.0) else 1.0


# -- calibrate a checkpoint ---------------------------------------------------------------------
@dataclass
class CalibrationResult:
    """A fitted temperature and the calibration of the split before and after it."""

    temperature: float
    previous_temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    n: int
    split: str
    checkpoint: Path
    backup: Path
    out_dir: Path
    plots: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values.update(
            checkpoint=str(self.checkpoint),
            backup=str(self.backup),
            out_dir=str(self.out_dir),
            plots=[str(p) for p in self.plots],
        )
        return values


def calibration_dir(checkpoint: Path) -> Path:
    """``<run>/calibration`` for a checkpoint in ``<run>/checkpoints/`` (a run has config.yaml), else a
    ``calibration`` folder next to the checkpoint."""
    run = checkpoint.parent.parent
    return (run if (run / "config.yaml").is_file() else checkpoint.parent) / "calibration"


def calibrate(
    weights: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    out: str | Path | None = None,
    batch: int = 64,
    workers: int | None = None,
    device: str = "auto",
    fmt: str = "auto",
    on_bad_image: str = "error",
    n_bins: int = 15,
) -> CalibrationResult:
    """Fit the output temperature of checkpoint ``weights`` on ``split`` of ``data``.

    Stores it in the checkpoint's task meta (``temperature``; the file is replaced atomically, the
    original kept once as ``<name>.uncalibrated.ckpt``) and writes ``calibration.json``,
    ``reliability_before.png`` and ``reliability_after.png`` into ``out`` (default: the run's
    ``calibration`` folder, see :func:`calibration_dir`). ECE and NLL "before" use the checkpoint's
    current temperature (1 unless calibrated already); the fit starts from the raw logits.
    """
    from foveal.atomic import atomic_write, atomic_write_text
    from foveal.data.checks import drop_unreadable
    from foveal.engine.checkpoint import load, read_checkpoint
    from foveal.report.plots import reliability_diagram
    from foveal.serialize import dumps

    checkpoint = read_checkpoint(weights)
    path = Path(checkpoint.pop("path"))
    meta = checkpoint["foveal"]["meta"]
    loaded = load(path, temper=False)  # fit on the raw outputs
    samples = drop_unreadable(loaded.task.load_eval_data(str(data), split, fmt), on_bad_image)
    logits, targets = calibration_pairs(loaded, samples, batch, workers, device)
    multilabel = loaded.task.calibration_multilabel
    previous = float(loaded.task.meta.temperature)
    temperature = fit_temperature(logits, targets, multilabel)
    before = scaled_probabilities(logits, previous, multilabel)
    after = scaled_probabilities(logits, temperature, multilabel)

    backup = path.with_name(f"{path.stem}.uncalibrated{path.suffix}")
    if not backup.exists():
        _copy_atomic(path, backup)
    meta["temperature"] = temperature
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))

    out_dir = Path(out) if out is not None else calibration_dir(path)
    plots = [
        reliability_diagram(
            before, targets, out_dir / "reliability_before.png", n_bins, f"Before (T={previous:.3g})"
        ),
        reliability_diagram(
            after, targets, out_dir / "reliability_after.png", n_bins, f"After (T={temperature:.3g})"
        ),
    ]
    result = CalibrationResult(
        temperature=round(temperature, 6),
        previous_temperature=previous,
        ece_before=round(expected_calibration_error(before, targets, n_bins), 7),
        ece_after=round(expected_calibration_error(after, targets, n_bins), 7),
        nll_before=round(negative_log_likelihood(logits, targets, previous, multilabel), 7),
        nll_after=round(negative_log_likelihood(logits, targets, temperature, multilabel), 7),
        n=len(samples),
        split=split,
        checkpoint=path,
        backup=backup,
        out_dir=out_dir,
        plots=plots,
    )
    atomic_write_text(
        out_dir / "calibration.json",
        dumps({**result.to_dict(), "data": str(data), "n_bins": n_bins}, indent=2),
    )
    log.info(
        "temperature %.4f: ECE %.4f -> %.4f, NLL %.4f -> %.4f (%s, %d images); written to %s",
        temperature,
        result.ece_before,
        result.ece_after,
        result.nll_before,
        result.nll_after,
        split,
        result.n,
        path,
    )
    from foveal.report.html import refresh_report

    refresh_report(path)  # the run's report gains the calibration section
    return result


def calibration_pairs(
    loaded: Any, samples: Any, batch: int, workers: int | None, device: str, max_pairs: int = 500_000
) -> tuple[Tensor, Tensor]:
    """The raw logits (N, K) float64 and targets of ``samples`` that a temperature is fitted on
    (``Task.calibration_pairs`` per batch: images, labelled pixels or detections); a seeded random
    subset of about ``max_pairs`` when there are more (rows are kept at the rate the first batch
    implies for the whole split)."""
    from foveal.engine.inference import pick_device, to_device
    from foveal.engine.loaders import make_loader

    task, target_device = loaded.task, pick_device(device)
    model = loaded.model.to(target_device).eval()
    generator = torch.Generator().manual_seed(0)
    keep_rate, parts, seen = 1.0, [], 0
    with torch.no_grad():
        for images, targets in make_loader(task, samples, "val", batch, workers):
            outputs = task.forward(model, images.to(target_device))
            logits, labels = task.calibration_pairs(outputs, to_device(targets, target_device))
            if not seen:
                keep_rate = min(1.0, max_pairs / max(1.0, len(logits) / len(images) * len(samples)))
            seen += len(images)
            if keep_rate < 1.0:
                chosen = torch.rand(len(logits), generator=generator) < keep_rate
                logits, labels = logits[chosen], labels[chosen]
            parts.append((logits.double().cpu(), labels.cpu()))
    logits, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    if not len(logits):
        raise DataError(
            f"nothing to calibrate on these {len(samples)} images (a detector with no score >= 0.05?); "
            "train longer first"
        )
    return logits, labels


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temporary file in the target's folder."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
