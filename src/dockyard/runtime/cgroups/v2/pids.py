"""v2 pids: the same pids.max/pids.current files as v1."""

from ..v1.pids import set, stats

__all__ = ["set", "stats"]
