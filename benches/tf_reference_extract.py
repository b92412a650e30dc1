"""Times the reference TensorFlow code (neuroailab/convrnns, run unmodified under TensorFlow 2
through tf-import/tests/reference/tf1_shim.py) on feature extraction: the model unrolled on the
`neural` presentation (26 steps, image off at 10), every area's output and the logits at every
step fetched to numpy. The counterpart of `cargo xtask bench extract` (same model, batch, batches
and images: the parity fixtures' hashed pixels):

    /work/venv-tf/bin/python benches/tf_reference_extract.py /work/ref-convrnns \
        --model rgc_intermediate --batch 16 --batches 4 [--checkpoint ckpts/rgc_intermediate/model.ckpt]

REF_DIR is the reference repository's working tree. Without --checkpoint the weights are TF's
initial values (the speed does not depend on them). The reference's own messages go to stderr;
stdout is one JSON line.
"""

import argparse
import contextlib
import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tf-import", "tests", "reference"))
import tf1_shim  # noqa: E402

tf = tf1_shim.install()
import numpy as np  # noqa: E402


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def images(batch, side=224):
    """NHWC: channel c of pixel (h, w) of image b is (hash >> 24) / 255 with
    hash = (((b*side + h)*side + w)*3 + c) * 2654435761 mod 2^32, ImageNet-normalised (what
    make_reference.py feeds the parity fixtures and `cargo xtask bench extract` its model)."""
    b, h, w, c = np.meshgrid(np.arange(batch), np.arange(side), np.arange(side), np.arange(3),
                             indexing="ij")
    flat = (((b * side + h) * side + w) * 3 + c).astype(np.uint64)
    hashed = (flat * np.uint64(2654435761)) % np.uint64(2 ** 32)
    x = (hashed >> np.uint64(24)).astype(np.float32) / np.float32(255.0)
    return ((x - MEAN) / STD).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref_dir")
    parser.add_argument("--model", default="rgc_intermediate")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    ref_dir = os.path.abspath(args.ref_dir)
    sys.path.insert(0, ref_dir)
    os.chdir(ref_dir)  # model_func opens ./convrnns/configs/lstm_shallow.npz
    from convrnns.models.model_func import model_func
    from convrnns.utils.loader import MODEL_TO_KWARGS

    kwargs = dict(MODEL_TO_KWARGS[args.model])
    with open(os.path.join(ref_dir, kwargs["base_name"] + ".json")) as f:
        layers = [n["name"] for n in json.load(f)["nodes"]]
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.placeholder(tf.float32, [args.batch, 224, 224, 3])
        with contextlib.redirect_stdout(sys.stderr):
            out = model_func(inputs=inputs, out_layers=layers, image_pres="neural",
                             include_all_times=True, **kwargs)
        fetch = {layer: out[layer] for layer in layers}
        with tf.Session(graph=graph) as sess:
            if args.checkpoint:
                tf.train.Saver().restore(sess, args.checkpoint)
            else:
                sess.run(tf.global_variables_initializer())
            x = images(args.batch)
            first = sess.run(fetch, feed_dict={inputs: x})  # warm-up
            values = sum(v.size for per_step in first.values() for v in per_step.values())
            t0, c0 = time.time(), cpu_seconds()
            for _ in range(args.batches):
                sess.run(fetch, feed_dict={inputs: x})
            secs, cpu = time.time() - t0, cpu_seconds() - c0
    stimuli = args.batch * args.batches
    print(json.dumps({
        "model": args.model, "size": 224, "batch": args.batch, "batches": args.batches,
        "steps": 26, "values_per_stimulus": values // args.batch,
        "stimuli_per_s": stimuli / secs, "cpu_s_per_stimulus": cpu / stimuli,
        "tensorflow": tf.__version__,
    }))


if __name__ == "__main__":
    main()
