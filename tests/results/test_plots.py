"""`benchmark plot`: which figures exist, their files (valid PNG and PDF, named after the paper
figure), and what each draws (panels, one line per method, bounds, bands), counted on the
matplotlib Figure each function returns."""

from __future__ import annotations

import io
import shutil

import matplotlib.image
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.image import AxesImage

from benchmark.cli.main import main
from benchmark.results.aggregate import compute_aggregates, load_aggregates, to_arrow
from benchmark.results.plots import PlotOptions, paper_figures, plot_all
from benchmark.results.plots.activations import nonpositive_figure, overtaking_figure
from benchmark.results.plots.logits import logit_correlation_figure, logit_scatter_figure
from benchmark.results.query import open_results
from benchmark.results.statistics import BootstrapSettings

from .conftest import METHODS, SAVED, SEEDS, STAGES
from .fakes import activation_rows, fake_output, logit_rows, occlusion_rows, randomization_rows

EXPECTED = {
    "supp-fig1_occlusion_k8_synthetic",
    "occlusion_k4_synthetic",
    "paper-fig2-supp-fig4_randomization_ssim_synthetic",
    "supp-fig5_randomization_mse_synthetic",
    "randomization_spearman_second_moment_synthetic",
    *(f"paper-fig4-fig7-style_maps_resnet34_synthetic_synthetic-0000{i}" for i in range(SAVED)),
    *(f"paper-fig4-style_seeds_resnet34_synthetic_synthetic-0000{i}" for i in range(SAVED)),
}


@pytest.fixture(scope="module")
def figures(aggregated_run):
    results = open_results(str(aggregated_run))
    aggregates, computed = load_aggregates(results)
    assert not computed
    return {figure.name: figure for figure in paper_figures(results, aggregates)}


def lines(axis) -> int:
    return len(axis.get_lines())


def bands(axis) -> int:
    return sum(isinstance(c, PolyCollection) for c in axis.collections)


def test_the_figures_the_run_allows(figures) -> None:
    assert set(figures) == EXPECTED


def test_occlusion_figures_draw_a_curve_and_band_per_method(aggregated_run, figures) -> None:
    relative = pd.read_parquet(aggregated_run / "aggregates/occlusion_relative.parquet")
    for name, kernel in (("supp-fig1_occlusion_k8_synthetic", 8), ("occlusion_k4_synthetic", 4)):
        curves, against_random = figures[name].figure.axes
        assert lines(curves) == len(METHODS) and bands(curves) == len(METHODS)
        assert {line.get_label() for line in curves.get_lines()} == set(METHODS)
        assert all(len(line.get_xdata()) == 7 for line in curves.get_lines())  # t = 0..6
        # every method its own line style and marker, so identical curves stay visible
        assert len({(str(line.get_linestyle()), line.get_marker()) for line in curves.get_lines()}) == len(METHODS)
        # beside it: each method minus the random order (the noise method), which is the zero line
        others = [m for m in METHODS if m != "noise"]
        drawn = [line for line in against_random.get_lines() if line.get_label() in others]
        assert {line.get_label() for line in drawn} == set(others) and bands(against_random) == len(others)
        for line in drawn:
            expected = relative.query("kernel == @kernel and method == @line.get_label()").sort_values("step")["mean"]
            assert np.allclose(line.get_ydata(), expected)
        assert set(figures[name].data["relative"].baseline) == {"noise"}
    caption = figures["supp-fig1_occlusion_k8_synthetic"].caption
    assert "kernel 8" in figures["supp-fig1_occlusion_k8_synthetic"].title
    assert "CI of the mean (not the spread of the images)" in caption and "random-order" in caption


def test_randomization_figures_name_the_layers_and_label_each_bound(figures) -> None:
    for name, per_method in (("paper-fig2-supp-fig4_randomization_ssim_synthetic", 2),
                             ("supp-fig5_randomization_mse_synthetic", 2),
                             ("randomization_spearman_second_moment_synthetic", 1)):
        (axis,) = figures[name].figure.axes
        assert lines(axis) == per_method * len(METHODS), name
        assert bands(axis) == len(METHODS)
        bounds = [line for line in axis.get_lines() if line.get_linestyle() == "--"]
        assert len(bounds) == (per_method - 1) * len(METHODS)
        theorem = "Theorem 1" if "ssim" in name else "Theorem 4"
        assert {line.get_label() for line in bounds} == ({f"{m}: {theorem} bound" for m in METHODS} if bounds else set())
        assert all(list(line.get_xdata()) == [0, 1] for line in axis.get_lines())
        # the x axis names each stage's first module (rotated); the caption lists every module
        labels = [label.get_text() for label in axis.get_xticklabels()]
        assert labels == ["fc", "layer4.2.conv1"] and axis.get_xticklabels()[0].get_rotation() == 45
        assert "from the output down to" in axis.get_xlabel()
        assert "1: fc; 2: layer4.2.conv2, layer4.2.conv1" in figures[name].caption
    ssim = figures["paper-fig2-supp-fig4_randomization_ssim_synthetic"]
    assert "Theorem 1" in ssim.caption and "second moment" in ssim.caption
    assert "Theorem 4" in figures["supp-fig5_randomization_mse_synthetic"].caption


