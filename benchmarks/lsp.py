"""The language server while someone types: open a 500-step campaign, apply
200 single-character edits one after the other, and time each from the change
sent to its diagnostics published — through the real protocol, `cadence lsp`
in its own process. Goal (issue 12): median <= 50 ms.

Run: ``python benchmarks/lsp.py [--steps 500] [--edits 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

sys.path.insert(0, str(Path(__file__).parent))
from compile import generate


async def measure(steps: int, edits: int) -> list[float]:
    folder = Path(tempfile.mkdtemp(prefix="cadence-lsp-bench-"))
    path = folder / "big.campaign"
    text = generate(steps)
    path.write_text(text)
    uri = from_fs_path(str(path))
    assert uri is not None
    client = LanguageClient("bench", "1")
    published: asyncio.Queue[float] = asyncio.Queue()
    errors: list[int] = []

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _published(params: types.PublishDiagnosticsParams) -> None:
        if params.uri == uri:
            published.put_nowait(time.perf_counter())
            errors.append(len(params.diagnostics))

    env = {**os.environ, "CADENCE_CACHE_DIR": str(folder / "cache")}
    await client.start_io(sys.executable, "-m", "cadence", "lsp", env=env)
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
    client.initialized(types.InitializedParams())
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="campaign", version=1, text=text
            )
        )
    )
    await published.get()
    rng = random.Random(12)
    # Edits inside subjects, where typing happens: each keeps the file valid.
    places = [n + len('subject "') for n in range(len(text)) if text.startswith('subject "', n)]
    took = []
    for version in range(2, edits + 2):
        at = rng.choice(places)
        text = text[:at] + rng.choice("abcdefgh ") + text[at:]
        places = [p + 1 if p > at else p for p in places]
        sent = time.perf_counter()
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )
        took.append(await published.get() - sent)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    assert not any(errors), "an edit made the campaign invalid: the timing would not be a check's"
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--edits", type=int, default=200)
    args = parser.parse_args()
    took = asyncio.run(measure(args.steps, args.edits))
    median = statistics.median(took) * 1000
    p95 = statistics.quantiles(took, n=20)[-1] * 1000
    print(
        f"re-check after an edit  {median:6.1f} ms median, {p95:6.1f} ms 95th percentile "
        f"({args.edits} edits of a {args.steps}-step campaign; goal: median <= 50 ms)"
    )


if __name__ == "__main__":
    main()
