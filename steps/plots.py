"""Figures logged as MLflow image artifacts; each function returns a Figure that the caller logs and closes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: steps run in CI, Airflow workers and containers without a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from scoring.calibration import ECE_BINS, equal_mass_bins


def roc_figure(y_true: np.ndarray, curves: dict[str, np.ndarray]) -> Figure:
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for name, probabilities in curves.items():
        fpr, tpr, _ = roc_curve(y_true, probabilities)
        axes.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    axes.set(xlabel="False positive rate", ylabel="True positive rate (defaults caught)", title="ROC curve (test)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    return figure


def precision_recall_figure(y_true: np.ndarray, curves: dict[str, np.ndarray]) -> Figure:
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for name, probabilities in curves.items():
        precision, recall, _ = precision_recall_curve(y_true, probabilities)
        axes.plot(recall, precision, label=f"{name} (AUC {auc(recall, precision):.3f})")
    axes.axhline(float(np.mean(y_true)), linestyle="--", color="grey", linewidth=1, label="base rate")
    axes.set(xlabel="Recall", ylabel="Precision", title="Precision-recall curve (test)", ylim=(0, 1.02))
    axes.legend(loc="upper right")
    figure.tight_layout()
    return figure


def calibration_figure(y_true: np.ndarray, curves: dict[str, np.ndarray], bins: int = 10) -> Figure:
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for name, probabilities in curves.items():
        observed, predicted = calibration_curve(y_true, probabilities, n_bins=bins, strategy="quantile")
        axes.plot(predicted, observed, marker="o", label=name)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    axes.set(
        xlabel="Mean predicted probability of default",
        ylabel="Observed default rate",
        title="Calibration (test, quantile bins)",
    )
    axes.legend(loc="upper left")
    figure.tight_layout()
    return figure


def confusion_figure(tn: int, fp: int, fn: int, tp: int, threshold: float, positive_label: str) -> Figure:
    matrix = np.array([[tn, fp], [fn, tp]])
    figure, axes = plt.subplots(figsize=(4.8, 4.2))
    image = axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        axes.text(column, row, f"{count}", ha="center", va="center", color=colour, fontsize=13)
    labels = [f"not {positive_label}", positive_label]
    axes.set_xticks([0, 1], labels=labels)
    axes.set_yticks([0, 1], labels=labels)
    axes.set(xlabel="Predicted", ylabel="Actual", title=f"Confusion matrix (test, threshold {threshold:.3f})")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    return figure


def learning_curve_figure(loss: list[float], validation_auc: list[float], best_epoch: int) -> Figure:
    epochs = np.arange(1, len(loss) + 1)
    figure, loss_axes = plt.subplots(figsize=(6.5, 4.2))
    loss_axes.plot(epochs, loss, color="tab:blue", label="training loss")
    loss_axes.set(xlabel="Epoch", ylabel="Training loss")
    auc_axes = loss_axes.twinx()
    auc_axes.plot(epochs, validation_auc, color="tab:orange", label="validation ROC AUC")
    auc_axes.set_ylabel("Validation ROC AUC")
    loss_axes.axvline(best_epoch, linestyle="--", color="grey", linewidth=1)
    loss_axes.set_title(f"Learning curve (best epoch {best_epoch}, weights restored)")
    handles = loss_axes.get_legend_handles_labels()[0] + auc_axes.get_legend_handles_labels()[0]
    loss_axes.legend(handles=handles, loc="center right")
    figure.tight_layout()
    return figure


def benchmark_figure(rows: list[dict[str, object]]) -> Figure:
    """Grouped bars of p50 latency per batch size and runtime (log scale: sklearn and ONNX differ by ~100x)."""
    runtimes = list(dict.fromkeys(str(row["runtime"]) for row in rows))
    batch_sizes = sorted({int(row["batch_size"]) for row in rows})
    width = 0.8 / len(runtimes)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, runtime in enumerate(runtimes):
        latencies = [
            next(float(r["p50_ms"]) for r in rows if r["runtime"] == runtime and int(r["batch_size"]) == size)
            for size in batch_sizes
        ]
        positions = np.arange(len(batch_sizes)) + index * width
        bars = axes.bar(positions, latencies, width, label=runtime)
        axes.bar_label(bars, labels=[f"{v:.3g}" for v in latencies], fontsize=8)
    axes.set_xticks(np.arange(len(batch_sizes)) + width * (len(runtimes) - 1) / 2, labels=map(str, batch_sizes))
    axes.set_yscale("log")
    axes.set(xlabel="Batch size (rows)", ylabel="p50 latency per call (ms, log scale)", title="Inference latency")
    axes.legend()
    figure.tight_layout()
    return figure


def missing_values_figure(profile: pd.DataFrame, positive_rates: dict[str, float]) -> Figure:
    """Missing-value share per column beside the class balance of each split."""
    figure, (missing_axes, balance_axes) = plt.subplots(1, 2, figsize=(10, 4.2), width_ratios=[2, 1])
    ordered = profile.sort_values("missing_fraction")
    missing_axes.barh(ordered["column"], 100 * ordered["missing_fraction"], color="tab:red")
    missing_axes.set(xlabel="Missing values (%)", title="Missing values per column")
    names = list(positive_rates)
    bars = balance_axes.bar(names, [100 * positive_rates[n] for n in names], color="tab:blue")
    balance_axes.bar_label(bars, fmt="%.1f%%")
    balance_axes.set(ylabel="Positive class (%)", title="Class balance per split")
    figure.tight_layout()
    return figure


def close(figure: Figure) -> None:
    plt.close(figure)


def reliability_figure(
    y_true: np.ndarray, curves: dict[str, np.ndarray], eces: dict[str, str], bins: int = ECE_BINS
) -> Figure:
    """Observed default rate against mean predicted probability in equal-mass bins, before and after calibration,
    with each curve's ECE (and interval) in its label and the rows' predicted probabilities underneath."""
    figure, (axes, counts) = plt.subplots(2, 1, figsize=(5.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for name, probabilities in curves.items():
        groups = equal_mass_bins(probabilities, bins)
        predicted = [float(probabilities[g].mean()) for g in groups]
        observed = [float(y_true[g].mean()) for g in groups]
        axes.plot(predicted, observed, marker="o", label=f"{name} (ECE {eces[name]})")
        counts.hist(probabilities, bins=40, range=(0, 1), histtype="step", label=name)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    axes.set(ylabel="Observed default rate", title=f"Reliability diagram (test, {bins} equal-mass bins)")
    axes.legend(loc="upper left", fontsize=8)
    counts.set(xlabel="Predicted probability of default", ylabel="Rows")
    figure.tight_layout()
    return figure


def fairness_figure(slices: list[tuple[str, pd.DataFrame]], threshold: float) -> Figure:
    """Per slicing column: approval rate and default rate among the approved by group (group sizes on the bars)."""
    figure, axes_list = plt.subplots(1, max(len(slices), 1), figsize=(5.2 * max(len(slices), 1), 4.2), squeeze=False)
    for axes, (name, table) in zip(axes_list[0], slices, strict=False):
        positions = np.arange(len(table))
        approval = axes.bar(positions - 0.2, table["approval_rate"], 0.4, label="approval rate")
        axes.bar(positions + 0.2, table["default_rate_approved"].fillna(0), 0.4, label="default rate of approved")
        axes.bar_label(approval, labels=[f"n={int(n)}" for n in table["rows"]], fontsize=7)
        axes.set_xticks(positions, labels=[str(group) for group in table.index], rotation=30, ha="right")
        axes.set(ylim=(0, 1.1), title=f"{name} (threshold {threshold:.3f})", ylabel="Share")
        axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    return figure