def test_randomization_lines_are_the_aggregate_means(aggregated_run, figures) -> None:
    stats = pd.read_parquet(aggregated_run / "aggregates/randomization_stats.parquet")
    (axis,) = figures["paper-fig2-supp-fig4_randomization_ssim_synthetic"].figure.axes
    for line in axis.get_lines():
        if line.get_linestyle() == "--":
            continue
        expected = stats.query("metric == 'ssim' and normalization == 'second_moment' and not absolute "
                               "and method == @line.get_label()").sort_values("stage")["mean"]
        assert np.allclose(line.get_ydata(), expected)


def test_one_stage_modes_are_points_with_ci_bars(tmp_path) -> None:
    """Single layers randomized one at a time are not a sequence: points with CI bars, dodged per
    method, and an axis title that says what each position means."""
    def tables(images, shard):
        table = randomization_rows(images, shard, ["a", "b"], [1, 2], lambda **k: 0.5 + 0.1 * k["stage"],
                                   metrics=["ssim"])
        return {"randomization": table.set_column(table.schema.get_field_index("mode"), "mode",
                                                  pa.array(["independent"] * table.num_rows))}

    out = fake_output(tmp_path / "out", tables=tables)
    results = open_results(str(out))
    figures = {f.name: f for f in paper_figures(results, compute_aggregates(results, BootstrapSettings(resamples=50)))}
    figure = figures["randomization_ssim_independent_second_moment_synthetic"]
    (axis,) = figure.figure.axes
    assert bands(axis) == 0 and len(axis.containers) == 2  # one errorbar container per method
    assert "layer randomized alone" in axis.get_xlabel()
    points = figure.data["points"]
    assert np.allclose(points.sort_values(["method", "stage"])["mean"], [0.6, 0.7, 0.6, 0.7])
    assert points.groupby("stage").x.nunique().eq(2).all()  # the two methods side by side, not on top


def test_heatmap_grids(figures) -> None:
    grid = figures["paper-fig4-fig7-style_maps_resnet34_synthetic_synthetic-00000"]
    columns = 2 + len(STAGES)  # input, trained, stages
    panels = [axis for axis in grid.figure.axes if axis.get_label() != "<colorbar>"]
    assert len(panels) == len(METHODS) * columns and len(grid.figure.axes) == len(panels) + 1  # + the colour bar
    images = [sum(isinstance(a, AxesImage) for a in axis.get_children()) for axis in panels]
    assert sum(images) == 1 + len(METHODS) * (1 + len(STAGES))  # the input once, then every map
    title = grid.figure._suptitle.get_text()
    assert "target class " in title and "untrained (random weights)" in title and "synthetic-00000" in title
    cells = grid.data["cells"]
    assert len(cells) == 1 + len(METHODS) * (1 + len(STAGES)) and set(cells.stage) == {0, *STAGES}
    seeds = figures["paper-fig4-style_seeds_resnet34_synthetic_synthetic-00000"].figure
    panels = [axis for axis in seeds.axes if axis.get_label() != "<colorbar>"]
    assert len(panels) == len(METHODS) * (2 + len(SEEDS))
    assert [a.get_title() for a in panels[: 2 + len(SEEDS)]] == ["input", "trained", "seed 0", "seed 1"]


