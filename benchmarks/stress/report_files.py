"""Where a stress tool's report goes: its JSON and Markdown side by side, each written atomically."""

from pathlib import Path

from runtime.files import write_atomic, write_json


def write_report(folder: Path, stem: str, data: dict, text: str):
    """``stem``.json and ``stem``.md in ``folder`` (made when missing); the Markdown is printed too."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{stem}.json", data)
    write_atomic(folder / f"{stem}.md", text.encode())
    print(text)
