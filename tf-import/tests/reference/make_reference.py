"""Runs the official neuroailab/convrnns models (unmodified, under TensorFlow 2.x through
`tf1_shim.py`) with seeded random weights, saves those weights as TensorFlow checkpoints and
records what the models compute, for the Rust parity tests in `tf-import/tests/parity.rs`.

    python -m venv /work/venv-tf && /work/venv-tf/bin/pip install tensorflow networkx six
    git -C /work/.mirror/neuroailab+convrnns/repo archive HEAD | tar -x -C /work/ref-convrnns
    /work/venv-tf/bin/python tf-import/tests/reference/make_reference.py /work/ref-convrnns \
        tf-import/tests/reference --import-cases

REF_DIR is the reference repository's working tree (the directory holding `convrnns/` and
`run_model.py`). Nothing is copied from it into this repository; only the outputs below are.

What is built. Every released architecture, at 224 px and batch 2 (batch 1 breaks the `last`
decoder's squeeze), with every channel width (convolution outputs, cell and state depths, the
median cell's depth, the number of classes) divided by `--divisor` (32). The widths are the only
change: the graphs, kernel sizes, strides, map sizes (so the median cell's kernel clipping, the
LSTM's per-position peepholes, TF "SAME" padding on odd maps), time steps, presentations and
decoders are the released ones. The narrowing is done through the model description files the
code reads (`convrnns/models/*.json`, `configs/lstm_shallow.npz`: written narrowed into a scratch
directory) and the median cell's configuration dictionary, never by editing code. Full-width
checkpoints would be 60 MB to 340 MB each; narrowed, all of them together are a few MB, and the
Rust tests run in seconds.

Weights. Every trainable variable is replaced by seeded random values (seed = crc32 of its name
xor `--seed`, so the same variable gets the same values in every model that has it): kernels
N(0, g²/fan_in) (depthwise kernels: fan_in = k*k; g = 1, 0.5 for `rgc_intermediate*`, see
`kernel_gain`), biases and layer-norm betas N(0, 0.1²),
layer-norm gammas 1 + N(0, 0.1²), LSTM peepholes N(0, 0.1²), trainable time-decay factors
U(0.2, 0.8), the max_conf decoders' softmax beta U(0.5, 2): no term is trivially zero.
Non-trainable variables keep their values (`memory_decay` 0 of areas without a cell, the decoders'
constant betas 1 and threshold 0.9), as in the released checkpoints.

Outputs, per model, in `<model>/`:
- `model.ckpt.index`, `model.ckpt.data-00000-of-00001`: the weights (`tf.compat.v1.train.Saver`),
  left out when byte-identical to an earlier model's (the manifest's `checkpoint` names the model
  whose files to read: `ugrnn_intermediate_t30` reads `ugrnn_intermediate`'s);
- `<presentation>.safetensors` for `default` and `neural` (26 steps, image off at 10):
  `logits` [B, classes] (the model's decoder output), and per area (conv1..convN, imnetds) and
  every step t = 0..T-1: `<area>/stats` [T, B, 4] (mean, standard deviation, min, max over the
  whole map), `<area>/samples` [T, B, K] (values at K fixed positions) and `<area>/positions`
  [K, 3] (h, w, c in NHWC; c alone for 2-D outputs), and `imnetds/full` [T, B, classes];
  header metadata: presentation, steps, image_off, decoder.
- `import_cases/` (with `--import-cases`): checkpoints an import must refuse, naming the variable
  (renamed, missing, wrong shape), and one with momentum slots and `global_step` it must accept;
- `manifest.json` (top level): per model the narrowed graph's trainable parameter count and
  number of variables, and the full-width graph's trainable parameter count (what
  `cargo xtask models` must report for the released checkpoints).

Input: two 224x224x3 images whose pixels are (hash(b, h, w, c) >> 24) / 255 with
hash = ((b*224 + h)*224 + w)*3 + c) * 2654435761 mod 2^32, normalised by the ImageNet mean and std
as `run_model.py` does; the Rust test builds the same images bit for bit.

Step convention. The unroll runs every area at every step (before the image reaches an area its
output is a function of its biases and of the zeros its inputs start at), and the files record
every step from 0. `run_model.py` by default returns layer `convL`'s outputs from step L on
(`imnetds` from step num_layers), which drops each layer's first image-driven step; the Rust
side returns every step, so its steps L.. are what `run_model.py` returns.
"""

import argparse
import copy
import json
import os
import struct
import sys
import tempfile
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Deterministic float results from TensorFlow's CPU kernels (no oneDNN reorderings).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tf1_shim  # noqa: E402

