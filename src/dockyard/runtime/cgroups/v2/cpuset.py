"""v2 cpuset: the same cpuset.cpus/cpuset.mems files as v1; a v2 child inherits its parent's
effective set, so nothing needs copying down."""

from ..v1.cpuset import set

__all__ = ["set"]
