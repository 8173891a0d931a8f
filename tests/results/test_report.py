"""`benchmark report`: one self-contained, escaped HTML page with the manifest, every figure,
the aggregate tables, rankings, tau and errors; rendered in headless Chromium to check that
every figure loads. Also every command end to end on the real run, and on an empty output."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from benchmark.cli.main import main
from benchmark.engine.shard import shard_failure_rows
from benchmark.results import OutputStore, ShardWriter
from benchmark.results.query import open_results

from .conftest import SAVED

FIGURES = 5 + 2 * SAVED  # occlusion k8 and k4, ssim, mse, spearman; a stage and a seed grid per saved image
HOSTILE = "<script>alert('x')</script> & \"quotes\""


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """Report of a copy of the real run with one failed shard whose reason holds HTML."""
    out = tmp_path_factory.mktemp("report") / "out"
    shutil.copytree(tiny_run, out)
    store = OutputStore(str(out))
    manifest = store.read_json("manifest.json")
    ShardWriter(store, {"model": "resnet34", "dataset": "synthetic"}).record_failure(
        7, shard_failure_rows(7, 3, f"RuntimeError: {HOSTILE}\nTraceback line"), {"spec_hash": manifest["spec_hash"]}
    )
    assert main(["report", str(out), "--no-progress"]) == 0  # computes the aggregates itself
    return out, (out / "report.html").read_text(encoding="utf-8")


def test_report_is_self_contained_and_embeds_every_figure(report) -> None:
    out, html = report
    images = re.findall(r'<img src="([^"]*)"', html)
    assert len(images) == FIGURES and all(src.startswith("data:image/png;base64,") for src in images)
    assert len(list((out / "figures").glob("*.png"))) == FIGURES  # the files were written too
    external = [m for m in re.findall(r'(?:src|href)="([^"]*)"', html) if not m.startswith(("data:", "#"))]
    assert external == [] and "<link" not in html and "<script" not in html


def test_report_sections(report) -> None:
    out, html = report
    results = open_results(str(out))
    headings = ("The gap, honestly: randomization checks vs. faithfulness", "Run",
                "The gap: randomization check vs. faithfulness", "Method rankings", "Figures",
                "Sign flips of the explained logit", "Aggregate tables", "Errors", "Manifest")
    for number, heading in enumerate(headings, start=1):
        assert f'<span class="num">{number}</span>{heading}</h2>' in html
    # a table of contents: every section and every figure, linked to its anchor
    contents = re.search(r'<nav class="toc">(.*?)</nav>', html).group(1)
    anchors = re.findall(r'href="#([^"]+)"', contents)
    assert anchors[:5] == ["agreement", "run", "gap", "rankings", "figures"] and len(anchors) == len(headings) + FIGURES
    # the agreement table is the headline; random weights are said at the top
    assert html.index("The model has untrained weights") < html.index("<h2")
    assert "MIF blur k=8" in html and "the CI includes 0" in html
    assert all(f'id="{anchor}"' in html for anchor in anchors)
    assert "Figure 1.</span>" in html and f"Figure {FIGURES}.</span>" in html
    # wide tables scroll sideways; long ones are collapsed
    assert html.count('<div class="scroll">') >= 4 and re.search(r"<details><summary>occlusion_curves: \d+ rows", html)
    assert "precision" not in re.search(r'<table class="kv">(.*?)</table>', html).group(1)  # a CPU run: no TF32
    # the sign-flip diagnostic: one row per stage, right after the figures
    flips = results.aggregate("sign_flip_stats").to_pandas()
    assert "fraction flipped" in html and len(flips) == 2
    assert html.index('id="sign_flips"') > html.index('id="figures"') and html.index('id="sign_flips"') < html.index('id="tables"')
    assert results.manifest["run_id"] in html and results.manifest["spec_hash"] in html
    assert "Kendall&#x27;s τ = " in html and "occlusion faithfulness (auc, kernel 8)" in html
    assert "randomization_stats" in html and "occlusion_scores" in html
    assert "check: mean over stages" in html and "occlusion auc k=8" in html
    assert "supp-fig1_occlusion_k8_synthetic" in html and "paper-fig2-supp-fig4_randomization_ssim_synthetic" in html


def test_report_escapes_text_and_lists_errors(report) -> None:
    _, html = report
    assert HOSTILE not in html and "alert(" in html
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; \"quotes\"" in html  # element text: <, >, & escaped
    assert "1 error rows" in html and "Failed shards: 7" in html


def test_report_lists_unreadable_images_with_their_reasons(run_copy) -> None:
    store = OutputStore(str(run_copy))
    manifest = store.read_json("manifest.json")
    writer = ShardWriter(store, {"model": "resnet34", "dataset": "synthetic"})
    errors = pa.table({"where": ["load", "load", "load"], "image_id": ["a", "b", "c"],
                       "source": ["/d/a.JPEG", "/d/b.JPEG", "/d/c.JPEG"], "shard": pa.array([9, 9, 9], pa.int32()),
                       "attempt": pa.array([1, 1, 1], pa.int32()),
                       "reason": ["/d/a.JPEG: corrupt or truncated image: image file is truncated",
                                  "/d/b.JPEG: corrupt or truncated image: image file is truncated",
                                  "/d/c.JPEG: not a readable image (unknown or corrupt format)"]})
    writer.record_failure(9, errors, {"spec_hash": manifest["spec_hash"]})
    assert main(["report", str(run_copy), "--no-progress", "--map-images", "0"]) == 0
    html = (run_copy / "report.html").read_text(encoding="utf-8")
    assert "3 images could not be read" in html
    assert "<li><b>2 × corrupt or truncated image: image file is truncated</b>: a, b</li>" in html
    assert "<li><b>1 × not a readable image (unknown or corrupt format)</b>: c</li>" in html


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(chromium() is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_every_figure_loads_in_headless_chromium(report, tmp_path) -> None:
    """A copy of the page gets a script recording, after the load event, how many images
    decoded to a real size; Chromium's serialised DOM then carries the counts."""
    _, html = report
    probe = """<script>window.addEventListener('load', () => {
      const images = Array.from(document.images);
      document.body.setAttribute('data-figures', images.length);
      document.body.setAttribute('data-loaded', images.filter(i => i.complete && i.naturalWidth > 0).length);
    });</script></body>"""
    page = tmp_path / "page.html"
    page.write_text(html.replace("</body>", probe), encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace("base64,iVBOR", "base64,AAAA", 1).replace("</body>", probe), encoding="utf-8")
    counts = {}
    for name, path in (("page", page), ("broken", broken)):
        command = [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / ('profile-' + name)}",
            "--virtual-time-budget=15000", "--dump-dom", path.as_uri(),
        ]
        dom = subprocess.run(command, capture_output=True, text=True, timeout=180).stdout
        body = re.search(r'<body data-figures="(\d+)" data-loaded="(\d+)"', dom)
        assert body, dom[:500]
        counts[name] = (int(body.group(1)), int(body.group(2)))
    assert counts["page"] == (FIGURES, FIGURES)
    assert counts["broken"] == (FIGURES, FIGURES - 1)  # the check does notice a figure that fails


