"""An endless stream of batches over epochs, with a position that checkpoints can hold.

The stream counts the batches the training loop has *consumed* (not those the data
loader has prefetched), so a checkpoint records exactly where training stands and a
resumed run continues with the next batch. Loading problems reported inside batches
are collected in :attr:`BatchStream.rejects`. A whole epoch without one usable utterance
(every file missing, corrupt or rejected) stops with a :class:`~cssl.utils.errors.DataError`
that names the rejects file, instead of looping forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cssl.data.dataset import Batch, Loader
from cssl.data.rejects import Rejects
from cssl.utils.errors import DataError


class BatchStream:
    """Yields non-empty batches forever, epoch after epoch.

    ``source`` names the data in messages (the manifest); ``rejects_path`` is where the
    skipped files are written should an epoch yield nothing.
    """

    def __init__(self, loader: Loader, source: str = "", rejects_path: str | Path | None = None) -> None:
        self.source = source or str(loader.dataset.manifest.root)
        self.loader = loader
        self.epoch = 0
        self.consumed = 0
        self.rejects = Rejects()
        self.rejects.extend(loader.rejects)
        self.rejects_path = None if rejects_path is None else Path(rejects_path)
        self._iter: Iterator[Batch] | None = None
        self._whole_epoch = False
        self._usable = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def gathered_state(self, accel) -> dict:
        """The checkpoint's position: rank 0's, and every process's own under ``ranks`` (a process that met an
        unusable batch took one more than the others; a collective call: all processes make it)."""
        state = self.state_dict()
        if accel.num_processes > 1:
            from accelerate.utils import gather_object

            state = {**state, "ranks": [[s["epoch"], s["consumed"]] for s in gather_object([state])]}
        return state

    def load_state_dict(self, state: dict) -> None:
        if "consumed" not in state:
            raise DataError(f"{self.source}: the checkpoint was written by a run over shards, not over this manifest; "
                            "resume with the same sharded data.manifest, or start a new run with init=")
        epoch, consumed = state["epoch"], state["consumed"]
        sampler = self.loader.sampler
        ranks = state.get("ranks")
        if ranks and len(ranks) == getattr(sampler, "num_replicas", 1):  # the same processes: each its own place
            epoch, consumed = ranks[getattr(sampler, "rank", 0)]
        self.epoch = int(epoch)
        self.consumed = int(consumed)
        self._iter = None

    def __next__(self) -> Batch:
        while True:
            if self._iter is None:
                self.loader.set_epoch(self.epoch)
                sampler = self.loader.sampler
                sampler.load_state_dict({"epoch": self.epoch, "seed": sampler.state_dict()["seed"],
                                         "batches_done": self.consumed})
                self._iter = iter(self.loader)
                self._whole_epoch, self._usable = self.consumed == 0, 0
            try:
                batch = next(self._iter)
            except StopIteration:
                if self._whole_epoch and not self._usable:
                    self._no_usable_data()
                self.epoch += 1
                self.consumed = 0
                self._iter = None
                continue
            self.consumed += 1
            self.rejects.extend(batch.rejected)
            if len(batch):
                self._usable += 1
                return batch

    def _no_usable_data(self) -> None:
        raise no_usable_data(f"{self.source}: a whole epoch ({len(self.loader.dataset)} utterances)", self.rejects,
                             self.rejects_path, "Fix or rebuild the manifest (cssl data manifest).")

    def __iter__(self) -> BatchStream:
        return self


def no_usable_data(what: str, rejects: Rejects, rejects_path: Path | None, advice: str = "") -> DataError:
    """The error of an epoch without one usable utterance; writes the rejects file first."""
    where = ""
    if rejects_path is not None:
        rejects.write(rejects_path)
        where = f"; each file and its reason: {rejects_path}"
    return DataError(f"{what} gave no usable audio ({rejects.summary()}){where}." + (f" {advice}" if advice else ""))
