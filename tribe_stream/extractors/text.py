"""Text features: each word through a causal LM (Llama-3.2-3B; Qwen3 for the mini variant) in its
context, mean over the word's own tokens, layer groups, summed into 2 Hz bins.

A word's context is the official one (`contexts.py`: the transcript re-joined sentence by
sentence, each `capitalize()`d, the word with the parts of up to 1024 words before it);
tokenised without BOS. The word's tokens are the context's tokens past those of
`context[:-len(word)].rstrip()` (at least one).

Live and offline share one code path: `KVDecoder` caches the context's keys and values, so a
word costs one forward over its new tokens (from the first token that differs when the context
stops extending the cached one). `reference_vectors` is the official full forward, the oracle.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tribe_stream.devices import pick_dtype, upload
from tribe_stream.errors import CheckpointError, InputError
from tribe_stream.extractors.accel import CudaGraphStep, compile_blocks
from tribe_stream.extractors.config import ModalitySettings
from tribe_stream.extractors.contexts import ContextWindow, word_contexts
from tribe_stream.extractors.grouped import GroupedExtractor
from tribe_stream.extractors.layers import needed_group_weights
from tribe_stream.extractors.loading import load_pretrained, locate
from tribe_stream.extractors.timing import place_words
from tribe_stream.types import Word

log = logging.getLogger(__name__)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


# RMSNorms computing `weight * (x.float() * rsqrt(mean(x^2) + eps)).to(dtype)`, as `transformers`
# writes them: run as one fused normalisation instead of their chain of small kernels
PLAIN_RMS_NORMS = ("LlamaRMSNorm", "Qwen3RMSNorm", "Qwen2RMSNorm", "MistralRMSNorm")


def _norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if type(norm).__name__ not in PLAIN_RMS_NORMS or not hasattr(norm, "variance_epsilon"):
        return norm(x)
    y = torch.nn.functional.rms_norm(x.float(), (x.shape[-1],), eps=norm.variance_epsilon)
    return norm.weight * y.to(x.dtype)


class _PreAttention(nn.Module):
    """One decoder layer up to attention: norm, q/k/v projections (q/k norms), rotary embedding.
    A module of its own so that `compile()` fuses it (all layers share one compiled graph)."""

    def __init__(self, layer: nn.Module, n_heads: int, n_kv: int, head_dim: int):
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv, self.head_dim = n_heads, n_kv, head_dim

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        attn, (b, n) = self.layer.self_attn, h.shape[:2]
        x = _norm(self.layer.input_layernorm, h)
        q = attn.q_proj(x).view(b, n, self.n_heads, self.head_dim)
        k = attn.k_proj(x).view(b, n, self.n_kv, self.head_dim)
        v = attn.v_proj(x).view(b, n, self.n_kv, self.head_dim)
        if hasattr(attn, "q_norm"):
            q, k = _norm(attn.q_norm, q), _norm(attn.k_norm, k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        # grouped-query attention without copying keys/values: the query heads sharing a kv head
        # become extra query rows of that head (rows r*n + t)
        return q.reshape(b, self.n_kv, -1, self.head_dim), k, v


class _PostAttention(nn.Module):
    """One decoder layer after attention: output projection, residual, norm, MLP, residual."""

    def __init__(self, layer: nn.Module, n_heads: int, head_dim: int):
        super().__init__()
        self.layer = layer
        self.n_heads, self.head_dim = n_heads, head_dim

    def forward(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        b, n = h.shape[:2]
        out = out.reshape(b, self.n_heads, n, self.head_dim).transpose(1, 2).reshape(b, n, -1)
        h = h + self.layer.self_attn.o_proj(out)
        return h + self.layer.mlp(_norm(self.layer.post_attention_layernorm, h))


class KVDecoder(nn.Module):
    """A decoder-only LM (Llama, Qwen3 as `transformers` builds them) run with its own KV cache.

    It calls the model's own modules with keys/values in preallocated buffers (no `transformers`
    cache API), so a forward can start at any cached position; layers past the last needed hidden
    state (numbered as `output_hidden_states`) never run. `forward` returns the layer groups
    `(L, D)` float32 of a weighted mean of the fed tokens, on the device.

    `pieces`: the per-layer modules around attention (`pre`, `post`) of another decoder of the
    same model, shared (compiled once for all); the KV cache and the CUDA graphs over it
    (`graphs`, made by `LiveText`) are this decoder's own.
    """

    def __init__(
        self,
        model: nn.Module,
        needed: list[int],
        group_weights: torch.Tensor,
        max_tokens: int = 2048,
        pieces: tuple[nn.ModuleList, nn.ModuleList] | None = None,
    ):
        super().__init__()
        cfg = model.config
        if "sliding_attention" in (getattr(cfg, "layer_types", None) or []):
            raise CheckpointError(
                "text models with sliding-window attention layers are not supported"
            )
        self.model = model
        self.needed = list(needed)
        self.n_total = int(cfg.num_hidden_layers)
        self.n_layers = max(1, max(self.needed))  # layers worth running (and caching)
        attn = model.layers[0].self_attn
        self.head_dim = int(attn.head_dim)
        self.n_heads = int(cfg.num_attention_heads)
        self.n_kv = int(cfg.num_key_value_heads)
        self.scaling = float(attn.scaling)
        self.length = 0  # tokens held in the cache
        layers = model.layers[: self.n_layers]
        if pieces is None:
            pieces = (
                nn.ModuleList(
                    _PreAttention(la, self.n_heads, self.n_kv, self.head_dim) for la in layers
                ),
                nn.ModuleList(_PostAttention(la, self.n_heads, self.head_dim) for la in layers),
            )
        self.pre, self.post = pieces
        self.fused = self.pre[0]._compiled_call_impl is not None  # shared pieces compiled
        self.graphs: dict[tuple, CudaGraphStep] = {}  # static steps over this cache (LiveText)
        p = next(model.parameters())
        self.register_buffer(
            "group_weights", group_weights.to(p.device, torch.float32), persistent=False
        )
        self._alloc(max_tokens)

    def _alloc(self, max_tokens: int) -> None:
        p = next(self.model.parameters())
        shape = (self.n_layers, 1, self.n_kv, max_tokens, self.head_dim)
        keys = torch.zeros(shape, dtype=p.dtype, device=p.device)
        values = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self.register_buffer("keys", keys, persistent=False)
        self.register_buffer("values", values, persistent=False)
        self.max_tokens = max_tokens

    def fuse(self) -> None:
        """`torch.compile` the per-layer pieces around attention (regional: every layer shares
        one graph per token count), used by the static-shape steps only; attention and the
        cache writes, whose shapes follow the span, stay as they are."""
        if not self.fused:
            if self.pre[0]._compiled_call_impl is None:
                compile_blocks([*self.pre, *self.post])
            self.fused = True

    def drop_graphs(self) -> None:
        """Free the CUDA graphs over this cache (and their memory pools) now."""
        for step in self.graphs.values():
            step.release()
        self.graphs.clear()

    def release(self) -> None:
        """Free this decoder's GPU memory now (graphs, KV cache), whoever still refers to it;
        it is unusable afterwards."""
        self.drop_graphs()
        self._alloc(0)
        self.length = 0

    def ensure_capacity(self, n_tokens: int) -> bool:
        """Grow the buffers (keeping their contents) when `n_tokens` would not fit; True if grown."""
        if n_tokens <= self.max_tokens:
            return False
        old_k, old_v, n = self.keys, self.values, self.length
        self.drop_graphs()  # they write into the old buffers
        self._alloc(_bucket(n_tokens, max(1, self.max_tokens)))
        self.keys[:, :, :, :n] = old_k[:, :, :, :n]
        self.values[:, :, :, :n] = old_v[:, :, :, :n]
        return True

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        weights: torch.Tensor,
        span: int,
        fused: bool = False,
    ) -> torch.Tensor:
        """Feed `input_ids (1, n)` at `positions (n,)`, writing their keys/values into the cache,
        attending to the first `span` cached positions (masked by position, so `span` may exceed
        the filled part: static shapes for CUDA graphs). `weights (n,)` float32: each fed token's
        weight in the token mean (0 for padding). `fused`: the compiled layer pieces (`fuse`)."""
        return step_many([self], input_ids, positions[None], weights[None], span, fused)[0]


@torch.inference_mode()  # never autograd: see the note below
def step_many(
    decoders: Sequence[KVDecoder],
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    weights: torch.Tensor,
    span: int,
    fused: bool = False,
) -> torch.Tensor:
    """`KVDecoder.forward` for B streams at once: row b of `input_ids`, `positions`, `weights`
    `(B, n)` goes into `decoders[b]`'s own cache and attends to its first `span` positions;
    `(B, L, D)`. The decoders share one model and its layer pieces: the projections and MLPs
    (the weights read, most of a step's time on a GPU) run once for all rows; each row's
    attention runs over its own cache. A decoder may appear in several rows fed the same
    (padding to a batch size: the same keys written twice).

    Always in inference mode, whoever calls it (`LiveText.warm` captured its CUDA graphs with
    autograd on): writing keys that require grad into the cache made the cache a node of the
    autograd graph, whose saved views of the cache refer back to it, a cycle in C++ that
    Python's gc never sees: every warmed stream's KV cache and its graphs' saved activations
    stayed allocated for good (issue 34: +1 GiB a stream on an H100)."""
    d0 = decoders[0]
    m, rep = d0.model, d0.n_heads // d0.n_kv
    h = m.embed_tokens(input_ids)  # (B, n, D)
    cos, sin = m.rotary_emb(h, positions)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    key_pos = torch.arange(span, device=h.device)
    allowed = key_pos[None, None, :] <= positions[:, :, None]  # (B, n, span) causal by position
    mask = torch.zeros((*positions.shape[:1], rep * positions.shape[1], span), dtype=h.dtype,
                       device=h.device)  # fmt: skip
    mask = mask.masked_fill_(~allowed.repeat(1, rep, 1), float("-inf"))[:, None]  # additive
    wts = weights.float()[:, None, :]  # (B, 1, n)
    means = []

    def keep(i: int, x: torch.Tensor) -> None:
        if i in d0.needed:
            means.append(torch.bmm(wts, x.float())[:, 0])  # (B, D)

    keep(0, h)
    use = fused and d0.fused
    for i in range(d0.n_layers):
        pre = d0.pre[i] if use else d0.pre[i].forward
        post = d0.post[i] if use else d0.post[i].forward
        q, k, v = pre(h, cos, sin)
        outs = []
        for b, dec in enumerate(decoders):
            dec.keys[i].index_copy_(2, positions[b], k[b : b + 1])
            dec.values[i].index_copy_(2, positions[b], v[b : b + 1])
            outs.append(
                torch.nn.functional.scaled_dot_product_attention(
                    q[b : b + 1],
                    dec.keys[i, :, :, :span],
                    dec.values[i, :, :, :span],
                    attn_mask=mask[b : b + 1],
                    scale=d0.scaling,
                )
            )  # (1, n_kv, rep * n, head_dim)
        h = post(h, outs[0] if len(outs) == 1 else torch.cat(outs))
        keep(i + 1, _norm(m.norm, h) if i + 1 == d0.n_total else h)
    return d0.group_weights @ torch.stack(means, dim=1)  # (L, n_needed) @ (B, n_needed, D)


def _bucket(n: int, smallest: int) -> int:
    """The power of two at least `n` (and at least `smallest`)."""
    b = smallest
    while b < n:
        b *= 2
    return b


class TextExtractor(GroupedExtractor):
    """Causal-LM text features: word vectors `(L, D)`, binned into `(L, D, T)`."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        settings: ModalitySettings,
        *,
        device: str = "cpu",
        compile: bool = False,
        max_tokens: int | None = None,
    ):
        n_states = self._setup(model, settings, device)
        self.tokenizer = tokenizer
        self.compile = compile
        self.needed, w = needed_group_weights(self.groups, n_states)
        self._weights = torch.from_numpy(w)
        self.max_tokens = max_tokens or (4096 if device.startswith("cuda") else 512)
        self.keep_idle = 8
        """Decoders (KV cache, CUDA graphs) of closed `LiveText`s kept for the next ones: a
        server's text memory follows its concurrent streams, and a new stream's steps are
        already made. Past this many idle, a closed context's memory is freed at once."""
        self._idle: list[KVDecoder] = []
        self._pool_lock = threading.Lock()
        self._pieces: tuple[nn.ModuleList, nn.ModuleList] | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | None = None,
        settings: ModalitySettings | None = None,
        *,
        device: str | None = "auto",
        dtype: torch.dtype | str | None = None,
        compile: bool = False,
        max_tokens: int | None = None,
    ) -> TextExtractor:
        """Load a causal LM folder (LlamaModel/AutoModel, with its tokenizer) or cached hub id."""
        from transformers import AutoModel, AutoTokenizer

        settings, folder, dev = locate(name_or_path, settings, "text", device)
        model = load_pretrained(
            AutoModel,
            folder,
            "text model",
            dtype=pick_dtype(dev, dtype, torch.bfloat16),
            attn_implementation="sdpa",
        )
        if not all(hasattr(model, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
            raise CheckpointError(
                f"{folder} loads as {type(model).__name__}, not a Llama/Qwen-style decoder; the text "
                "extractor needs a model with embed_tokens, layers, norm and rotary_emb"
            )
        tokenizer = load_pretrained(AutoTokenizer, folder, "text tokenizer")
        return cls(
            model.to(dev), tokenizer, settings, device=dev, compile=compile, max_tokens=max_tokens
        )

    def tokens(self, text: str) -> list[int]:
        """Token ids without special tokens (no BOS)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def group(self, states: torch.Tensor) -> np.ndarray:
        """Needed hidden-state means `(n_needed, D)` -> layer groups `(L, D)` float32."""
        if self._weights.device != states.device:
            self._weights = self._weights.to(states.device)
        return (self._weights @ states.float()).cpu().numpy()

    def live(
        self, overflow: str = "exact", token_steps: bool | None = None, fuse: bool | None = None
    ) -> LiveText:
        """A live word-by-word extractor keeping its context in a KV cache (see `LiveText`);
        `close()` it when its stream ends (its decoder goes back to the pool)."""
        return LiveText(self, overflow, token_steps, fuse)

    def _take_decoder(self) -> KVDecoder:
        """An idle decoder (empty context, its steps made) or a new one."""
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
        weights = torch.as_tensor(self._weights).float()
        dec = KVDecoder(self.model, self.needed, weights, self.max_tokens, self._pieces)
        self._pieces = (dec.pre, dec.post)
        return dec

    def _return_decoder(self, dec: KVDecoder) -> None:
        dec.length = 0
        with self._pool_lock:
            if len(self._idle) < self.keep_idle:
                self._idle.append(dec)
                return
        dec.release()

    def prefill(self, streams: int) -> int:
        """Have `streams` idle decoders, each with every static step made (`LiveText.warm`), so
        a server's first streams pay no warm-up either; the pool keeps at least that many.
        Returns the steps made."""
        self.keep_idle = max(self.keep_idle, streams)
        lives = [self.live() for _ in range(streams)]  # the idle ones first
        made = sum(lv.warm() for lv in lives)
        for lv in lives:
            lv.close()
        return made

    @property
    def idle_decoders(self) -> int:
        """Decoders of closed live contexts waiting for the next one."""
        return len(self._idle)

    def release_idle(self) -> int:
        """Free the idle decoders' memory now (a server that will serve fewer streams); the count."""
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for dec in idle:
            dec.release()
        return len(idle)

    def word_vectors(self, words: Sequence[Word | str]) -> np.ndarray:
        """`(n_words, L, D)` for a whole transcript (its official contexts, the last word's
        included), word by word through the KV-cached path."""
        texts = [(w.text if isinstance(w, Word) else str(w)).strip() for w in words]
        contexts = word_contexts(texts, self.settings.max_context_words)
        out = np.zeros((len(words), *self.shape), np.float32)
        with self.live() as live:
            for i, (context, prefix) in enumerate(contexts):
                out[i] = live.feed(context, prefix)
        return out

    def extract(self, words: Sequence[Word], n_bins: int) -> np.ndarray:
        """A transcript -> `(L, D, n_bins)`: word vectors summed into their 2 Hz bins."""
        words = [w for w in words if w.text.strip()]
        vectors = self.word_vectors(words) if words else np.zeros((0, *self.shape), np.float32)
        return place_words(vectors, [w.onset for w in words], [w.duration for w in words], n_bins)

    @torch.inference_mode()
    def reference_vectors(self, words: Sequence[Word | str], batch_size: int = 1) -> np.ndarray:
        """The official computation: each word's whole context through the model's own forward
        (`output_hidden_states=True`, right padding with EOS), mean over the word's tokens."""
        texts = [(w.text if isinstance(w, Word) else str(w)).strip() for w in words]
        ctx = word_contexts(texts, self.settings.max_context_words)
        out = np.zeros((len(texts), *self.shape), np.float32)
        pad = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        for s in range(0, len(ctx), batch_size):
            batch = ctx[s : s + batch_size]
            ids = [self.tokens(c) for c, _ in batch]
            n_max = max(len(i) for i in ids)
            input_ids = torch.full((len(ids), n_max), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), n_max), dtype=torch.long)
            for j, i in enumerate(ids):
                input_ids[j, : len(i)] = torch.tensor(i)
                mask[j, : len(i)] = 1
            states = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                output_hidden_states=True,
            ).hidden_states
            for j, (i, (_, prefix)) in enumerate(zip(ids, batch, strict=True)):
                n_target = max(1, len(i) - len(self.tokens(prefix)))
                sel = torch.stack(
                    [states[k][j, len(i) - n_target : len(i)].float().mean(0) for k in self.needed]
                )
                out[s + j] = self.group(sel)
        return out


