"""Atom-level SMILES tokenizer and vocabulary, the input of the sequence baseline.

The regular expression splits a SMILES string into bracket atoms (``[NH3+]``), two-letter
elements (``Cl``, ``Br``), one-letter and aromatic atoms, ring-bond digits (``1``, ``%12``),
bonds and branches, the atom-level scheme of Schwaller et al. 2019 ("Molecular Transformer",
ACS Cent. Sci.). Joining the tokens gives back the string, and a character the scheme does not
know is an error rather than a silent drop.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

SMILES_PATTERN = (
    r"\[[^\[\]]+\]"  # bracket atom: isotope, element, chirality, hydrogens, charge, class
    r"|Br|Cl"  # two-letter elements of the organic subset
    r"|[BCNOSPFI]|[bcnosp]"  # one-letter atoms and aromatic atoms
    r"|%\d{2}|\d"  # ring-bond numbers
    r"|[-=#$:/\\.~]"  # bonds (and the dot of disconnected parts)
    r"|[()]"  # branches
    r"|[*+@?>]"  # wildcard and reaction/stereo punctuation
)
_REGEX = re.compile(SMILES_PATTERN)

PAD, UNK = "<pad>", "<unk>"


def tokenize(smiles: str) -> list[str]:
    """Splits a SMILES string into atom-level tokens; ``"".join(tokenize(s)) == s``.

    Raises:
        TypeError: ``smiles`` is not a string.
        ValueError: ``smiles`` holds a character outside the SMILES alphabet (the error names
            its position).
    """
    if not isinstance(smiles, str):
        raise TypeError(f"smiles must be a str, got {type(smiles).__name__}")
    tokens = _REGEX.findall(smiles)
    if sum(map(len, tokens)) != len(smiles):
        pos = 0
        for m in _REGEX.finditer(smiles):
            if m.start() != pos:
                break
            pos = m.end()
        raise ValueError(f"smiles {smiles!r}: cannot tokenize {smiles[pos:pos + 8]!r} at position {pos}")
    return tokens


class SmilesVocab:
    """Token <-> id table built from training SMILES; id 0 is padding, id 1 is unknown.

    Tokens are numbered by decreasing frequency (ties alphabetically), so the vocabulary is a
    deterministic function of the training split.

    Args:
        tokens: the non-special tokens, in id order (ids start at 2).
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if len(set(tokens)) != len(tokens) or PAD in tokens or UNK in tokens:
            raise ValueError("tokens must be unique and must not contain the special tokens")
        self.itos: list[str] = [PAD, UNK, *tokens]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    pad_index = 0
    unk_index = 1

    @classmethod
    def build(cls, smiles: Iterable[str], min_count: int = 1) -> "SmilesVocab":
        """The vocabulary of every token seen at least ``min_count`` times in ``smiles``."""
        counts: Counter[str] = Counter()
        for s in smiles:
            counts.update(tokenize(s))
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, smiles: str) -> Tensor:
        """Token ids of ``smiles``; tokens not in the vocabulary map to :attr:`unk_index`.

        Shapes:
            -> ``[num_tokens]`` (int64).
        """
        return torch.tensor([self.stoi.get(t, self.unk_index) for t in tokenize(smiles)], dtype=torch.long)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The string of ``ids``, padding dropped (an unknown token decodes as ``<unk>``)."""
        return "".join(self.itos[i] for i in torch.as_tensor(ids).tolist() if i != self.pad_index)

    def encode_batch(self, smiles: Sequence[str], max_length: int | None = None) -> tuple[Tensor, Tensor]:
        """Encodes and right-pads a batch.

        Args:
            smiles: the strings.
            max_length: pad (or, if shorter, refuse) to this many tokens; default the longest.

        Returns:
            ``(tokens, lengths)``.

        Raises:
            ValueError: a string has more than ``max_length`` tokens.

        Shapes:
            -> tokens ``[B, L]`` (int64, padded with 0), lengths ``[B]``.
        """
        return pad([self.encode(s) for s in smiles], max_length)

    def state_dict(self) -> dict[str, list[str]]:
        return {"tokens": self.itos[2:]}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[str]]) -> "SmilesVocab":
        return cls(state["tokens"])

    def __repr__(self) -> str:
        return f"SmilesVocab(size={len(self)})"


def pad(sequences: Sequence[Tensor], max_length: int | None = None, value: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pads 1-D id tensors into a ``[B, L]`` batch and returns it with the lengths.

    Raises:
        ValueError: a sequence is longer than ``max_length``.
    """
    lengths = torch.tensor([s.numel() for s in sequences], dtype=torch.long)
    longest = int(lengths.max()) if len(sequences) else 0
    if max_length is None:
        max_length = longest
    elif longest > max_length:
        raise ValueError(f"a sequence has {longest} tokens, more than max_length={max_length}")
    out = torch.full((len(sequences), max_length), value, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : s.numel()] = s
    return out, lengths


class EncodeSmiles:
    """PyG transform: stores ``data.tokens`` ``[1, max_length]`` and ``data.num_tokens`` ``[1]``
    from the SMILES string ``data[key]``, so that a DataLoader batch carries ``[B, max_length]``
    token ids and ``[B]`` lengths.
    """

    def __init__(self, vocab: SmilesVocab, max_length: int, key: str = "smiles") -> None:
        self.vocab, self.max_length, self.key = vocab, max_length, key

    def __call__(self, data):
        if not isinstance(getattr(data, self.key, None), str):
            raise ValueError(f"data.{self.key} must be the molecule's SMILES string")
        tokens, lengths = pad([self.vocab.encode(data[self.key])], self.max_length)
        data.tokens, data.num_tokens = tokens, lengths
        return data

    def __repr__(self) -> str:
        return f"EncodeSmiles({self.vocab!r}, max_length={self.max_length}, key={self.key!r})"


def read_qm9_smiles(folder: str | os.PathLike | None = None) -> list[str]:
    """The SMILES of every QM9 molecule, in dataset row order (``data.idx``), straight from
    qm9pack's CSV files.

    Fast (under a second): each CSV row is one line and the SMILES, which has no commas, is its
    third field, so no CSV parser is needed.

    Args:
        folder: the folder of ``qm9_part{1,2,3}.csv``; default qm9pack's data folder.

    Raises:
        FileNotFoundError: a CSV is missing.
        ValueError: a file does not have the expected header.
    """
    from gnnkit.data.qm9 import CSV_FILES, qm9pack_folder

    folder = Path(folder) if folder is not None else qm9pack_folder()
    out: list[str] = []
    for name in CSV_FILES:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"QM9 CSV {path} is missing (reinstall qm9pack)")
        with open(path) as f:
            header = next(f).split(",")
            if header[:3] != ["XYZ_file", "Index", "SMILES"]:
                raise ValueError(f"{path}: expected the columns XYZ_file, Index, SMILES first, got {header[:3]}")
            out.extend(line.split(",", 3)[2].strip('"') for line in f)
    return out
