"""The training loop's endless batch stream over a sharded corpus (``data.manifest=SHARDS/``).

The counterpart of :class:`~cssl.train.batch_stream.BatchStream` for shards: batches come from
:class:`~cssl.data.shard_loader.ShardStream` (dataloader workers read the shards); an entry is
marked used when the loop takes its batch, so prefetched batches are not counted. Each
process may reach the end of its share of an epoch at a different update and goes on with
the next epoch; the progress of every epoch still in flight on any process is kept, and a
checkpoint holds all processes' progress merged, so a run resumed with another number of
processes uses every utterance of each epoch once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from cssl.data.dataset import Batch
from cssl.data.rejects import Reject, Rejects
from cssl.data.shard_loader import EpochProgress, ShardStream, StreamConfig
from cssl.data.shards import ShardIndex
from cssl.train.batch_stream import no_usable_data
from cssl.utils.errors import DataError


class ShardBatchStream:
    """Yields non-empty :class:`~cssl.data.dataset.Batch` objects forever, epoch after epoch."""

    def __init__(self, index: ShardIndex, cfg: StreamConfig, rank: int = 0, world: int = 1, num_workers: int = 0,
                 rejects_path: str | Path | None = None) -> None:
        index.check()
        readers = world * max(1, num_workers)
        if len(index.shards) < readers:
            raise DataError(f"{index.root}: {len(index.shards)} shards for {readers} readers ({world} processes x "
                            f"{max(1, num_workers)} workers): write smaller shards (cssl data shard --shard-hours)")
        self.index, self.cfg, self.rank, self.world, self.num_workers = index, cfg, rank, world, num_workers
        self.source = str(index.root)
        self.epoch = 0
        self.progress: dict[int, EpochProgress] = {}
        self.marked: dict[int, int] = {}
        """Entries marked per epoch, repeats included: equal to the progress's size unless an entry came twice."""
        self.rejects = Rejects()
        self.rejects_path = None if rejects_path is None else Path(rejects_path)
        self._iter = None
        self._usable = 0

    def state_dict(self) -> dict[str, Any]:
        """This process's position (see :meth:`gathered_state` for the checkpoint's)."""
        return {"epoch": self.epoch, "progress": {str(e): p.state_dict() for e, p in self.progress.items()},
                "marked": {str(e): n for e, n in self.marked.items()}}

    def fingerprint(self) -> list[list]:
        """What the progress refers to: each shard's name, utterances and size."""
        return [[s.name, s.entries, s.bytes] for s in self.index.shards]

    def gathered_state(self, accel) -> dict[str, Any]:
        """Every process's progress merged (a collective call: all processes make it)."""
        from accelerate.utils import gather_object

        states = gather_object([self.state_dict()]) if accel.num_processes > 1 else [self.state_dict()]
        low = min(s["epoch"] for s in states)
        merged: dict[int, EpochProgress] = {}
        marked: dict[int, int] = {}
        for state in states:
            for epoch, count in state.get("marked", {}).items():
                if int(epoch) >= low:
                    marked[int(epoch)] = marked.get(int(epoch), 0) + count
            for epoch, progress in state["progress"].items():
                if int(epoch) >= low:
                    got = EpochProgress.from_state(progress)
                    merged[int(epoch)] = merged[int(epoch)].merge(got) if int(epoch) in merged else got
        for epoch in [e for e in self.progress if e < low]:
            del self.progress[epoch]  # every process is past it
            self.marked.pop(epoch, None)
        return {"epoch": low, "progress": {str(e): p.state_dict() for e, p in sorted(merged.items())},
                "marked": {str(e): n for e, n in sorted(marked.items())}, "index": self.fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "progress" not in state:
            raise DataError(f"{self.source}: the checkpoint was written by a run over a manifest, not over shards; "
                            "resume with the same data.manifest, or start a new run with init=")
        if "index" in state and [list(s) for s in state["index"]] != self.fingerprint():
            then = len(state["index"])
            raise DataError(f"{self.source}: the shards changed since the checkpoint was written ({then} shards then, "
                            f"{len(self.index.shards)} now, or different contents): its progress names positions in "
                            "the old shards. Resume with the folder as it was, or start a new run with init= and "
                            "the checkpoint")
        self.progress = {int(e): EpochProgress.from_state(p) for e, p in state["progress"].items()}
        # The merged count goes to rank 0 alone, so that the next merge sums it once.
        self.marked = {int(e): n for e, n in state.get("marked", {}).items()} if self.rank == 0 else {}
        self.epoch = int(state["epoch"])
        self._iter = None

    def __next__(self) -> Batch:
        while True:
            if self._iter is None:
                progress = self.progress.setdefault(self.epoch, EpochProgress(self.epoch))
                stream = ShardStream(self.index, self.cfg, self.epoch, self.rank, self.world,
                                     EpochProgress(self.epoch, {k: set(v) for k, v in progress.used.items()}))
                self._iter = iter(DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                                             collate_fn=lambda b: b, persistent_workers=False))
                self._usable = 0
            try:
                batch = next(self._iter)
            except StopIteration:
                if not self._usable and not self.progress[self.epoch].count():
                    self._no_usable_data()
                self.epoch += 1
                self._iter = None
                continue
            self.rejects.extend([Reject(name, "unreadable shard entry", error) for name, error in batch.bad])
            if not batch.items:
                continue
            self.progress[self.epoch].mark(batch.items)
            self.marked[self.epoch] = self.marked.get(self.epoch, 0) + len(batch.items)
            self._usable += 1
            return Batch(batch.waves, batch.lengths, batch.keys)

    def __iter__(self) -> ShardBatchStream:
        return self

    def _no_usable_data(self) -> None:
        if self.world == 1:
            what = f"{self.source}: a whole epoch ({self.index.entries} utterances)"
            advice = "Rewrite the shards (cssl data shard)."
        else:  # the shards are split among the processes: this one's share alone may be bad
            what = f"{self.source}: the shards of process {self.rank} of {self.world}, a whole epoch"
            advice = ("The shards are shared out among the processes and every process needs readable ones: rewrite "
                      "the unreadable shards (cssl data shard), or run with fewer processes.")
        raise no_usable_data(what, self.rejects, self.rejects_path, advice)
