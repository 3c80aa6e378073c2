"""``python -m convert.int8.qat_train PACK OUT``: quantization-aware fine-tuning, in JAX, of the pack that
``python -m convert.int8.qat_pack`` wrote. The graph runs with straight-through rounding on the int8 grid (per-channel
int8 convolution weights, uint8 activations at the pack's scales, learned when --lr-scales > 0); Adam fits its
logits to the float model's. OUT gets the weights with the lowest validation logit error and qat.json."""

import json
import sys
import time
from pathlib import Path

import numpy as np

from convert.int8.qat_graph import shared_scales, weight_values, write_weights
from convert.int8.qat_pack import decode_jpeg
from runtime.cli import command_parser, non_negative_float, positive_float, positive_int


def load_pack(pack: Path) -> tuple[dict, dict]:
    """The pack's head (source, mode, graph, grid) and its weights (convolutions in HWIO for JAX)."""
    head = json.loads((pack / "graph.json").read_text())
    with np.load(pack / "weights.npz") as f:
        return head, hwio(weight_values(dict(f)), head["graph"])


def hwio(values: dict, graph: dict) -> dict:
    """``values`` with each convolution's weight from ONNX's OIHW to HWIO (a depthwise (C, 1, h, w) to (h, w, 1, C))."""
    convs = {n["in"][1] for n in graph["nodes"] if n["op"] == "Conv"}
    return {k: v.transpose(2, 3, 1, 0) if k in convs else v for k, v in values.items()}


def images(pack: Path, split: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's decoded images and the float model's logits (train: of each image and its mirror image)."""
    from concurrent.futures import ThreadPoolExecutor

    with np.load(pack / f"{split}.npz") as f:
        blob, offsets, teacher = f["blob"].tobytes(), f["offsets"], f["teacher"]
    with ThreadPoolExecutor() as ex:
        x = list(ex.map(lambda i: decode_jpeg(blob[offsets[i]:offsets[i + 1]], mode), range(len(offsets) - 1)))
    return np.stack(x), teacher.astype(np.float32)


def forward(graph: dict, zero: dict, p: dict, log_scales: dict, x, quant: bool = True):
    """The graph's logits of an NHWC batch; with ``quant``, rounded as the int8 file rounds, gradients straight
    through the rounding (and to the activation scales, as LSQ)."""
    import jax
    import jax.numpy as jnp

    def act(y, t):
        if not quant or t not in log_scales:
            return y
        s, z = jnp.exp(log_scales[t]), zero[t]
        q = jnp.clip(y / s, -z, 255 - z)
        return (q + jax.lax.stop_gradient(jnp.round(q) - q)) * s

    def weight(w):
        s = jax.lax.stop_gradient(jnp.max(jnp.abs(w), axis=(0, 1, 2), keepdims=True) / 127)
        s = jnp.where(s == 0, 1.0, s)
        return w + jax.lax.stop_gradient(jnp.round(w / s) * s - w) if quant else w

    env = {graph["input"]: act(x, graph["input"])}
    for n in graph["nodes"]:
        ins = [env.get(t, p.get(t)) for t in n["in"]]
        if n["op"] == "Conv":
            ins[1] = weight(ins[1])
        env[n["out"][0]] = act(_op(n["op"], n["attrs"], ins), n["out"][0])
    return env[graph["output"]]


def _op(op: str, a: dict, ins: list):
    """One ONNX operator on NHWC arrays (the graph's one Transpose, NHWC -> NCHW, is where NHWC stays)."""
    import jax
    import jax.numpy as jnp

    if op == "Conv":
        p = a.get("pads", [0, 0, 0, 0])
        y = jax.lax.conv_general_dilated(ins[0], ins[1], a.get("strides", [1, 1]), [(p[0], p[2]), (p[1], p[3])],
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         feature_group_count=a.get("group", 1))
        return y + ins[2] if len(ins) > 2 else y
    if op == "MaxPool":
        k, st, pads = a["kernel_shape"], a["strides"], a.get("pads", [0, 0, 0, 0])
        return jax.lax.reduce_window(ins[0], -jnp.inf, jax.lax.max, (1, *k, 1), (1, *st, 1),
                                     [(0, 0), (pads[0], pads[2]), (pads[1], pads[3]), (0, 0)])
    if op == "Gemm":
        y = ins[0] @ (ins[1].T if a.get("transB", 0) else ins[1]) * a.get("alpha", 1.0)
        return y + a.get("beta", 1.0) * ins[2] if len(ins) > 2 else y
    if op == "GlobalAveragePool":
        return jnp.mean(ins[0], axis=(1, 2), keepdims=True)
    if op == "Squeeze":  # (N, 1, 1, C) after the pool
        return ins[0].reshape(len(ins[0]), -1)
    if op == "MatMul":
        return ins[0] @ ins[1]
    if op == "Relu":
        return jax.nn.relu(ins[0])
    return ins[0] + ins[1] if op == "Add" else ins[0]


def adam(lr: float, steps: int, b1=0.9, b2=0.999, eps=1e-8):
    """Adam with a cosine decay of ``lr`` to 0 over ``steps``: (init, update) on pytrees."""
    import jax
    import jax.numpy as jnp

    def init(p):
        zeros = jax.tree.map(jnp.zeros_like, p)
        return zeros, zeros, jnp.zeros((), jnp.int32)

    def update(g, state, p):
        m, v, t = state
        t = t + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        rate = lr * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(t, steps) / steps))
        step = rate * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return jax.tree.map(lambda p, m, v: p - step * m / (jnp.sqrt(v) + eps), p, m, v), (m, v, t)

    return init, update