def test_files_are_valid_png_and_pdf(aggregated_run, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(aggregated_run, out)
    assert main(["plot", str(out), "--no-progress", "--map-images", "1"]) == 0
    names = {p.stem for p in (out / "figures").glob("*.png")}
    assert names == {n for n in EXPECTED if "synthetic-0000" not in n or n.endswith("00000")}
    for stem in names:
        png = (out / "figures" / f"{stem}.png").read_bytes()
        pdf = (out / "figures" / f"{stem}.pdf").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and matplotlib.image.imread(io.BytesIO(png)).shape[2] in (3, 4)
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF") and b"/Type /Page" in pdf
    assert "figures" in capsys.readouterr().err


def test_activation_and_logit_figures(tmp_path) -> None:
    def tables(images, shard):
        return {
            "activations": activation_rows(images, shard, 5, lambda layer, image: 0.15 * layer),
            "logits": logit_rows(images, shard, [1, 2, 3]),
        }

    out = fake_output(tmp_path / "out", tables=tables)
    results = open_results(str(out))
    aggregates = compute_aggregates(results, BootstrapSettings(resamples=50))
    levels = [0.95, 0.9, 0.85]
    overtaking = pd.DataFrame([
        {"model": "resnet34", "dataset": "synthetic", "layer": f"layer{i}", "layer_index": i, "q_high": h, "q_low": l,
         "k": 2.0, "gamma": np.sqrt(l / (1 - h)), "probability": 0.5 - np.arctan(2.0 / np.sqrt(l / (1 - h))) / np.pi,
         "inverted": False, "images": 8}
        for i in range(5) for h in levels for l in (0.5, 0.4, 0.3, 0.2, 0.1)
    ])
    figure = overtaking_figure(overtaking, "resnet34", "synthetic")
    assert figure.name == "supp-fig7-9_overtaking_resnet34_synthetic" and len(figure.figure.axes) == 5
    assert all(lines(axis) == 3 and all(len(l.get_xdata()) == 5 for l in axis.get_lines()) for axis in figure.figure.axes)
    nonpositive = nonpositive_figure(aggregates["activation_stats"].to_pandas(), "synthetic")
    (axis,) = nonpositive.figure.axes
    assert nonpositive.name == "supp-fig10_nonpositive_synthetic" and lines(axis) == 1
    assert np.allclose(axis.get_lines()[0].get_ydata(), 0.15 * np.arange(5))
    correlation = logit_correlation_figure(aggregates["logit_stats"].to_pandas(), "resnet34", "synthetic")
    (axis,) = correlation.figure.axes
    assert len(axis.containers) == 2 and [t.get_text() for t in axis.get_xticklabels()] == ["layer1", "layer2", "layer3"]
    points = correlation.data["points"]
    assert set(points.metric) == {"pearson", "spearman"} and (points["count"] == 8).all()
    assert np.allclose(points.query("metric == 'pearson'").sort_values("stage")["mean"],
                       results.frame("logits").groupby("stage").pearson.mean())
    scatter = logit_scatter_figure(results.frame("logits"), "resnet34", "synthetic", images=3)
    assert scatter.name == "paper-fig5_logits_resnet34_synthetic" and len(scatter.figure.axes) == 3 * 3
    assert all(sum(isinstance(c, PathCollection) for c in a.collections) == 1 for a in scatter.figure.axes)
    assert len(scatter.figure.axes[0].collections[0].get_offsets()) == 20  # every class logit
    # through plot_all: the optional figures appear when their tables exist
    aggregates["overtaking"] = to_arrow("overtaking", overtaking)
    names = {f.name for f in plot_all(results, aggregates, PlotOptions(formats=("png",)))}
    assert names == {"supp-fig7-9_overtaking_resnet34_synthetic", "supp-fig10_nonpositive_synthetic",
                     "paper-fig5_logit-correlation_resnet34_synthetic", "paper-fig5_logits_resnet34_synthetic"}
    assert "resnet34 · synthetic · 8 images" in figure.figure._suptitle.get_text()
    assert "8 images" in nonpositive.figure.axes[0].get_title()


def test_only_occlusion_gives_only_occlusion_figures(tmp_path) -> None:
    def tables(images, shard):
        return {"occlusion": occlusion_rows(images, shard, ["x", "y"], [15], lambda **k: np.linspace(1, 0, 31))}

    out = fake_output(tmp_path / "out", tables=tables)
    results = open_results(str(out))
    names = [f.name for f in paper_figures(results, compute_aggregates(results, BootstrapSettings(resamples=20)))]
    assert names == ["paper-fig1_occlusion_k15_synthetic"]


def test_labels_are_drawn_literally(tmp_path) -> None:
    """Issue 16 item 3: method labels and image ids come from users and files; a `$` in them is drawn
    as a dollar, never handed to matplotlib's math parser (which raised on `$\\foo{$` in plot and report)."""
    from benchmark.results.plots.style import encode
    from matplotlib.text import Text

    bad = ["$\\foo{$", "cost $5 and $10"]

    def tables(images, shard):
        return {
            "occlusion": occlusion_rows(images, shard, bad, [15], lambda **k: np.linspace(1, 0, 31)),
        }

    out = fake_output(tmp_path / "out", tables=tables)
    results = open_results(str(out))
    figures = list(paper_figures(results, compute_aggregates(results, BootstrapSettings(resamples=20))))
    (occlusion,) = figures
    texts = occlusion.figure.findobj(Text)
    assert set(bad) <= {text.get_text() for text in texts}  # the legend shows the labels as written
    assert not any(text.get_parse_math() for text in texts)
    for fmt in ("png", "pdf", "svg"):  # every text drawn: no math parsing anywhere
        encode(occlusion.figure, fmt)
    assert main(["plot", str(out), "--no-progress"]) == 0 and main(["report", str(out), "--no-progress"]) == 0
    assert "$\\foo{$" in (out / "report.html").read_text()
