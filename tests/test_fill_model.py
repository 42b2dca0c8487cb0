"""The fill step with the real embedded model: ranking by likelihood on llama.cpp."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipeline.batch import ExtractConfig, run_extract
from pipeline.providers.local import LocalProvider

pytestmark = pytest.mark.model

DOC = (
    "Acme Therapeutics Wins FDA Fast Track for XY-08\n\n"
    "Published: January 30, 2025\n\n"
    "The U.S. Food and Drug Administration (FDA) granted Fast Track designation to XY-08 for lupus nephritis. "
    "Acme Therapeutics develops XY-08, a CD19-directed CAR T cell therapy.\n"
)


@pytest.fixture(scope="module")
def provider() -> LocalProvider:
    return LocalProvider()


def reference(provider: LocalProvider, prefix: str, option: str) -> float:
    """Sum of the option's token log-probs from one plain decode of prefix + option on the main
    context, with logits for the rows that predict the option's tokens."""
    import llama_cpp

    llama = provider.llama
    ptoks = llama.tokenize(prefix.encode(), add_bos=True, special=False)
    otoks = llama.tokenize(option.encode(), add_bos=False, special=False)
    toks = ptoks + otoks
    llama.reset()
    llama._ctx.kv_cache_clear()
    batch = llama._batch.batch
    batch.n_tokens = len(toks)
    for i, t in enumerate(toks):
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = t, i, 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = i >= len(ptoks) - 1
    assert llama_cpp.llama_decode(llama._ctx.ctx, batch) == 0
    total = 0.0
    for j, tok in enumerate(otoks):
        ptr = llama_cpp.llama_get_logits_ith(llama._ctx.ctx, len(ptoks) - 1 + j)
        row = np.ctypeslib.as_array(ptr, shape=(llama.n_vocab(),)).astype(np.float64)
        m = row.max()
        total += float(row[tok] - (m + math.log(np.exp(row - m).sum())))
    llama.reset()
    llama._ctx.kv_cache_clear()
    return total


def test_ranking_matches_a_plain_decode_and_reuses_the_prefix(provider: LocalProvider) -> None:
    prefix = "Text: The FDA approved the drug made by Acme Therapeutics.\nQuestion: Who makes the drug?\nAnswer:"
    options = [" Acme Therapeutics\n\n", " FDA\n\n", " none\n\n"]
    first = provider.rank(prefix, options)
    assert first.tokens_in > 10 and first.tokens_out > 0
    ref = [reference(provider, prefix, o) for o in options]
    # batched multi-sequence scoring equals a plain decode up to quantized-kernel noise (< 0.3 nats)
    assert max(abs(a - b) for a, b in zip(first.scores, ref, strict=True)) < 0.5
    assert int(np.argmax(first.scores)) == int(np.argmax(ref))
    again = provider.rank(prefix, options)
    assert again.tokens_in <= 1  # the prefix stayed cached: only its last token is decoded again
    assert again.scores == pytest.approx(first.scores, abs=0.3)


def test_real_model_fills_organization_kinds(tmp_path: Path, provider: LocalProvider) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "acme.txt").write_text(DOC, encoding="utf-8")
    db = tmp_path / "out.duckdb"
    summary = run_extract([docs], db=db, config=ExtractConfig(), provider=provider, progress=False)
    assert summary.status == "completed" and summary.calls > 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        kinds = dict(con.execute("SELECT name, kind FROM organizations").fetchall())
        margins = [r[0] for r in con.execute("SELECT confidence->>'kind' FROM organizations").fetchall()]
        calls = con.execute("SELECT status, tokens_in, model FROM llm_calls").fetchall()
        published = con.execute("SELECT published FROM article").fetchall()
    finally:
        con.close()
    assert kinds.get("Acme Therapeutics") == "company"
    assert kinds.get("FDA") == "regulator" or kinds.get("U.S. Food and Drug Administration") == "regulator"
    assert all(m is not None and float(m) >= 0 for m in margins)
    assert len(calls) == summary.calls and all(c[0] == "ok" and c[2] == "local:gemma-3-270m-q4_k_m" for c in calls)
    assert published == [("2025-01-30",)]
    rerun = run_extract([docs], db=db, config=ExtractConfig(), provider=provider, progress=False)
    assert rerun.calls == 0 and rerun.chunks_reused == summary.chunks
