import importlib.util
import pathlib
import re

import pytest
import torch

from gnnkit.data.smiles import EncodeSmiles, SmilesVocab, pad, read_qm9_smiles, tokenize


def _qm9_smiles() -> list[str]:
    # Straight from qm9pack's CSVs (no qm9pack import): the SMILES is the third column of each
    # row, and every row is one line.
    spec = importlib.util.find_spec("qm9pack")
    assert spec is not None and spec.submodule_search_locations, "qm9pack is not installed"
    folder = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data"
    out: list[str] = []
    for path in sorted(folder.glob("qm9_part*.csv")):
        with open(path) as fh:
            assert next(fh).split(",")[2] == "SMILES"
            out.extend(line.split(",", 3)[2].strip('"') for line in fh)
    return out


def test_round_trip_of_every_qm9_smiles():
    smiles = _qm9_smiles()
    assert len(smiles) == 130_831
    assert read_qm9_smiles() == smiles  # the dataset-order reader the benchmark uses
    vocab_seen = set()
    for s in smiles:
        tokens = tokenize(s)
        assert "".join(tokens) == s, s
        vocab_seen.update(tokens)
    # Atom level: no token splits a bracket atom or a two-letter element.
    assert {"[NH3+]", "[O-]", "C", "N", "O", "F", "=", "#", "(", ")", "1"} <= vocab_seen
    assert all(len(t) == 1 or t.startswith("[") for t in vocab_seen)
    vocab = SmilesVocab.build(smiles[:100_000])
    for s in smiles[100_000:][::50]:
        ids = vocab.encode(s)
        if vocab.unk_index not in ids:
            assert vocab.decode(ids) == s


def test_tokenizer_pieces():
    assert tokenize("C[C@@H](Cl)c1ccccc1Br") == ["C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "c", "c", "c", "1", "Br"]
    assert tokenize("C%12CC%12") == ["C", "%12", "C", "C", "%12"]
    assert tokenize("F/C=C\\F.[Na+]") == ["F", "/", "C", "=", "C", "\\", "F", ".", "[Na+]"]
    assert tokenize("") == []
    with pytest.raises(ValueError, match="position 2"):
        tokenize("CC&C")
    with pytest.raises(ValueError, match="position 1"):
        tokenize("C[NH3")
    with pytest.raises(TypeError, match="smiles"):
        tokenize(None)


def test_vocab_encode_pad_and_unknown():
    vocab = SmilesVocab.build(["CCO", "C=O", "CC#N"])
    assert vocab.itos[:3] == ["<pad>", "<unk>", "C"] and len(vocab) == 7
    tokens, lengths = vocab.encode_batch(["CCO", "C[O-]"], max_length=6)
    assert tokens.shape == (2, 6) and lengths.tolist() == [3, 2]
    assert tokens[1].tolist() == [vocab.stoi["C"], vocab.unk_index, 0, 0, 0, 0]
    assert vocab.decode(tokens[0]) == "CCO"
    assert SmilesVocab.from_state_dict(vocab.state_dict()).itos == vocab.itos
    with pytest.raises(ValueError, match="max_length"):
        vocab.encode_batch(["CCCCCC"], max_length=3)
    with pytest.raises(ValueError, match="special"):
        SmilesVocab(["<pad>"])
    padded, lens = pad([torch.tensor([3, 4]), torch.tensor([5])])
    assert padded.tolist() == [[3, 4], [5, 0]] and lens.tolist() == [2, 1]


def test_encode_transform():
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader

    vocab = SmilesVocab.build(["CCO", "C=O"])
    transform = EncodeSmiles(vocab, max_length=5)
    data = [transform(Data(smiles=s, num_nodes=1)) for s in ("CCO", "C=O", "O")]
    batch = next(iter(DataLoader(data, batch_size=3)))
    assert batch.tokens.shape == (3, 5) and batch.num_tokens.tolist() == [3, 3, 1]
    with pytest.raises(ValueError, match="smiles"):
        transform(Data(num_nodes=1))
    assert re.search("max_length=5", repr(transform))
