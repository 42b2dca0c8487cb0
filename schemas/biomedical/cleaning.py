"""Page furniture of biomedical sources (PubMed's indexing sections) that the cleaner drops,
on top of the generic web boilerplate rules of ``pipeline.ingest``."""

from __future__ import annotations

import re

from pipeline.core.domain import Cleaning

CLEANING = Cleaning(
    boilerplate=re.compile(r"^pubmed disclaimer$", re.IGNORECASE),
    section_stops=re.compile(
        r"""^(
            publication\ types | mesh\ terms | substances | linkout\ -\ more\ resources | related\ information
          | grants\ and\ funding | full\ text\ sources | supplementary\ concepts | comment\ in | erratum\ in
        ):?$""",
        re.IGNORECASE | re.VERBOSE,
    ),
)
