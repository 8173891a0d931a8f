"""The summary printed at the end of `benchmark run`: a few numbers per table the run wrote, and
the images that could not be read with their reasons; nothing misleading for runs that only write
activations or logits."""

from __future__ import annotations

import pyarrow as pa

from benchmark.results import OutputStore
from benchmark.results.summary import format_summary

from .fakes import activation_rows, fake_output, logit_rows


def test_a_run_of_activations_and_logits_summarises_them(tmp_path) -> None:
    def tables(images, shard):
        return {"activations": activation_rows(images, shard, 3, lambda layer, image: 0.25 * layer),
                "logits": logit_rows(images, shard, [1, 2])}

    text = format_summary(OutputStore(str(fake_output(tmp_path / "out", tables=tables))))
    assert "No committed results" not in text and "SSIM" not in text and "Occlusion" not in text
    assert "Logits: mean correlation" in text and "1: layer1" in text and "2: layer2" in text
    assert "Activations:" in text and "layer2" in text and "0.500" in text
    assert "could not be read" not in text


def test_unreadable_images_are_counted_with_their_reasons(tmp_path) -> None:
    def tables(images, shard):
        reasons = ["corrupt or truncated image: image file is truncated", "not a readable image"]
        return {
            "activations": activation_rows(images[1:], shard, 1, lambda layer, image: 0.5),
            "errors": pa.table({
                "where": ["load"], "image_id": [images[0]], "source": [f"/data/{images[0]}.JPEG"],
                "shard": pa.array([shard], pa.int32()), "attempt": pa.array([1], pa.int32()),
                "reason": [f"/data/{images[0]}.JPEG: {reasons[shard % 2]}"],
            }),
        }

    text = format_summary(OutputStore(str(fake_output(tmp_path / "out", tables=tables))))
    assert "2 images could not be read and are left out" in text and "the run itself succeeded" in text
    assert "1 × corrupt or truncated image: image file is truncated (img-000)" in text
    assert "1 × not a readable image (img-004)" in text