class LiveText:
    """Word-by-word text features with the context kept in a KV cache.

    `add(word)` returns the word's `(L, D)` vector, equal (to float rounding) to the official full
    forward of its context. Each word costs one forward over its new tokens, unless the context's
    tokens changed further back, in which case the forward starts at the first changed token.

    Once the transcript passes the 1024-word context, every word's context loses its oldest word,
    so `overflow="exact"` (the official context) re-runs the whole context for each word. With
    `overflow="rebase"` the oldest half of the context is dropped once, after which words are
    cheap again: contexts then hold between 512 and 1024 words instead of exactly 1024.

    Short feeds (up to `STEP_TOKENS` new tokens) can run as static-shape steps (tokens and cache
    span padded to powers of two): on CUDA with `compile=True`, each shape one CUDA graph.

    Its KV cache and graphs (a `KVDecoder`) come from the extractor's pool and go back to it on
    `close()` (or leaving a `with` block), context emptied: the next stream's live text reuses
    them, made and warm, and the memory of ended streams is never left behind.
    """

    STEP_TOKENS = 8

    def __init__(
        self,
        extractor: TextExtractor,
        overflow: str = "exact",
        token_steps: bool | None = None,
        fuse: bool | None = None,
    ):
        if overflow not in ("exact", "rebase"):
            raise InputError(f"overflow must be 'exact' or 'rebase', got {overflow!r}")
        self.ex = extractor
        self.overflow = overflow
        self.max_words = extractor.settings.max_context_words
        self.window = ContextWindow(self.max_words, overflow)
        self.cached: list[int] = []  # tokens in the cache: the last context's
        self.context = ""  # the last context fed
        self.decoder: KVDecoder | None = extractor._take_decoder()
        self.graphs = extractor.compile and str(extractor.device).startswith("cuda")
        self.token_steps = self.graphs if token_steps is None else token_steps
        # fuse (default with graphs): the static steps run the layers' pieces around attention
        # compiled (`KVDecoder.fuse`): 8.4 ms a word against 9.9 uncompiled on an H100
        self.fuse = self.graphs if fuse is None else fuse
        if self.fuse:
            self.decoder.fuse()
        self.counters = {"words": 0, "tokens_fed": 0, "recomputes": 0}

    def reset(self) -> None:
        """Forget the context (a new recording)."""
        self.window.reset()
        self.cached, self.context = [], ""
        if self.decoder is not None:
            self.decoder.length = 0

    def close(self) -> None:
        """The stream ended: the decoder (KV cache, CUDA graphs) goes back to the extractor's
        pool, context emptied, for the next live text (or is freed if the pool is full).
        Idempotent; the context is unusable afterwards."""
        dec, self.decoder = self.decoder, None
        if dec is not None:
            self.reset()
            self.ex._return_decoder(dec)

    def __enter__(self) -> LiveText:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _dec(self) -> KVDecoder:
        if self.decoder is None:
            raise RuntimeError("this live text context was closed (its stream ended)")
        return self.decoder

    def warm(self) -> int:
        """Compile and capture every static step a stream can meet (each padded token count at
        each cache span up to `max_tokens`) before the stream starts, so no word pays for it
        live; the context is left empty. Returns the number of steps made (0 off the GPU, and
        for a decoder from the pool, already warm)."""
        if not (self.graphs and self.token_steps):
            return 0
        dec, n, made = self._dec(), 1, 0
        while n <= self.STEP_TOKENS:
            span = 256
            while True:
                span = min(span, dec.max_tokens)
                made += (n, span, self.fuse) not in dec.graphs
                self._step(n, span)
                if span >= dec.max_tokens:
                    break
                span *= 2
            n *= 2
        self.reset()
        return made

    def _step(self, n: int, span: int):
        """The static-shape forward of `n` tokens over `span` positions: a CUDA graph on the GPU
        (kept by the decoder: its closure holds the decoder, never this context)."""
        dec, fuse = self._dec(), self.fuse
        if not self.graphs:
            return lambda ids, pos, w: dec(ids, pos, w, span, fuse)
        key = (n, span, fuse)
        if key not in dec.graphs:
            dev = self.ex.device
            example = [
                torch.zeros((1, n), dtype=torch.long, device=dev),
                torch.arange(span - n, span, device=dev),
                torch.full((n,), 1.0 / n, device=dev),
            ]
            from torch.nn.attention import SDPBackend, sdpa_kernel

            # a few queries with a mask: kernels that capture in a graph on every GPU
            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
                dec.graphs[key] = CudaGraphStep(
                    lambda ids, pos, w: dec(ids, pos, w, span, fuse), example
                )
        return dec.graphs[key]

    @torch.inference_mode()
    def _run(self, ids: list[int], start: int, n_target: int) -> torch.Tensor:
        dec = self._dec()
        new = ids[start:]
        n = len(new)
        dev = self.ex.device
        static = self.token_steps and n <= self.STEP_TOKENS
        nb = _bucket(n, 1) if static else n
        dec.ensure_capacity(start + nb)  # if the buffers move, their graphs go: capture again
        tokens, positions, w = _rows(ids, start, n_target, nb)
        host = upload(torch.tensor([tokens, positions], dtype=torch.long), dev)
        weights = upload(torch.tensor(w, dtype=torch.float32), dev)
        if static:
            span = min(_bucket(start + nb, 256), dec.max_tokens)
            return self._step(nb, span)(host[:1], host[1], weights)
        return dec(host[:1], host[1], weights, start + n)

    @torch.inference_mode()
    def prime(self, words: Sequence[Word | str]) -> None:
        """Start from a known transcript (no vectors returned): one forward over its context."""
        context = ""
        for w in words:
            text = (w.text if isinstance(w, Word) else str(w)).strip()
            if text:
                context, _ = self.window.add(text)
        ids = self.ex.tokens(context)
        dec = self._dec()
        if ids:
            dec.ensure_capacity(len(ids) + self.STEP_TOKENS)
            dev = self.ex.device
            weights = torch.zeros(len(ids), device=dev)
            weights[-1] = 1.0
            positions = torch.arange(len(ids), device=dev)
            dec(torch.tensor([ids], device=dev), positions, weights, len(ids))
        dec.length = len(ids)
        self.cached = ids

    def add(self, word: Word | str, on_device: bool = False):
        """The next word of the transcript -> its `(L, D)` vector (its context as the official
        pipeline makes it, more words to come: `contexts.ContextWindow`). `on_device`: a tensor
        on the model's device, not waited for (a live stream's ring takes it there)."""
        return self.feed(*self.window.add(_word_text(word)), on_device=on_device)

    def feed(self, context: str, prefix: str, on_device: bool = False):
        """The vector of the word that ends `context` (`prefix`: the context without it): one
        forward over the tokens that differ from the cached context's."""
        ids, start, n_target = self._plan(context, prefix)
        vector = self._run(ids, start, n_target)
        self._done(ids, start, context)
        return vector if on_device else vector.cpu().numpy()

    def _plan(self, context: str, prefix: str) -> tuple[list[int], int, int]:
        """The context's tokens, the first to feed, and how many end the word."""
        cached = self.cached
        ids = self.ex.tokens(context)
        if not ids:
            raise InputError(f"the context {context!r} has no tokens")
        n_target = max(1, len(ids) - len(self.ex.tokens(prefix)))
        changed = (i for i, (a, b) in enumerate(zip(cached, ids, strict=False)) if a != b)
        common = next(changed, min(len(cached), len(ids)))
        start = min(common, len(ids) - n_target)
        if common < len(cached):  # cached tokens no longer match: re-run from the first change
            self.counters["recomputes"] += 1
        return ids, start, n_target

    def _done(self, ids: list[int], start: int, context: str) -> None:
        self._dec().length = len(ids)
        self.cached, self.context = ids, context
        self.counters["words"] += 1
        self.counters["tokens_fed"] += len(ids) - start


