"""Figures for CosmoFlow: predicted against true parameters, volume slices and their saliency."""

from __future__ import annotations

import numpy as np

from modelzoo.cosmology.cosmoflow_reader import PARAMETERS


def prediction_figure(truth: np.ndarray, predictions: dict[str, np.ndarray], path: str) -> None:
    """One panel per parameter: each model's prediction against the truth (both in [-1, 1])."""
    from modelzoo.interpret import _pyplot

    plt = _pyplot()
    count = truth.shape[1]
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3.2))
    for i, ax in enumerate(np.atleast_1d(axes)):
        for name, pred in predictions.items():
            if name == "train_mean":
                continue
            mae = np.abs(pred[:, i] - truth[:, i]).mean()
            ax.scatter(truth[:, i], pred[:, i], s=6, alpha=0.6, label=f"{name} (MAE {mae:.3f})")
        ax.plot([-1, 1], [-1, 1], "k:")
        ax.set(xlabel=f"true {PARAMETERS[i]} (scaled)", ylabel="predicted", xlim=(-1.2, 1.2),
               ylim=(-1.2, 1.2))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def slice_saliency_figure(counts: np.ndarray, saliency: np.ndarray, path: str,
                          redshifts: tuple[float, ...] | None = None) -> None:
    """The middle slice of each redshift channel of one volume (log(1 + counts)) above the
    absolute saliency of the same slice."""
    from modelzoo.interpret import _pyplot

    plt = _pyplot()
    channels = counts.shape[-1]
    middle = counts.shape[0] // 2
    fig, axes = plt.subplots(2, channels, figsize=(2.6 * channels, 5.2))
    for c in range(channels):
        top, bottom = axes[0, c], axes[1, c]
        top.imshow(np.log1p(counts[middle, :, :, c].astype(np.float64)), cmap="magma")
        label = f"z = {redshifts[c]}" if redshifts else f"channel {c}"
        top.set_title(f"log(1 + counts), {label}", fontsize=8)
        bottom.imshow(np.abs(saliency[middle, :, :, c]), cmap="viridis")
        bottom.set_title("|saliency|", fontsize=8)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