def train(head: dict, values: dict, data: dict, epochs: int, lr: float, lr_scales: float, batch: int,
          report=print) -> tuple[dict, dict, list[dict]]:
    """Fine-tune; return the weights and activation scales of the epoch with the lowest validation logit rms
    (epoch 0: as packed) and a log line per epoch."""
    import jax
    import jax.numpy as jnp

    graph, zero = head["graph"], {t: float(z) for t, (_, z) in head["grid"].items()}
    trainable = {n["in"][i] for n in graph["nodes"] if n["op"] in ("Conv", "Gemm", "MatMul")
                 for i in range(1, len(n["in"]))}
    p = {k: jnp.asarray(v, jnp.float32) for k, v in values.items() if k in trainable}
    fixed = {k: jnp.asarray(v) for k, v in values.items() if k not in trainable}
    same = shared_scales(graph, head["grid"])
    s = {t: jnp.float32(np.log(sc)) for t, (sc, _) in head["grid"].items() if t not in same}
    (x, t), (vx, vt) = data["train"], data["validation"]
    X, T, steps = jnp.asarray(x), jnp.asarray(t), epochs * (2 * len(x) // batch)
    init_p, update_p = adam(lr, steps)
    init_s, update_s = adam(lr_scales, steps)
    f = jax.jit(lambda p, s, x: forward(graph, zero, {**fixed, **p}, {**s, **{t: s[r] for t, r in same.items()}}, x))

    @jax.jit
    def step(p, s, sp, ss, X, T, idx, flip):
        xb = jnp.where(flip[:, None, None, None], X[idx][:, :, ::-1], X[idx])
        tb = jnp.where(flip[:, None], T[idx, 1], T[idx, 0])
        loss, (gp, gs) = jax.value_and_grad(lambda p, s: jnp.mean((f(p, s, xb) - tb) ** 2), (0, 1))(p, s)
        p, sp = update_p(gp, sp, p)
        s, ss = update_s(gs, ss, s) if lr_scales > 0 else (s, ss)
        return p, s, sp, ss, loss

    def validate(p, s):
        out = np.concatenate([np.asarray(f(p, s, jnp.asarray(vx[i:i + 64]))) for i in range(0, len(vx), 64)])
        return float(np.mean(out.argmax(1) == vt[:, 0].argmax(1))), float(np.sqrt(np.mean((out - vt[:, 0]) ** 2)))

    agree, rms = validate(p, s)
    log, best = [{"epoch": 0, "val_agreement": agree, "val_rms": rms}], (rms, p, s)
    report(f"epoch 0 (as packed): validation agreement {agree:.4f}, logit rms {rms:.4f}")
    sp, ss, rng = init_p(p), init_s(s), np.random.default_rng(0)
    for e in range(1, epochs + 1):
        t0, order, losses = time.perf_counter(), rng.permutation(2 * len(x)), []
        for i in range(0, len(order) - batch + 1, batch):
            o = order[i:i + batch]
            p, s, sp, ss, loss = step(p, s, sp, ss, X, T, jnp.asarray(o // 2), jnp.asarray(o % 2 == 1))
            losses.append(loss)
        agree, rms = validate(p, s)
        log.append({"epoch": e, "train_mse": float(np.mean(jnp.stack(losses))), "val_agreement": agree,
                    "val_rms": rms, "seconds": time.perf_counter() - t0})
        report(f"epoch {e}: train mse {log[-1]['train_mse']:.4f}, validation agreement {agree:.4f}, "
               f"logit rms {rms:.4f} ({log[-1]['seconds']:.0f} s)")
        if rms < best[0]:
            best = (rms, p, s)
    weights = {**values, **{k: np.asarray(v) for k, v in best[1].items()}}
    scales = {t: float(np.exp(v)) for t, v in best[2].items()}
    return weights, {**scales, **{t: scales[r] for t, r in same.items()}}, log


def save(out: Path, head: dict, weights: dict, scales: dict, record: dict):
    """OUT/weights.*.npz (convolutions back in ONNX layout) and qat.json, as ``qat_graph.save`` writes them."""
    graph = head["graph"]
    convs = {n["in"][1] for n in graph["nodes"] if n["op"] == "Conv"}
    onnx_layout = {k: w.transpose(3, 2, 0, 1) if k in convs else w for k, w in weights.items()}
    grid = {t: [scales[t], z] for t, (_, z) in head["grid"].items()}
    write_weights(out, onnx_layout, convs, grid, {"source_sha256": head["source_sha256"], **record})


def parser():
    p = command_parser("python -m convert.int8.qat_train", __doc__)
    p.add_argument("pack", type=Path, help="the folder python -m convert.int8.qat_pack wrote")
    p.add_argument("out", type=Path, help="where the trained weights go (copy them to BUNDLE/qat/)")
    p.add_argument("--epochs", type=positive_int, default=12, help="default 12")
    p.add_argument("--lr", type=positive_float, default=1e-5, help="Adam's rate for the weights (default 1e-5)")
    p.add_argument("--lr-scales", type=non_negative_float, default=1e-3,
                   help="Adam's rate for the log activation scales; 0 keeps the pack's grid (default 1e-3)")
    p.add_argument("--batch", type=positive_int, default=32, help="default 32")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from runtime.errors import first_line
    from runtime.files import replacing_folder

    try:
        head, values = load_pack(args.pack)
        data = {split: images(args.pack, split, head["mode"]) for split in ("train", "validation")}
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {args.pack} is not a readable QAT pack: {first_line(e)}", file=sys.stderr)
        return 2
    try:
        with replacing_folder(args.out, "qat.json") as tmp:  # weights and qat.json change together, or not
            best = fit(args, head, values, data, tmp)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"weights in {args.out}: epoch {best['epoch']} kept")
    return 0


def fit(args, head: dict, values: dict, data: dict, out: Path) -> dict:
    """Train as ``args`` ask and save to ``out``; the log line of the epoch kept."""
    import jax

    print(f"{jax.devices()[0]}: {len(data['train'][0])} training images (and their mirror images), "
          f"{len(data['validation'][0])} validation images", flush=True)
    t0 = time.perf_counter()
    weights, scales, log = train(head, values, data, args.epochs, args.lr, args.lr_scales, args.batch,
                                 report=lambda line: print(line, flush=True))
    best = min(log, key=lambda r: r["val_rms"])
    training = {"epochs": args.epochs, "lr": args.lr, "lr_scales": args.lr_scales, "batch": args.batch,
                "train_images": len(data["train"][0]), "best_epoch": best["epoch"],
                "device": jax.devices()[0].device_kind}
    save(out, head, weights, scales, {"training": training, "log": log})
    print(f"done in {time.perf_counter() - t0:.0f} s: validation logit rms {log[0]['val_rms']:.4f} -> "
          f"{best['val_rms']:.4f}, agreement {log[0]['val_agreement']:.4f} -> {best['val_agreement']:.4f}")
    return best


if __name__ == "__main__":
    sys.exit(main())
