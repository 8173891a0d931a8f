"""Issue 16 item 3: values that pass the types but cannot work are refused before any work, with
their key path: a zero or crop-sized occlusion tile, an SSIM window larger than the maps, a blur
larger than the image, a boundary pattern that matches nothing, a job name that leaves ``runs/``.
A method label that matplotlib's math parser cannot read is drawn literally instead (see
tests/results/test_plots.py::test_labels_are_drawn_literally)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.cli.main import main
from benchmark.config import SpecError, load_job, validate_job

from ..engine.jobs import TINY  # crop 32, resnet34 with random weights, occlusion kernel 8

BAD_VALUES = [
    # (override, key path the message must name, a word of the reason)
    ("occlusion.kernels=[0]", "occlusion.kernels.0", ">= 1"),
    ("occlusion.kernels=[8, -3]", "occlusion.kernels.1", ">= 1"),
    ("occlusion.kernels=[8, 32]", "occlusion.kernels.1", "dataset.crop"),
    ("occlusion.kernels=[40]", "occlusion.kernels.0", "dataset.crop"),
    ("metrics.ssim.win_size=99", "metrics.ssim.win_size", "32"),
    ("occlusion.blur_kernel=99", "occlusion.blur_kernel", "32"),
    ("name=../../etc", "name", "path"),
    ("name=a/b", "name", "path"),
    ("name=..", "name", "path"),
]


def job_file(tmp_path: Path, spec: dict = TINY) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(("override", "key", "reason"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_value_is_refused_at_load_naming_the_key(tmp_path, override, key, reason) -> None:
    with pytest.raises(SpecError) as error:
        load_job(job_file(tmp_path), [override])
    lines = str(error.value).splitlines()
    assert lines[0].startswith(f"{tmp_path / 'job.yaml'}: invalid job spec")
    assert any(line.strip().startswith(f"{key}:") and reason in line for line in lines[1:]), str(error.value)


def test_the_ssim_window_follows_skimages_effective_size(tmp_path) -> None:
    # Gaussian weights with win_size None: skimage's window is 2*int(3.5*sigma+0.5)+1; sigma 5 -> 37 > 32 px
    with pytest.raises(SpecError, match=r"metrics\.ssim\.win_size: .*37"):
        load_job(job_file(tmp_path), ["metrics.ssim.win_size=null", "metrics.ssim.gaussian_weights=true",
                                      "metrics.ssim.sigma=5"])
    load_job(job_file(tmp_path), ["metrics.ssim.win_size=31", "occlusion.kernels=[31]", "occlusion.blur_kernel=32"])


def test_the_checks_follow_the_section_they_need(tmp_path) -> None:
    """Occlusion values do not matter when occlusion is off; the SSIM window when SSIM is not computed."""
    validate_job({**TINY, "occlusion": {"enabled": False, "kernels": [64], "blur_kernel": 99}})
    validate_job({**TINY, "metrics": {"similarities": ["mse"], "ssim": {"win_size": 99}}})
    with pytest.raises(SpecError):
        validate_job({**TINY, "occlusion": {"enabled": False, "kernels": [0]}})  # never a valid tile


def test_every_problem_is_listed_at_once(tmp_path) -> None:
    with pytest.raises(SpecError) as error:
        load_job(job_file(tmp_path), ["occlusion.kernels=[0]", "metrics.ssim.win_size=99", "name=x/y"])
    assert "(3 problems)" in str(error.value)


def test_a_boundary_pattern_that_matches_nothing_fails_before_work(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["run", str(job_file(tmp_path)), "--executor", "inline", "--out", str(out), "--no-progress",
            "--set", "randomization.boundary=no_such_module"]
    assert main(args) == 2
    message = capsys.readouterr().err
    assert "randomization.boundary" in message and "conv" in message  # the key, and what the layers look like
    assert not (out / "manifest.json").exists() and not (out / "_commits").exists()


def test_max_boundaries_zero_needs_no_boundary(tmp_path) -> None:
    """Only the head randomized: a pattern matching nothing is fine then."""
    from benchmark.engine.driver import preflight_model

    plan, _, _ = preflight_model(validate_job({**TINY, "randomization": {"max_boundaries": 0, "boundary": "nothing"}}))
    assert [stage["modules"] for stage in plan["stages"]] == [["fc"]]


def test_job_names_with_dots_and_dashes_stay_fine() -> None:
    assert validate_job({**TINY, "name": "resnet-50_v1.5 (paper)"}).name == "resnet-50_v1.5 (paper)"
