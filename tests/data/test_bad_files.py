"""Issue 16 item 4: files that are not what their name says. A named pipe called x.JPEG hung the
run forever; a 16-bit grayscale PNG decoded to 99.6 % white; a file we may not read was reported
as "corrupt or truncated". Each is now an error row with the real reason (or, for the PNG, the
right pixels), and a read that does not return is abandoned after a timeout."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.config import validate_job
from benchmark.data import ImageError, Preprocess, build_dataset, load_images, select_records
from benchmark.data.fixtures import imagenet_name
from benchmark.data.images import read_file, read_rgb

ROOT = Path(__file__).resolve().parents[2]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")


def gradient16(height: int = 40, width: int = 48) -> np.ndarray:
    """16-bit grayscale values spanning 0..65535."""
    return np.linspace(0, 65535, height * width).round().astype(np.uint16).reshape(height, width)


def png16(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "PNG")
    return buffer.getvalue()


def call_with_timeout(function, timeout: float):
    """Run ``function`` in a daemon thread; (finished, result or exception)."""
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = function()
        except BaseException as error:  # handed back to the test
            box["result"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), box.get("result")


def release_fifo(path: Path) -> None:
    """Open the writing end once, so a reader that blocked in open() before the fix returns."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(descriptor)
    except OSError:
        pass


@needs_fifo
def test_a_named_pipe_with_an_image_name_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "x.JPEG"
    os.mkfifo(fifo)
    try:
        finished, result = call_with_timeout(lambda: read_rgb(fifo), timeout=10)
    finally:
        release_fifo(fifo)
    assert finished, "reading a named pipe blocked"
    assert isinstance(result, ImageError)
    assert str(fifo) in str(result) and "not a regular file" in str(result) and "named pipe" in str(result)


@needs_fifo
def test_a_read_that_does_not_return_is_abandoned_after_the_timeout(tmp_path: Path) -> None:
    """The timeout itself, on a read that really blocks (a pipe nobody writes to)."""
    fifo = tmp_path / "stuck"
    os.mkfifo(fifo)
    try:
        finished, result = call_with_timeout(lambda: read_file(fifo, timeout=0.5, regular_only=False), timeout=10)
    finally:
        release_fifo(fifo)
    assert finished and isinstance(result, ImageError)
    assert "0.5 s" in str(result) and str(fifo) in str(result)


def test_a_16_bit_png_is_scaled_to_8_bits(tmp_path: Path) -> None:
    values = gradient16()
    path = tmp_path / "deep.JPEG"
    path.write_bytes(png16(values))
    assert Image.open(path).mode.startswith("I;16")
    image = read_rgb(path)
    expected = np.round(values / 257.0).astype(np.uint8)  # 0 -> 0, 65535 -> 255, linear
    assert image.dtype == np.uint8 and image.shape == (40, 48, 3)
    assert all(np.array_equal(image[..., c], expected) for c in range(3))
    assert (image == 255).mean() < 0.01  # was 99.6 % white


def test_32_bit_pixels_beyond_16_bits_are_refused_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "wide.tif"
    Image.fromarray(np.full((8, 8), 1 << 20, dtype=np.int32), mode="I").save(path)
    with pytest.raises(ImageError, match="outside 0..65535"):
        read_rgb(path)


def _unreadable(tmp_path: Path) -> Path:
    path = tmp_path / "locked.JPEG"
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 120, 200)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue())
    path.chmod(0)
    return path


def test_permission_denied_is_reported_as_such(tmp_path: Path) -> None:
    path = _unreadable(tmp_path)
    script = (
        "import sys\nfrom benchmark.data.images import read_rgb\nfrom benchmark.data import ImageError\n"
        "try:\n    read_rgb(sys.argv[1])\nexcept ImageError as error:\n    print(error)\nelse:\n    print('READ')\n"
    )
    command = [sys.executable, "-c", script, str(path)]
    if os.geteuid() == 0:  # root reads anything: take away the capability that lets it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert str(path) in message and "permission denied" in message.lower()
    assert "corrupt" not in message and "truncated" not in message


@needs_fifo
def test_the_fixture_folder_of_special_files_loads_with_real_reasons(fixture_root: Path) -> None:
    """`benchmark fixtures` writes them: imagenet_special/ (a flat ImageNet folder with labels)."""
    root = fixture_root / "imagenet_special"
    assert (root / "val" / f"{imagenet_name(22)}.JPEG").is_fifo()
    spec = validate_job({"name": "t", "model": {"name": "resnet34", "weights": "random"},
                         "dataset": {"kind": "imagenet", "root": str(root), "crop": 32},
                         "methods": [{"name": "gradient"}]})
    dataset = build_dataset(spec)
    records = select_records(spec, dataset)
    assert [r.image_id for r in records] == [imagenet_name(n) for n in (21, 22, 23)]
    finished, result = call_with_timeout(lambda: load_images(dataset, records, Preprocess.from_spec(spec.dataset)), 60)
    assert finished, "loading the special files blocked"
    batch, errors = result
    assert [e.image_id for e in errors] == [imagenet_name(22)] and "named pipe" in errors[0].reason
    assert batch.image_ids == [imagenet_name(21), imagenet_name(23)]
    deep = batch.pixels[1]  # the 16-bit PNG: a horizontal-ish gradient, not a white sheet
    assert 0.2 < float(deep.mean()) < 0.8 and float((deep > 0.99).float().mean()) < 0.05
