"""Figures (matplotlib, headless), legible in greyscale (hatches, markers): PNG at 150 dpi for the screen (report.md,
the README, MLflow) and PDF, vector, for print."""

from __future__ import annotations

import io
from pathlib import Path
from typing import List

import numpy as np
import pandas as pd

from ecosweep.analysis.kernels import idle_ms_per_token, kernel_classes_seen

HATCHES = ["", "//", "..", "xx", "\\\\", "++", "oo", "--"]
GREYS = ["0.15", "0.45", "0.7", "0.9", "0.3", "0.6", "0.8", "0.55"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# 150 dpi: sharp on screen at the figures' 6-8 inch widths. At 300 dpi the committed reports' PNGs took 11.8 MB of
# the checkout (5.5 MB at 150), which travels to the GPU hosts under a 64 MiB limit. Print takes the PDF.
DPI = 150
PNG_COLOURS = 256


def write_compact_png(png: bytes, path: Path) -> None:
    """Write a rendered PNG compactly, every pixel as rendered: the report's figures are grey, so one 8-bit
    grey channel holds them exactly in ~45 % of matplotlib's RGBA file (committed reports stay small
    enough to travel with the checkout). A figure with colour gets a palette of PNG_COLOURS colours,
    undithered, exact up to that many colours."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        dpi = image.info.get("dpi", (DPI, DPI))
        rgb = np.asarray(image.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        compact = Image.fromarray(np.ascontiguousarray(rgb[..., 0]), mode="L")
    else:
        compact = Image.fromarray(rgb).quantize(PNG_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    compact.save(path, format="PNG", dpi=dpi)


def _save(fig, out_dir: Path, name: str) -> List[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = out_dir / f"{name}.png", out_dir / f"{name}.pdf"
    try:
        rendered = io.BytesIO()
        fig.savefig(rendered, format="png", dpi=DPI, bbox_inches="tight")
        write_compact_png(rendered.getvalue(), png)
        # no creation date in the PDF: a rebuilt report with the same data is byte-identical
        fig.savefig(pdf, dpi=DPI, bbox_inches="tight", metadata={"CreationDate": None})
    finally:
        _plt().close(fig)
    return [png, pdf]


LABELS = {"energy_j_per_1k_tok": "energy per 1k tokens (J)", "tok_s": "throughput (tok/s)",
          "gco2e_per_1m_tok": "g CO2e per 1M tokens", "power_w_mean": "power (W)",
          "energy_j_per_request": "energy per request (J)", "gpu_util_pct_mean": "GPU utilisation (%)",
          "decode_tok_s": "decode throughput (tok/s)", "static_energy_share": "static share of energy",
          "net_energy_j_per_1k_tok": "energy per 1k tokens net of idle (J)"}


def label(metric: str) -> str:
    """A column's name as a reader wants it on an axis ("energy per 1k tokens (J)"); unknown columns with their
    underscores as spaces."""
    return LABELS.get(metric, metric.replace("_", " "))


def text(value: object) -> str:
    """Text for a title, label or legend: '$' shown as itself, not as the start of matplotlib's mathtext."""
    return str(value).replace("$", r"\$")


def _has(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and pd.to_numeric(frame[column], errors="coerce").notna().any()


def energy_by_model(configs: pd.DataFrame, comp: pd.DataFrame, out_dir: Path,
                    metric: str = "energy_j_per_1k_tok", note: str = "") -> List[Path]:
    """``metric`` (energy per 1k tokens by default) by model and quantization, 95 % CI bars, delta-% labels;
    ``note``: a line the title adds (e.g. the settings a derived metric used)."""
    plt = _plt()
    paths: List[Path] = []
    by_gpus = "gpu_count" in configs and configs.gpu_count.nunique() > 1  # fp16 on 2 GPUs beside NF4 on 1
    configs = _with_series(configs, by_gpus)
    comp = _with_series(comp, by_gpus) if not comp.empty else comp
    for (hw, bs), g in configs.groupby(["hardware", "batch_size"]):
        if not _has(g, f"{metric}_mean"):  # nothing to draw (no energy measured): no empty axes
            continue
        models = list(dict.fromkeys(g.sort_values("params_b_nominal").model))
        quants = list(dict.fromkeys(g.series))
        baselines = [] if comp.empty or "baseline" not in comp else [
            s for s in quants if g[g.series == s].quantization.iloc[0] in set(comp.baseline)]
        quants = baselines + [q for q in quants if q not in baselines]  # the baseline's bars first
        width = 0.8 / max(1, len(quants))
        fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(models) + 2), 4))
        for qi, q in enumerate(quants):
            sub = g[g.series == q].groupby("model").first().reindex(models)
            x = np.arange(len(models)) + (qi - (len(quants) - 1) / 2) * width
            err = np.vstack([sub[f"{metric}_mean"] - sub[f"{metric}_ci_low"],
                             sub[f"{metric}_ci_high"] - sub[f"{metric}_mean"]])
            ax.bar(x, sub[f"{metric}_mean"], width, yerr=np.nan_to_num(err), capsize=3, label=text(q),
                   color=GREYS[qi % len(GREYS)], hatch=HATCHES[qi % len(HATCHES)], edgecolor="black")
            if not comp.empty:
                for xi, model in zip(x, models):
                    row = comp[(comp.hardware == hw) & (comp.model == model) & (comp.series == q)
                               & (comp.batch_size == bs)]
                    if len(row):
                        top = sub.loc[model, f"{metric}_ci_high"]
                        top = top if top == top else sub.loc[model, f"{metric}_mean"]
                        ax.annotate(f"{row.delta_pct.iloc[0]:+.1f}%", (xi, top), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(np.arange(len(models)), models, rotation=20)
        ax.set_ylabel(label(metric))
        ax.margins(y=0.15)  # room for the Δ % labels above the tallest bar
        several = configs.batch_size.nunique() > 1
        ax.set_title(text(f"{hw}: {label(metric)}, mean and 95 % CI\n{_fixed(g)}" + (f"\n{note}" if note else "")),
                     fontsize=10)
        ax.legend(title="quantization" if g.engine.nunique() == 1 else "quantization / engine", fontsize=8,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
        paths += _save(fig, out_dir, f"{metric}_by_model_{_slug(hw)}" + (f"_bs{bs}" if several else ""))
    return paths


def carbon_by_model(configs: pd.DataFrame, costs: pd.DataFrame, settings: str, out_dir: Path) -> List[Path]:
    """g CO2e per 1M generated tokens by model and quantization (95 % CI of the energy), the settings in the title."""
    if costs.empty or "gco2e_per_1m_tok" not in costs:
        return []
    frame = configs.assign(**{f"gco2e_per_1m_tok{suffix}": costs[f"gco2e_per_1m_tok{tag}"].values
                              if f"gco2e_per_1m_tok{tag}" in costs else np.nan
                              for suffix, tag in (("_mean", ""), ("_ci_low", "_ci_low"), ("_ci_high", "_ci_high"))})
    if not _has(frame, "gco2e_per_1m_tok_mean"):
        return []
    return energy_by_model(frame, pd.DataFrame(), out_dir, "gco2e_per_1m_tok", note=settings)


def _fixed(g: pd.DataFrame) -> str:
    """What a figure holds fixed: batch size, tokens and engine where they are single-valued."""
    parts = []
    for col, label in (("batch_size", "batch {}"), ("engine", "engine {}")):
        if col in g and g[col].nunique() == 1:
            parts.append(label.format(g[col].iloc[0]))
    one_length = {"input_tokens", "output_tokens"} <= set(g.columns) and \
        g.input_tokens.nunique() == g.output_tokens.nunique() == 1
    if one_length:
        parts.append(f"{int(g.input_tokens.iloc[0])} prompt + {int(g.output_tokens.iloc[0])} new tokens")
    return ", ".join(parts)


def _with_series(df: pd.DataFrame, by_gpus: bool = False) -> pd.DataFrame:
    """Add ``series``: the quantization, with the engine when a table holds several engines, and with the GPUs
    its cells held when ``by_gpus`` (a figure of cells on different numbers of GPUs: each bar is the energy of
    every GPU its cell held, and one model's one- and two-GPU cells are two bars)."""
    df = df.copy()
    if "engine" not in df:
        df["engine"] = "eager"
    several = df.engine.nunique() > 1
    df["series"] = [f"{q} / {e}" if several else q for q, e in zip(df.quantization, df.engine)]
    if by_gpus and "gpu_count" in df:
        df["series"] = [f"{series} on {int(n)} GPU{'s' if n > 1 else ''}" if n == n else series
                        for series, n in zip(df.series, df.gpu_count)]
    return df


def delta_vs_batch(comp: pd.DataFrame, out_dir: Path) -> List[Path]:
    """Δ % against the baseline (95 % CI bars) against batch size: one line per engine and precision,
    one figure per hardware and model. Drawn where comparisons exist at two or more batch sizes."""
    plt = _plt()
    if comp.empty or comp.batch_size.nunique() < 2:
        return []
    comp = _with_series(comp)
    paths: List[Path] = []
    for (hw, model), g in comp.groupby(["hardware", "model"]):
        if g.batch_size.nunique() < 2:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        engines = list(dict.fromkeys(g.engine))
        quants = list(dict.fromkeys(g.quantization))
        styles = ["-", "--", ":", "-."]
        shades = ["0.0", "0.45", "0.65"]  # a grey per precision (print-safe), dark enough to read
        # lines a little apart on the batch axis, so equal deltas at one batch size do not hide each other
        series_names = list(dict.fromkeys(g.series))
        nudge = {n: 2 ** (0.03 * (i - (len(series_names) - 1) / 2)) for i, n in enumerate(series_names)}
        for series, h in g.groupby("series", sort=False):
            h = h.sort_values("batch_size")
            qi, ei = quants.index(h.quantization.iloc[0]), engines.index(h.engine.iloc[0])
            err = np.nan_to_num(np.vstack([h.delta_pct - h.delta_pct_ci_low, h.delta_pct_ci_high - h.delta_pct]))
            ax.errorbar(h.batch_size * nudge[series], h.delta_pct, yerr=err, capsize=3,
                        color=shades[qi % len(shades)], linestyle=styles[ei % len(styles)],
                        marker=MARKERS[qi % len(MARKERS)], markerfacecolor="white" if ei else None, label=series)
        ax.axhline(0, color="0.5", linewidth=0.8)
        ax.set_xscale("log", base=2)
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("batch size")
        ax.set_ylabel(text(f"Δ {label(g.metric.iloc[0])} vs {g.baseline.iloc[0]} (%)"))
        several = len(engines) > 1
        ax.set_title(text(f"{model} on {hw}: Δ {label(g.metric.iloc[0])} vs {g.baseline.iloc[0]}"
                          + (", by engine" if several else f", engine {engines[0]}")))
        ax.legend(fontsize=7, title="quantization / engine" if several else "quantization", loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))
        paths += _save(fig, out_dir, f"delta_vs_batch_{_slug(hw)}_{_slug(model)}")
    return paths


def crossover_plot(comp: pd.DataFrame, out_dir: Path) -> List[Path]:
    """Delta % (95 % CI bars) against parameters (log axis), one line per quantization (and engine and batch size
    where the table holds several) and hardware, each with its own marker and line style. Drawn only where some
    line has two model sizes or more: with one size there is no crossover to see."""
    plt = _plt()
    if comp.empty:
        return []
    data = comp.dropna(subset=["params_b_nominal", "delta_pct"])
    data = _with_series(data) if not data.empty else data
    if not data.empty and "batch_size" in data and data.batch_size.nunique() > 1:
        data["series"] = [f"{s} / bs{b}" for s, b in zip(data.series, data.batch_size)]
    if data.empty or data.groupby(["series", "hardware"]).params_b_nominal.nunique().max() < 2:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    styles = ["-", "--", ":", "-."]
    for i, ((series, hw), h) in enumerate(data.groupby(["series", "hardware"])):
        h = h.sort_values("params_b_nominal")
        err = None
        if {"delta_pct_ci_low", "delta_pct_ci_high"} <= set(h.columns):
            err = np.nan_to_num(np.vstack([h.delta_pct - h.delta_pct_ci_low, h.delta_pct_ci_high - h.delta_pct]))
        ax.errorbar(h.params_b_nominal, h.delta_pct, yerr=err, capsize=3, linestyle=styles[i % len(styles)],
                    color=GREYS[i % 4], marker=MARKERS[i % len(MARKERS)], markerfacecolor="white" if i % 2 else None,
                    label=text(f"{series} / {hw}"))
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    sizes = sorted(set(data.params_b_nominal))  # a tick at each measured size, labelled plainly, nothing between
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("parameters (billions)")
    what, baseline = label(data.metric.iloc[0]), data.baseline.iloc[0]
    ax.set_ylabel(text(f"Δ {what} vs {baseline} (%)"))
    ax.set_title(text(f"Δ {what} vs {baseline} against model size"))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out_dir, "crossover")


