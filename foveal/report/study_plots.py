"""PNG plots of an Optuna study (Optuna's matplotlib visualisations): optimisation history, parameter
importances, parallel coordinates, slices and the intermediate values (what pruning saw)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from foveal.atomic import atomic_write

log = logging.getLogger("foveal")

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice", "intermediate_values")


def plot_study(study: Any, out_dir: str | Path) -> list[Path]:
    """Write ``out_dir/<plot>.png`` for each of ``PLOTS`` the study's trials allow (importances need two
    complete trials whose parameters vary, ...); returns the files written."""
    import matplotlib
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    written = []
    for name in PLOTS:
        with matplotlib.rc_context():  # Optuna's plots switch the global style to ggplot
            path = _plot(study, name, Path(out_dir))
        if path is not None:
            written.append(path)
    return written


def _plot(study: Any, name: str, out_dir: Path) -> Path | None:
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as ov

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            axes = getattr(ov, f"plot_{name}")(study)
    except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as err:
        log.debug("study plot %s skipped: %s", name, err)
        return None
    first = np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes
    if first is None:
        return None
    fig = first.figure
    if not any(ax.has_data() for ax in fig.axes):
        plt.close(fig)
        return None
    fig.set_size_inches(max(6.4, fig.get_size_inches()[0]), 4.8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # colour-bar axes and tight_layout
        fig.tight_layout()
    path = atomic_write(out_dir / f"{name}.png", lambda out: fig.savefig(out, format="png", dpi=100))
    plt.close(fig)
    return path
