"""CTC vocabularies of the peers and ours: the symbol mapping and the head rows that go with it.

Ours starts with ``<blank>``, ``<unk>``, ``|`` (:mod:`cssl.text.vocab`); a peer's blank
may be ``<pad>`` (transformers) or ``<s>`` (fairseq), anywhere in its list. Importing
reorders the CTC head's rows so that the logits are the peer's, permuted. Transcripts are
upper-cased by our text normalisation, so lower-case letters are upper-cased on import.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cssl.text.vocab import BLANK, SPECIALS, Vocabulary
from cssl.train.checkpoint import CheckpointError


def import_vocab(symbols: Sequence[str], blank: str, unk: str, sep: str, source: str) -> tuple[Vocabulary, list[int]]:
    """Our vocabulary for a peer's ``symbols`` (row order) and, per our id, the peer's row."""
    index = {s: i for i, s in enumerate(symbols)}
    for role, name in (("blank", blank), ("unknown", unk), ("word separator", sep)):
        if name not in index:
            raise CheckpointError(f"{source}: the vocabulary has no {role} symbol {name!r} "
                                  f"(first symbols: {list(symbols)[:8]})")
    rows = [index[blank], index[unk], index[sep]]
    rest = [i for i in range(len(symbols)) if i not in rows]
    names = [_our_name(symbols[i]) for i in rest]
    clash = {n for n in names if names.count(n) > 1 or n in SPECIALS}
    if clash:
        raise CheckpointError(f"{source}: symbols {sorted(clash)} collide once upper-cased; "
                              "cssl transcripts are upper-case")
    return Vocabulary(SPECIALS + tuple(names)), rows + rest


def export_symbols(vocab: Vocabulary, blank: str = "<pad>") -> list[str]:
    """The symbols of ``vocab`` in id order, with the blank named ``blank`` (a peer's pad token)."""
    symbols = list(vocab.symbols)
    symbols[vocab.blank] = blank if blank not in symbols else BLANK
    return symbols


def reorder_rows(head: dict[str, torch.Tensor], rows: Sequence[int]) -> dict[str, torch.Tensor]:
    """The CTC head (``weight`` (V, D), ``bias`` (V,)) with its rows in our order."""
    order = torch.as_tensor(list(rows), dtype=torch.long)
    return {name: value.index_select(0, order) for name, value in head.items()}


def _our_name(symbol: str) -> str:
    return symbol.upper() if len(symbol) == 1 else symbol