BATCH_PANELS = ("energy_j_per_request", "tok_s", "gpu_util_pct_mean", "power_w_mean")


def missing_panels(configs: pd.DataFrame) -> List[str]:
    """The batch panels and the per-model energy and carbon figures left out for lack of data (no energy on a CPU
    without RAPL, no GPU utilisation without NVML), each as a sentence for report.md."""
    notes = []
    if configs.empty:
        return notes
    if not _has(configs, "energy_j_per_1k_tok_mean"):
        sources = sorted(set(configs.get("energy_source", pd.Series(dtype=object)).dropna().astype(str))) or ["none"]
        notes.append(f"No {label('energy_j_per_1k_tok')} figure and no carbon figure: no energy was measured "
                     f"(energy source: {', '.join(sources)}).")
    for key, g in _with_series(configs).groupby(["hardware", "model", "quantization", "engine"]):
        if g.batch_size.nunique() < 2:
            continue
        absent = [label(c) for c in BATCH_PANELS if not _has(g, f"{c}_mean")]
        if absent:
            notes.append(f"Batch figure of {' / '.join(map(str, key))}: {', '.join(absent)} left out (not measured "
                         "on this device).")
    return notes


def batch_panel(configs: pd.DataFrame, out_dir: Path) -> List[Path]:
    """Energy per request, throughput, GPU utilisation and power against batch size (the panels with data)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    plt = _plt()
    paths: List[Path] = []
    keys = ["hardware", "model", "quantization", "engine"]
    configs = _with_series(configs)
    for key, g in configs.groupby(keys):
        if g.batch_size.nunique() < 2:
            continue
        g = g.sort_values("batch_size")
        panels = [c for c in BATCH_PANELS if _has(g, f"{c}_mean")]  # a panel without data is left out
        if not panels:
            continue
        columns = 2 if len(panels) > 1 else 1
        rows = (len(panels) + 1) // 2
        fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), sharex=True, squeeze=False)
        for ax, col in zip(axes.flat, panels):
            mean = g[f"{col}_mean"]
            err = np.vstack([mean - g.get(f"{col}_ci_low", mean), g.get(f"{col}_ci_high", mean) - mean])
            ax.errorbar(g.batch_size, mean, yerr=np.nan_to_num(err), marker="o", color="black", capsize=3)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(sorted(set(g.batch_size))))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_ylabel(label(col))
        for ax in list(axes.flat)[len(panels):]:
            ax.remove()
        for ax in axes[-1]:
            ax.set_xlabel("batch size")
        name = key[:3] if key[3] == "eager" else key  # eager keeps the name it had before engines existed
        fig.suptitle(text(" / ".join(map(str, name)) + ": against batch size"))
        paths += _save(fig, out_dir, "batch_" + _slug("_".join(map(str, name))))
    return paths


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in str(text))


def kernel_breakdown(configs: pd.DataFrame, out_dir: Path) -> List[Path]:
    """Where a generated token's time goes (profile=true): per hardware, model and batch size, one stacked bar
    per precision and engine of GPU time per token by kernel class, and the GPU's idle time on top (the measured
    call's time the GPU waited on the host; none on a CPU)."""

    classes = kernel_classes_seen(configs)
    if not classes:
        return []
    plt = _plt()
    paths: List[Path] = []
    for key, g in configs[configs.profile_wall_ms_per_tok.notna()].groupby(["hardware", "model", "batch_size"]):
        g = g.sort_values(["engine", "quantization"])
        # long precision names (ao_int4_weight_only) broken at their first '_' so neighbouring labels do not overlap
        labels = [f"{q if len(q) <= 12 else q.replace('_', chr(10), 1)}\n{e}" for q, e in zip(g.quantization, g.engine)]
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(g) + 2.5), 4.5))
        bottom = np.zeros(len(g))
        for i, c in enumerate(classes):
            values = g[c].fillna(0).to_numpy(dtype=float)
            ax.bar(labels, values, bottom=bottom, label=c.removeprefix("profile_ms_per_tok_"),
                   color=GREYS[i % len(GREYS)], hatch=HATCHES[(i // len(GREYS)) % len(HATCHES)] or None,
                   edgecolor="black", linewidth=0.4)
            bottom += values
        idle = idle_ms_per_token(g).to_numpy(dtype=float)  # the bar's total: the measured time per token
        if idle.any():
            ax.bar(labels, idle, bottom=bottom, label="GPU idle (waiting on the host)", color="white",
                   hatch="//", edgecolor="black", linewidth=0.4)
        ax.set_ylabel("time per generated token (ms)")
        ax.set_title(text(" / ".join(map(str, key[:2])) + f" / batch {key[2]}"))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        paths += _save(fig, out_dir, "kernels_" + _slug("_".join(map(str, key))))
    return paths
