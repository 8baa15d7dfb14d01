"""Rate and concurrency limits shared by every call that uses them."""

from act_operator_lib.limits._statistics import LimiterStatistics

__all__ = ["LimiterStatistics"]
