"""Child process for cold-start timing: import, load, preprocess and predict one image, print JSON.

``python -m benchmarks.coldstart keras|runtime PATH IMAGE [DEVICE [OVERRIDES_JSON [SPEC_JSON]]]``; the parent
measures from before it spawned this process to the ``done`` timestamp printed here. The Keras model's images
go through SPEC_JSON (an ImageSpec), the runtime's through the model's own metadata and the overrides.
"""

import json
import resource
import sys
import time


def main():
    kind, path, image = sys.argv[1:4]
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    overrides = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    spec = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    from runtime.preprocessing import ImageSpec

    if kind == "keras":
        import keras

        model = keras.models.load_model(path, compile=False)
        shape = model.input_shape
        x = ImageSpec(**{"height": shape[1], "width": shape[2], **spec}).load(image)[None]
        label = int(model.predict(x, verbose=0).argmax())
    else:
        from runtime.bundle import Overrides
        from runtime.classifier import Classifier

        clf = Classifier.load(path, device=device, overrides=Overrides(**overrides))
        label = clf.info.classes.index(clf.predict([image])[0].label)
    done = time.time()
    print(json.dumps({"done": done, "label": label, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
