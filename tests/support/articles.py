"""The test articles: the folder, the seed article, and the URL the seed lacks."""

from __future__ import annotations

from pathlib import Path

ARTICLES = Path(__file__).parent.parent / "articles"
SEED = ARTICLES / "seed-ketamine.txt"
RECENT = "https://clinic.example/blog/which-type"  # the seed names its recent article without a URL