@pytest.mark.skipif(chromium() is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_the_page_fits_1400_px_and_every_image_loads(tiny_run, tmp_path) -> None:
    """The report of a run with errors, rendered in headless Chromium at 1400 px: a screenshot (kept in
    the test's folder), every image decoded, nothing wider than the window (wide tables scroll in
    their own box), collapsed tables closed."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run, out)
    store = OutputStore(str(out))
    ShardWriter(store, {"model": "resnet34", "dataset": "synthetic"}).record_failure(
        8, shard_failure_rows(8, 3, "RuntimeError: " + "a_very_long_unbroken_reason_" * 40),
        {"spec_hash": store.read_json("manifest.json")["spec_hash"]})
    assert main(["report", str(out), "--no-progress"]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    probe = """<script>window.addEventListener('load', () => {
      const images = Array.from(document.images), root = document.documentElement;
      document.body.setAttribute('data-figures', images.length);
      document.body.setAttribute('data-loaded', images.filter(i => i.complete && i.naturalWidth > 0).length);
      document.body.setAttribute('data-overflow', root.scrollWidth - root.clientWidth);
      const wide = Array.from(document.querySelectorAll('.scroll')).filter(b => b.scrollWidth > b.clientWidth);
      document.body.setAttribute('data-scrolling', wide.length);
      document.body.setAttribute('data-open', document.querySelectorAll('details[open]').length);
    });</script></body>"""
    page = tmp_path / "page.html"
    page.write_text(html.replace("</body>", probe), encoding="utf-8")
    common = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1400,1000", "--virtual-time-budget=15000"]
    dom = subprocess.run(common + [f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    found = re.search(r'<body data-figures="(\d+)" data-loaded="(\d+)" data-overflow="(-?\d+)" '
                      r'data-scrolling="(\d+)" data-open="(\d+)"', dom)
    assert found, dom[:500]
    figures, loaded, overflow, scrolling, opened = map(int, found.groups())
    assert figures == loaded == FIGURES
    assert overflow <= 0  # the body never scrolls sideways at 1400 px
    assert scrolling >= 1  # the wide tables scroll in their own box instead
    assert opened == 0
    shot = tmp_path / "report-1400.png"
    subprocess.run(common + [f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, text=True, timeout=180)
    assert shot.is_file() and shot.read_bytes().startswith(b"\x89PNG")
    assert (out / "report.html").stat().st_size < 3_000_000


def test_every_command_on_the_real_run(aggregated_run, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(aggregated_run, out)
    assert main(["status", str(out)]) == 0
    assert main(["query", str(out), "SELECT count(*) AS n FROM randomization_stats"]) == 0
    assert main(["aggregate", str(out), "--no-progress", "--resamples", "100"]) == 0
    assert main(["plot", str(out), "--no-progress", "--map-images", "0"]) == 0
    assert main(["report", str(out), "--no-progress", "--map-images", "0"]) == 0
    captured = capsys.readouterr()
    assert "Kendall's τ" in captured.out and str(out / "report.html") in captured.out
    assert (out / "report.html").stat().st_size > 10_000


@pytest.mark.parametrize("command", ["aggregate", "plot", "report", "query"])
def test_commands_on_empty_and_unstarted_outputs(tmp_path, command, capsys) -> None:
    from .fakes import write_manifest

    extra = ["SELECT 1"] if command == "query" else []
    assert main([command, str(tmp_path), *extra]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    store = OutputStore(str(tmp_path / "started"))
    write_manifest(store, [0, 1, 2], 2)
    code = main([command, store.uri, *(["SELECT count(*) AS n FROM randomization"] if command == "query" else [])])
    captured = capsys.readouterr()
    if command == "query":  # queries of a run without results are fine: empty tables
        assert code == 0 and "0 of 3 shards committed" in captured.err and "0" in captured.out
    else:
        assert code == 2 and "0 of 3 shards committed" in captured.err and f"nothing to {command}" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("command", [[], ["query"], ["aggregate"], ["plot"], ["report"]])
def test_help_of_every_command(command, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0 and "usage: benchmark" in capsys.readouterr().out
