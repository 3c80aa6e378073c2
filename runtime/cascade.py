"""A cascade runner: the fast file answers a batch; rows whose top-2 logit margin is under the gate are
answered again by the exact file. Both sessions are loaded once."""

from dataclasses import dataclass

import numpy as np

from runtime.backends import Answer, Runner


def margins(logits: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 logit of each row (infinite for a single class)."""
    if logits.shape[1] < 2:
        return np.full(len(logits), np.inf)
    top2 = np.partition(logits, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def merge(fast: np.ndarray, exact: np.ndarray, gate: float) -> tuple[np.ndarray, np.ndarray]:
    """The cascade's logits from both files' logits of the same rows, and which rows were re-checked."""
    rechecked = ~(margins(fast) >= gate)  # a row of NaN in the fast file is re-checked too
    return np.where(rechecked[:, None], exact, fast), rechecked


@dataclass
class CascadeRunner(Runner):
    """Runs ``fast`` on the whole batch and ``exact`` only on the rows under ``margin``."""

    fast: Runner = None
    exact: Runner = None
    margin: float = 0.0

    def first(self, batch: np.ndarray) -> Answer:
        """The fast file's logits of a batch, and the rows under the gate, which the exact file must answer."""
        logits = np.asarray(self.fast.infer(batch), np.float32)
        if logits.ndim != 2 or len(logits) != len(batch):
            return Answer(logits, np.zeros(len(logits), bool))  # the caller's shape check names it
        return Answer(logits, ~(margins(logits) >= self.margin))  # non-finite rows are answered again too

    def answer(self, batch: np.ndarray) -> Answer:
        """The cascade's logits of a batch, with the rows the exact file answered."""
        out = self.first(batch)
        if out.rechecked.any():
            out.logits = out.logits.copy()
            out.logits[out.rechecked] = self.exact.infer(batch[out.rechecked])
        return out

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.answer(batch).logits
