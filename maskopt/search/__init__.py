"""The search: the k-fold objective, pruning, running a study with one or many workers."""

from __future__ import annotations

from maskopt.search.options import SearchOptions
from maskopt.search.runner import SearchSummary, run_search

__all__ = ["SearchOptions", "SearchSummary", "run_search"]
