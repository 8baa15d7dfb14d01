"""Adapters that put other libraries' clients under this library's limits.

`act_operator_lib.integrations.langchain`: our limiters as a chat model's
``rate_limiter=``, and token budgets settled from the response's usage.
"""

__all__: list[str] = []
