"""An endless stream of batches over epochs, with a position that checkpoints can hold.

The stream counts the batches the training loop has *consumed* (not those the data
loader has prefetched), so a checkpoint records exactly where training stands and a
resumed run continues with the next batch. Loading problems reported inside batches
are collected in :attr:`BatchStream.rejects`.
"""

from __future__ import annotations

from collections.abc import Iterator

from cssl.data.dataset import Batch, Loader
from cssl.data.rejects import Rejects


class BatchStream:
    """Yields non-empty batches forever, epoch after epoch."""

    def __init__(self, loader: Loader) -> None:
        self.loader = loader
        self.epoch = 0
        self.consumed = 0
        self.rejects = Rejects()
        self._iter: Iterator[Batch] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.consumed = int(state["consumed"])
        self._iter = None

    def __next__(self) -> Batch:
        while True:
            if self._iter is None:
                self.loader.set_epoch(self.epoch)
                sampler = self.loader.sampler
                sampler.load_state_dict({"epoch": self.epoch, "seed": sampler.state_dict()["seed"],
                                         "batches_done": self.consumed})
                self._iter = iter(self.loader)
            try:
                batch = next(self._iter)
            except StopIteration:
                self.epoch += 1
                self.consumed = 0
                self._iter = None
                continue
            self.consumed += 1
            self.rejects.extend(batch.rejected)
            if len(batch):
                return batch

    def __iter__(self) -> BatchStream:
        return self
