"""Loading overlaps compute: the next batch is decoded while the caller holds the current one, each image once."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np

from benchmark.data import ImageDataset, ImageError, ImageRecord, Preprocess, prefetch_batches


class Counting(ImageDataset):
    kind = "counting"

    def __init__(self, count: int) -> None:
        self.count = count
        self.calls: Counter[str] = Counter()
        self.threads: set[str] = set()
        self.second_batch_started = threading.Event()

    def index(self) -> list[ImageRecord]:
        return [ImageRecord(f"i{k}", f"mem:{k}", label=k) for k in range(self.count)]

    def decode(self, record: ImageRecord) -> np.ndarray:
        self.calls[record.image_id] += 1
        self.threads.add(threading.current_thread().name)
        if record.image_id == "i2":
            self.second_batch_started.set()
        if record.image_id == "i3":
            raise ImageError("broken on purpose")
        return np.full((40, 48, 3), int(record.image_id[1:]), np.uint8)


def test_next_batch_is_decoded_while_the_current_one_is_held() -> None:
    dataset = Counting(5)
    seen, errors = [], []
    for k, (batch, batch_errors) in enumerate(prefetch_batches(dataset, dataset.index(), Preprocess(32, 32), batch_size=2)):
        if k == 0:
            # the caller has not asked for batch 1 yet, but its decoding has started in the background
            assert dataset.second_batch_started.wait(timeout=30)
        seen.append(batch.image_ids)
        errors.extend(e.image_id for e in batch_errors)
        assert batch.labels.tolist() == [int(i[1:]) for i in batch.image_ids]
        assert [round(float(v) * 255) for v in batch.pixels[:, 0, 0, 0]] == batch.labels.tolist()
    assert seen == [["i0", "i1"], ["i2"], ["i4"]] and errors == ["i3"]
    assert dict(dataset.calls) == {f"i{k}": 1 for k in range(5)}  # each image decoded exactly once
    assert all(name.startswith("decode") for name in dataset.threads)  # never on the caller's thread


def test_no_records_no_batches() -> None:
    assert list(prefetch_batches(Counting(0), [], Preprocess(32, 32), batch_size=4)) == []