def _word_text(word: Word | str) -> str:
    text = (word.text if isinstance(word, Word) else str(word)).strip()
    if not text:
        raise InputError("an empty word has no text features; drop it before the text extractor")
    return text


def _rows(ids: list[int], start: int, n_target: int, nb: int):
    """A feed's tokens from `start`, padded to `nb`: (token ids, positions, mean weights)."""
    new = ids[start:]
    n = len(new)
    w = [0.0] * (n - n_target) + [1.0 / n_target] * n_target + [0.0] * (nb - n)
    return new + [0] * (nb - n), list(range(start, start + nb)), w


@torch.inference_mode()
def add_many(
    lives: Sequence[LiveText], words: Sequence[Word | str], on_device: bool = False
) -> list:
    """The next word of each of several streams' live texts (one extractor, each live text at
    most once): what `live.add(word)` gives each (equal to float rounding), with the short feeds
    (up to `STEP_TOKENS` new tokens: most words) in one batched forward (`step_many`, rows
    padded to a power of two) instead of one each; a feed that re-runs its context runs alone.
    A server's turn calls it with each stream's next word. `on_device`: the vectors stay on the
    model's device (not waited for), else `(L, D)` arrays."""
    if len({id(lv) for lv in lives}) != len(lives) or len({id(lv.ex) for lv in lives}) > 1:
        raise ValueError("add_many: one word per live text, all of one extractor")
    texts = [_word_text(w) for w in words]  # all checked before any context moves
    if len(texts) != len(lives):
        raise ValueError("add_many: one word per live text")
    contexts = [lv.window.add(t) for lv, t in zip(lives, texts, strict=True)]
    plans = [lv._plan(*c) for lv, c in zip(lives, contexts, strict=True)]
    out: list = [None] * len(lives)
    batch = [
        i for i, (ids, start, _) in enumerate(plans) if len(ids) - start <= LiveText.STEP_TOKENS
    ]
    if len(batch) > 1:
        nb = _bucket(max(len(plans[i][0]) - plans[i][1] for i in batch), 1)
        need = max(plans[i][1] for i in batch) + nb
        decs = [lives[i]._dec() for i in batch]
        for dec in decs:
            dec.ensure_capacity(need)
        span = min(_bucket(need, 256), *(dec.max_tokens for dec in decs))
        rows = [_rows(*plans[i], nb) for i in batch]
        pad = _bucket(len(rows), 1) - len(rows)  # the last row again: the same writes
        rows, decs = rows + rows[-1:] * pad, decs + decs[-1:] * pad
        dev = lives[0].ex.device
        host = torch.tensor([[r[0] for r in rows], [r[1] for r in rows]], dtype=torch.long)
        host, weights = upload(host, dev), upload(torch.tensor([r[2] for r in rows]), dev)
        # the uncompiled layer pieces: compiled ones would compile each batch shape (seconds
        # each, at warm-up or live); eager, 8 streams' step is ~1,500 launches, not 8 graphs
        vecs = step_many(decs, host[0], host[1], weights, span)
        for j, i in enumerate(batch):
            out[i] = vecs[j]
    for i, (lv, (ids, start, n_target)) in enumerate(zip(lives, plans, strict=True)):
        if out[i] is None:
            out[i] = lv._run(ids, start, n_target)
        lv._done(ids, start, contexts[i][0])
    return out if on_device else [v.cpu().numpy() for v in out]
