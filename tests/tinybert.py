"""A tiny sentence-transformers BERT model that tests make in a folder (no download, no torch).

Hidden size 16, two heads, one layer whose attention and feed-forward outputs are zero, so each
token's output is its word embedding, layer-normalised; position and type embeddings are zero.
With zero-mean word vectors, layer normalisation only rescales them, so a text's vector points
along the mean of its words' vectors. `WORDS` sets where words point: "protein" and "enzyme"
nearly along one axis, "robot" and "grasping" along another, "weather" and "forecasting" a
third; every other word of the vocabulary (and [CLS], [SEP], [UNK]) is the zero vector.
"""

from __future__ import annotations

import json
from pathlib import Path

HIDDEN = 16
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
OTHER = "in from at with of for sparse assays clutter scale design kinetics and the a".split()  # noqa: SIM905


def _axis(first: int, second: int = -1, tilt: float = 0.0) -> list[float]:
    """+1 on `first`, -1 on `first + 8` (zero mean), and `tilt` likewise on `second`."""
    v = [0.0] * HIDDEN
    v[first], v[first + 8] = 1.0, -1.0
    if second >= 0:
        v[second], v[second + 8] = tilt, -tilt
    return v


WORDS = {
    "protein": _axis(0, 1, 0.2),
    "enzyme": _axis(0),
    "robot": _axis(2, 3, 0.2),
    "grasping": _axis(2),
    "weather": _axis(4, 5, 0.2),
    "forecasting": _axis(4),
}


def make_tiny_model(folder: Path, *, pooling: str = "mean", layers: int = 1) -> Path:
    """Write the model files into `folder` and return it; `pooling` is "mean" or "cls"."""
    import numpy as np
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate([*SPECIAL, *WORDS, *OTHER])}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "hidden_size": HIDDEN,
        "num_attention_heads": 2,
        "num_hidden_layers": layers,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "vocab_size": len(vocab),
        "layer_norm_eps": 1e-12,
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    modes = {"pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean"}
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": HIDDEN, **modes})
    )
    words = np.zeros((len(vocab), HIDDEN), dtype=np.float32)
    for word, vector in WORDS.items():
        words[vocab[word]] = vector
    rng = np.random.default_rng(0)
    weights = {
        "embeddings.word_embeddings.weight": words,
        "embeddings.position_embeddings.weight": np.zeros((64, HIDDEN), dtype=np.float32),
        "embeddings.token_type_embeddings.weight": np.zeros((2, HIDDEN), dtype=np.float32),
        "embeddings.LayerNorm.weight": np.ones(HIDDEN, dtype=np.float32),
        "embeddings.LayerNorm.bias": np.zeros(HIDDEN, dtype=np.float32),
    }
    shapes = {
        "attention.self.query": (HIDDEN, HIDDEN),
        "attention.self.key": (HIDDEN, HIDDEN),
        "attention.self.value": (HIDDEN, HIDDEN),
        "attention.output.dense": (HIDDEN, HIDDEN),
        "intermediate.dense": (32, HIDDEN),
        "output.dense": (HIDDEN, 32),
    }
    for layer in range(layers):
        p = f"encoder.layer.{layer}."
        for name, shape in shapes.items():
            # Query, key, value and the first feed-forward layer are random (they run, and must
            # not matter); the two projections back onto the residual stream are zero.
            zero = name in ("attention.output.dense", "output.dense")
            weights[f"{p}{name}.weight"] = (
                np.zeros(shape, np.float32) if zero else rng.normal(size=shape).astype(np.float32)
            )
            weights[f"{p}{name}.bias"] = np.zeros(shape[0], dtype=np.float32)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[f"{p}{norm}.weight"] = np.ones(HIDDEN, dtype=np.float32)
            weights[f"{p}{norm}.bias"] = np.zeros(HIDDEN, dtype=np.float32)
    save_file(weights, str(folder / "model.safetensors"))
    return folder
