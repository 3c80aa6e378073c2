"""Course section 8.12: a model's loss and accuracy on a labelled folder, per class and as a confusion matrix."""

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from runtime.cli import keras_verbosity
from runtime.files import write_json
from train.data import Batches, ImageFolder


@dataclass
class Evaluation:
    """Loss and accuracy over all images; accuracy per class; confusion[true][predicted] counts."""

    images: int
    loss: float
    accuracy: float
    classes: list[str]
    per_class: dict[str, float]
    confusion: list[list[int]]

    @classmethod
    def of(cls, logits: np.ndarray, labels: np.ndarray, classes: list[str]):
        """Score logits of shape (images, classes) against integer labels."""
        onehot = np.eye(len(classes), dtype=np.float32)[labels]
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)(onehot, logits)
        pred = logits.argmax(1)
        confusion = np.zeros((len(classes), len(classes)), dtype=int)
        np.add.at(confusion, (labels, pred), 1)
        per_class = {c: float(confusion[i, i] / confusion[i].sum()) for i, c in enumerate(classes)
                     if confusion[i].sum()}
        return cls(len(labels), float(keras.ops.convert_to_numpy(loss)), float((pred == labels).mean()),
                   list(classes), per_class, confusion.tolist())

    def summary(self) -> dict:
        """The one-line JSON record: images, loss, accuracy."""
        return {"images": self.images, "loss": self.loss, "accuracy": self.accuracy}

    def markdown(self) -> str:
        """Per-class accuracy and the confusion matrix as Markdown tables."""
        lines = ["| class | images | accuracy |", "|---|---|---|"]
        lines += [f"| {c} | {sum(row)} | {self.per_class.get(c, float('nan')):.3f} |"
                  for c, row in zip(self.classes, self.confusion, strict=True)]
        lines += ["", f"| true \\ predicted | {' | '.join(self.classes)} |",
                  "|---|" + "---|" * len(self.classes)]
        lines += [f"| {c} | {' | '.join(map(str, row))} |" for c, row in zip(self.classes, self.confusion,
                                                                             strict=True)]
        return "\n".join(lines)

    def plot(self, path):
        """The confusion matrix as a PNG heat map with counts."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        m = np.array(self.confusion)
        fig, ax = plt.subplots(figsize=(7, 6))
        ax.imshow(m, cmap="Blues")
        ticks = range(len(self.classes))
        ax.set_xticks(ticks, self.classes, rotation=45, ha="right")
        ax.set_yticks(ticks, self.classes)
        for i, j in np.ndindex(m.shape):
            ax.text(j, i, m[i, j], ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
        ax.set(xlabel="predicted", ylabel="true", title=f"{self.images} images, accuracy {self.accuracy:.3f}")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def save(self, out) -> Path:
        """Write ``evaluation.md``, ``evaluation.json`` and ``confusion.png`` under ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.md").write_text(self.markdown() + "\n")
        write_json(out / "evaluation.json", self.__dict__)
        self.plot(out / "confusion.png")
        return out


def evaluate(model, folder: ImageFolder, size: int, batch_size=32) -> Evaluation:
    """Evaluate a Keras model (or a path to one) on every image of ``folder``."""
    if not isinstance(model, keras.Model):
        model = keras.models.load_model(model)
    logits = model.predict(Batches(folder, size, batch_size, labels=False), verbose=keras_verbosity())
    return Evaluation.of(logits, folder.labels, folder.classes)
