"""The API documentation as one self-contained HTML page (no CDN: it works offline and air-gapped)."""

import html
import json


def docs_page(spec: dict) -> str:
    """Every path and method of an OpenAPI spec: summary, request types, answers, parameters."""
    rows = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {})
            params = ", ".join(f"{p['name']} ({p.get('in', '')})" for p in op.get("parameters", []))
            answers = ", ".join(f"{code} {r.get('description', '')}" for code, r in op.get("responses", {}).items())
            rows.append(f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                        f"<td>{html.escape(op.get('summary', ''))}</td>"
                        f"<td>{html.escape(', '.join(body) or '-')}</td><td>{html.escape(params or '-')}</td>"
                        f"<td>{html.escape(answers)}</td></tr>")
    info = spec.get("info", {})
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(info.get('title', 'API'))}"
            "</title><style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px;"
            "vertical-align:top}table{border-collapse:collapse}pre{background:#f6f6f6;padding:1em}</style></head>"
            f"<body><h1>{html.escape(info.get('title', 'API'))} {html.escape(str(info.get('version', '')))}</h1>"
            f"<pre>{html.escape(info.get('description', ''))}</pre>"
            "<table><tr><th>endpoint</th><th>summary</th><th>request body</th><th>parameters</th><th>answers</th></tr>"
            + "".join(rows) + "</table><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>"
            f"<details><summary>OpenAPI document</summary><pre>{html.escape(json.dumps(spec, indent=2))}</pre>"
            "</details></body></html>")