tf = tf1_shim.install()

MODELS = [
    "timedecay_shallow", "simplernn_shallow", "gru_shallow", "lstm_shallow",
    "intersectionrnn_shallow", "ugrnn_shallow", "rgc_shallow",
    "timedecay_intermediate", "simplernn_intermediate", "gru_intermediate", "lstm_intermediate",
    "intersectionrnn_intermediate", "ugrnn_intermediate", "ugrnn_intermediate_t30",
    "ugrnn_intermediate_t30_dthresh", "ugrnn_intermediate_t30_tmaxconf",
    "rgc_intermediate", "rgc_intermediate_dthresh", "rgc_intermediate_tmaxconf",
    "rgc_intermediate_t22_tmaxconf",
]
BATCH = 2
SAMPLES = 12
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def images():
    b, h, w, c = np.meshgrid(np.arange(BATCH), np.arange(224), np.arange(224), np.arange(3),
                             indexing="ij")
    flat = (((b * 224 + h) * 224 + w) * 3 + c).astype(np.uint64)
    hashed = (flat * np.uint64(2654435761)) % np.uint64(2 ** 32)
    x = (hashed >> np.uint64(24)).astype(np.float32) / np.float32(255.0)
    return ((x - MEAN) / STD).astype(np.float32)


def narrow(value, divisor):
    return max(1, int(value) // divisor)


def narrow_json(src, dst, divisor):
    with open(src) as f:
        spec = json.load(f)
    for node in spec["nodes"]:
        for op in node["pre_memory"] + node["post_memory"]:
            if "out_depth" in op:
                op["out_depth"] = narrow(op["out_depth"], divisor)
        mem = node["memory"]
        for key in ("out_depth", "cell_depth"):
            if key in mem:
                mem[key] = narrow(mem[key], divisor)
    with open(dst, "w") as f:
        json.dump(spec, f, indent=1)


def scratch_tree(ref_dir, divisor):
    """A directory holding narrowed copies of the model description files at the relative
    paths the reference code opens (`convrnns/models/*.json`, `./convrnns/configs/*.npz`)."""
    root = tempfile.mkdtemp(prefix="convrnns-narrowed-")
    os.makedirs(os.path.join(root, "convrnns", "models"))
    os.makedirs(os.path.join(root, "convrnns", "configs"))
    models = os.path.join(ref_dir, "convrnns", "models")
    for name in os.listdir(models):
        if name.endswith(".json"):
            dst = os.path.join(root, "convrnns", "models", name)
            if divisor == 1:
                with open(os.path.join(models, name)) as f, open(dst, "w") as g:
                    g.write(f.read())
            else:
                narrow_json(os.path.join(models, name), dst, divisor)
    cfg = np.load(os.path.join(ref_dir, "convrnns", "configs", "lstm_shallow.npz"),
                  allow_pickle=True)["arr_0"][()]
    cfg = copy.deepcopy(cfg)
    for layer in cfg["model_params"]["layer_params"].values():
        cell = layer.get("cell_params")
        if cell is not None and "out_depth" in cell:
            cell["out_depth"] = narrow(cell["out_depth"], divisor)
    np.savez(os.path.join(root, "convrnns", "configs", "lstm_shallow.npz"), cfg)
    return root


def kernel_gain(model):
    """Scale of the kernels' random values. In `rgc_intermediate` the median cell's states pass
    through ELU, unbounded above, and its residual, input-to-output and feedback paths add up
    around loops of areas, so with gain 1 the activations grow over the steps (to ~1e4 by step
    20 of the neural presentation) and the f32 rounding differences of two libraries grow with
    them past 1e-4 relative; at 0.5 they stay of order 1, as the other models' do at gain 1."""
    return 0.5 if model.startswith("rgc_intermediate") else 1.0


def perturbation(var, seed, gain):
    name = var.op.name
    shape = var.shape.as_list()
    rng = np.random.RandomState((zlib.crc32(name.encode()) ^ seed) & 0x7FFFFFFF)
    leaf = name.split("/")[-1]
    if leaf == "softmax_beta":
        return rng.uniform(0.5, 2.0, size=shape)
    if leaf == "memory_decay":
        return rng.uniform(0.2, 0.8, size=shape)
    if leaf == "gamma":
        return 1.0 + 0.1 * rng.randn(*shape)
    if "bias" in leaf or leaf in ("beta", "biases") or leaf.endswith("_diag"):
        return 0.1 * rng.randn(*shape)
    if "depthwise" in leaf:
        fan_in = shape[0] * shape[1]
    else:
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return gain * rng.randn(*shape) / np.sqrt(fan_in)


def build(model_func, kwargs, scratch, presentation):
    kwargs = dict(kwargs)
    kwargs["base_name"] = os.path.join(scratch, kwargs["base_name"])
    inputs = tf.placeholder(tf.float32, [BATCH, 224, 224, 3])
    layers = None
    with open(kwargs["base_name"] + ".json") as f:
        layers = [n["name"] for n in json.load(f)["nodes"]]
    out = model_func(inputs=inputs, out_layers=layers, image_pres=presentation,
                     include_all_times=True, include_logits=True, **kwargs)
    return inputs, layers, out


def count(variables):
    return int(sum(np.prod(v.shape.as_list()) for v in variables))


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[a.dtype]
        raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def record(values, layers, times, seed, full):
    tensors = {}
    for layer in layers:
        steps = np.stack([values[layer][t] for t in range(times)]).astype(np.float32)
        flat = steps.reshape(times, BATCH, -1).astype(np.float64)
        stats = np.stack([flat.mean(-1), flat.std(-1), flat.min(-1), flat.max(-1)], axis=-1)
        tensors[layer + "/stats"] = stats.astype(np.float32)
        rng = np.random.RandomState((zlib.crc32(layer.encode()) ^ seed) & 0x7FFFFFFF)
        inner = steps.shape[2:]
        pos = np.stack([rng.randint(0, d, size=SAMPLES) for d in inner], axis=1)
        idx = (slice(None), slice(None)) + tuple(pos[:, i] for i in range(len(inner)))
        tensors[layer + "/samples"] = steps[idx].astype(np.float32)
        tensors[layer + "/positions"] = pos.astype(np.int32)
        if len(inner) == 1 or full:
            tensors[layer + "/full"] = steps
    return tensors


def run_model(name, model_func, kwargs, scratch, out_dir, seed, x, full):
    os.makedirs(out_dir, exist_ok=True)
    assigned = None
    info = {}
    for presentation in ("default", "neural"):
        graph = tf.Graph()
        with graph.as_default():
            inputs, layers, out = build(model_func, kwargs, scratch, presentation)
            trainable = tf.trainable_variables()
            if assigned is None:
                assigned = {v.op.name: perturbation(v, seed, kernel_gain(name)) for v in trainable}
            ops = [v.assign(assigned[v.op.name].astype(np.float32)) for v in trainable]
            times = len(out[layers[0]])
            with tf.Session(graph=graph) as sess:
                sess.run(tf.global_variables_initializer())
                sess.run(ops)
                if presentation == "default":
                    saver = tf.train.Saver(var_list=tf.global_variables())
                    saver.save(sess, os.path.join(out_dir, "model.ckpt"),
                               write_meta_graph=False, write_state=False)
                    info = {
                        "trainable_parameters": count(trainable),
                        "variables": len(tf.global_variables()),
                        "areas": layers,
                    }
                values = sess.run({k: v for k, v in out.items()}, feed_dict={inputs: x})
        tensors = record({k: values[k] for k in layers}, layers, times, seed, full)
        tensors["logits"] = values["logits"].astype(np.float32)
        meta = {
            "model": name,
            "presentation": presentation,
            "steps": str(times),
            "decoder": kwargs.get("decoder_type", "last"),
            "tensorflow": tf.__version__,
        }
        write_safetensors(os.path.join(out_dir, presentation + ".safetensors"), tensors, meta)
        info[presentation + "_steps"] = times
    return info


def share_identical_checkpoint(name, out_dir, manifest):
    """Deletes `name`'s checkpoint when an earlier model's is byte-identical (variants that differ
    from their base only in presentation, such as `ugrnn_intermediate_t30`, hold the same
    variables with the same values) and returns the model whose checkpoint to read."""
    mine = [os.path.join(out_dir, f) for f in ("model.ckpt.index", "model.ckpt.data-00000-of-00001")]
    content = [open(p, "rb").read() for p in mine]
    for other, info in sorted(manifest["models"].items()):
        if other == name or info.get("checkpoint", other) != other:
            continue
        theirs = os.path.join(os.path.dirname(out_dir), other)
        try:
            same = all(open(os.path.join(theirs, os.path.basename(p)), "rb").read() == c
                       for p, c in zip(mine, content))
        except FileNotFoundError:
            same = False
        if same:
            for p in mine:
                os.remove(p)
            return other
    return name


def import_cases(model_func, kwargs, scratch, out_root, seed):
    """Checkpoints of the narrowed `timedecay_shallow` that an import must refuse or accept:
    `renamed` (conv3's bias saved as `biases`), `missing` (conv2's kernel left out),
    `wrong_shape` (conv4's bias saved twice as long), and `training_state` (every
    variable plus a `Momentum` slot each and an int64 `global_step`, as the released checkpoints
    hold them: the import must skip those)."""
    graph = tf.Graph()
    with graph.as_default():
        build(model_func, kwargs, scratch, "default")
        trainable = tf.trainable_variables()
        ops = [v.assign(perturbation(v, seed, 1.0).astype(np.float32)) for v in trainable]
        step = tf.Variable(np.int64(1234567), name="global_step", dtype=tf.int64)
        slots = {v.op.name + "/Momentum": tf.Variable(np.zeros(v.shape.as_list(), np.float32),
                                                      name="slot_%d" % i)
                 for i, v in enumerate(trainable)}
        every = {v.op.name: v for v in tf.global_variables() if v.op.name.startswith("tnn_model/")}
        bias4 = every["tnn_model/conv4/pre_0/bias"]
        long_bias = tf.Variable(np.ones([2 * bias4.shape.as_list()[0]], np.float32), name="long")
        renamed = dict(every)
        renamed["tnn_model/conv3/pre_0/biases"] = renamed.pop("tnn_model/conv3/pre_0/bias")
        missing = dict(every)
        del missing["tnn_model/conv2/pre_0/weights_basenet"]
        wrong = dict(every)
        wrong["tnn_model/conv4/pre_0/bias"] = long_bias
        state = dict(every)
        state.update(slots)
        state["global_step"] = step
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(ops)
            for case, var_list in [("renamed", renamed), ("missing", missing),
                                   ("wrong_shape", wrong), ("training_state", state)]:
                d = os.path.join(out_root, "import_cases", case)
                os.makedirs(d, exist_ok=True)
                tf.train.Saver(var_list=var_list).save(
                    sess, os.path.join(d, "model.ckpt"), write_meta_graph=False,
                    write_state=False)


def full_width_count(model_func, kwargs, full_scratch):
    graph = tf.Graph()
    with graph.as_default():
        build(model_func, kwargs, full_scratch, "default")
        return count(tf.trainable_variables())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--divisor", type=int, default=32)
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--import-cases", action="store_true",
                        help="also write the import_cases/ checkpoints (see import_cases)")
    parser.add_argument("--full", action="store_true",
                        help="also store every area's whole map (for debugging; not committed)")
    args = parser.parse_args()
    ref_dir = os.path.abspath(args.ref_dir)
    out_root = os.path.abspath(args.out_dir)
    sys.path.insert(0, ref_dir)
    from convrnns.configs import median_rgcell_cfg
    from convrnns.models.model_func import model_func
    from convrnns.utils.loader import MODEL_TO_KWARGS

    full_scratch = scratch_tree(ref_dir, 1)
    scratch = scratch_tree(ref_dir, args.divisor)
    cell_params = median_rgcell_cfg.median_config_dict["model_params"]["cell_params"]
    full_cell_depth = cell_params["cell_depth"]
    manifest_path = os.path.join(out_root, "manifest.json")
    manifest = {"models": {}}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    manifest.update({"divisor": args.divisor, "seed": args.seed, "batch": BATCH,
                     "samples": SAMPLES, "tensorflow": tf.__version__})
    x = images()
    for name in args.models.split(","):
        kwargs = MODEL_TO_KWARGS[name]
        # model_func opens ./convrnns/configs/lstm_shallow.npz relative to the working directory.
        os.chdir(full_scratch)
        cell_params["cell_depth"] = full_cell_depth
        full = full_width_count(model_func, kwargs, full_scratch)
        os.chdir(scratch)
        cell_params["cell_depth"] = narrow(full_cell_depth, args.divisor)
        info = run_model(name, model_func, kwargs, scratch, os.path.join(out_root, name),
                         args.seed, x, args.full)
        info["full_width_trainable_parameters"] = full
        info["divisor"] = args.divisor
        info["checkpoint"] = share_identical_checkpoint(name, os.path.join(out_root, name), manifest)
        manifest["models"][name] = info
        print("%-32s full %11d narrowed %8d" % (name, full, info["trainable_parameters"]))
    cell_params["cell_depth"] = full_cell_depth
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    if args.import_cases:
        os.chdir(scratch)
        cell_params["cell_depth"] = narrow(full_cell_depth, args.divisor)
        import_cases(model_func, MODEL_TO_KWARGS["timedecay_shallow"], scratch, out_root, args.seed)
        cell_params["cell_depth"] = full_cell_depth


if __name__ == "__main__":
    main()
