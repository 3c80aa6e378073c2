"""``python -m runtime.predict IMG [IMG|DIR|URL|- ...]``: labels for images, one line (or JSON) each.

A bad input gets a one-line error; the others are still answered. Exit status: 0 when every
input was answered, 1 when any input failed, 2 when the model cannot be loaded or no input is given.
A folder shows progress on stderr and ends with a summary (with accuracy when it is labelled
class/image, as the dataset's test/ folder).
"""

import collections
import itertools
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.cli import (
    add_model_args,
    add_thread_args,
    add_url_args,
    command_parser,
    end_quietly_on_broken_pipe,
    error,
    load_model,
    positive_int,
)
from runtime.errors import RuntimeToolkitError, first_line
from runtime.settings import is_url

PROGRESS_EVERY = 50  # images between progress lines on stderr


def parser():
    p = command_parser("python -m runtime.predict", __doc__)
    p.add_argument("inputs", nargs="+", help="image files, folders, http(s) URLs, or - for stdin")
    add_model_args(p, "model file or bundle (default: $RUNTIME_MODEL, else artifacts/default)")
    p.add_argument("--top-k", type=positive_int, default=3, help="labels shown per image (default 3)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per inference call (default 8)")
    p.add_argument("--limit", type=positive_int, help="answer at most this many inputs, folders expanded (default all)")
    add_thread_args(p)
    add_url_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    return p


@dataclass
class Waiting:
    """An input whose answer is not shown yet: its result (a Prediction or an error message), or None while
    a cascade's exact file must still answer it, with its model input ``x`` kept for that."""

    item: str
    result: object = None
    x: object = None


@dataclass
class Tally:
    """What a run answered: counts, and correct answers among inputs in a folder named after a class."""

    answered: int = 0
    failed: int = 0
    labelled: int = 0
    correct: int = 0

    def add(self, item: str, label: str | None, classes: list[str]):
        """Count one answer (``label`` None: it failed)."""
        if label is None:
            self.failed += 1
            return
        self.answered += 1
        truth = Path(item).parent.name
        if not is_url(item) and truth in classes:
            self.labelled += 1
            self.correct += truth == label

    def summary(self) -> str:
        """One line: images answered and failed, accuracy where labelled."""
        n = self.answered + self.failed
        if n == 1:
            return f"1 image: {'answered' if self.answered else 'failed'}"
        text = f"{n} images: {self.answered} answered, {self.failed} failed"
        if self.labelled:
            text += f"; accuracy {self.correct / self.labelled:.3f} on {self.labelled} labelled images"
        return text


def expand(inputs):
    """Folders become their images (an empty one is an error item); files, URLs and ``-`` stay."""
    for item in inputs:
        path = Path(item)
        if item != "-" and not is_url(item) and path.is_dir():
            from runtime.images import list_images  # here: a start on files alone need not import it

            images = list_images(path)
            yield from (str(p) for p in images) if images else [(item, "folder holds no images")]
        else:
            yield item


def read(item: str, settings):
    """The image source of one input: stdin or a URL as bytes, a path otherwise (every read bounded; the
    network code is imported only for a URL)."""
    from runtime.preprocessing import read_bounded

    if item == "-":
        return read_bounded(sys.stdin.buffer, settings.limits.max_bytes)
    if not is_url(item):
        return item
    from runtime.net.fetch import fetch

    return fetch(item, settings.fetch)


def show(item: str, result, as_json: bool):
    """Print one answer (a Prediction or an error message); JSON names the model file that answered."""
    if isinstance(result, str):
        print(json.dumps({"input": item, "error": result}) if as_json else f"{item}: error: {result}",
              flush=True)
    elif as_json:
        print(json.dumps({"input": item, **asdict(result)}, allow_nan=False), flush=True)
    else:
        others = ", ".join(f"{t['label']} {t['score']:.3f}" for t in result.top[1:])
        again = f"  (near-tie, re-checked by {result.model})" if result.rechecked else ""
        print(f"{item}: {result.label} ({result.score:.3f})" + (f"  [{others}]" if others else "") + again,
              flush=True)


def predicted(clf, row, top_k: int, rechecked: bool):
    """The Prediction of one row of logits, or the error message (non-finite logits)."""
    try:
        return clf.prediction(row, top_k, rechecked)
    except RuntimeToolkitError as e:
        return str(e)


def main(argv=None) -> int:
    end_quietly_on_broken_pipe()
    args = parser().parse_args(argv)
    import numpy as np

    try:
        settings, clf = load_model(args)
    except RuntimeToolkitError as e:
        return error(str(e))
    print(f"model: {clf.name} ({clf.runner.backend}, {clf.runner.provider}, {clf.runner.threads} threads); "
          f"chosen: {clf.reason}", file=sys.stderr)
    tally, pending, waiting = Tally(), [], collections.deque()
    classes = clf.info.classes

    def answer(item, result):
        show(item, result, args.json)
        tally.add(item, None if isinstance(result, str) else result.label, classes)
        done = tally.answered + tally.failed
        if done % PROGRESS_EVERY == 0:
            print(f"... {done} images", file=sys.stderr, flush=True)

    def recheck(now: bool):
        """Answer again, together, the rows a cascade's fast file left near a tie, once a batch of them has
        gathered (or ``now``); then show every answer that is ready, in the order of the inputs."""
        due = [w for w in waiting if w.result is None]
        if due and (now or len(due) >= args.batch_size):
            try:
                rows = clf.recheck(np.stack([w.x for w in due]))
            except RuntimeToolkitError as e:
                rows = [str(e)] * len(due)
            for w, row in zip(due, rows, strict=True):
                w.result, w.x = row if isinstance(row, str) else predicted(clf, row, args.top_k, True), None
        while waiting and waiting[0].result is not None:
            w = waiting.popleft()
            answer(w.item, w.result)

    def flush(now=False):
        if pending:
            try:
                out = clf.first_answer(np.stack([x for _, x in pending]))
            except RuntimeToolkitError as e:  # the model failed the whole batch: each input says so
                waiting.extend(Waiting(item, str(e)) for item, _ in pending)
            else:
                for (item, x), row, again in zip(pending, out.logits, out.rechecked, strict=True):
                    waiting.append(Waiting(item, x=x) if again else
                                   Waiting(item, predicted(clf, row, args.top_k, False)))
            pending.clear()
        recheck(now)

    def fail(item, message):
        flush()
        waiting.append(Waiting(item, message))
        recheck(False)

    for item in itertools.islice(expand(args.inputs), args.limit):
        if isinstance(item, tuple):
            fail(*item)
            continue
        try:
            pending.append((item, clf.preprocess(read(item, settings))))
        except RuntimeToolkitError as e:
            fail(item, str(e))
        except Exception as e:  # a bug must not drop the remaining inputs: say it once, go on
            fail(item, f"unexpected {type(e).__name__}: {first_line(e)}")
        if len(pending) >= args.batch_size:
            flush()
    flush(now=True)
    print(tally.summary(), file=sys.stderr)
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
