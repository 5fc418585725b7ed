"""Text side of the pipeline: normalisation and the character vocabulary."""

from cssl.text.normalize import from_letters, normalize_text, to_letters, words
from cssl.text.vocab import Vocabulary

__all__ = ["Vocabulary", "from_letters", "normalize_text", "to_letters", "words"]
