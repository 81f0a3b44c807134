"""The user turns put first and last in a history, for vendors that refuse any other shape."""

from __future__ import annotations

OPENING_USER_TURN = "Please continue."
"""The user turn put before a history that opens with the model's: Gemini, Perplexity and
deepseek-reasoner refuse one whose first turn (after the system messages) is not the user's
(a history trimmed to fit, a greeting kept first)."""
CLOSING_USER_TURN = OPENING_USER_TURN
"""The user turn put after a history that ends with the assistant's: Perplexity ("Last message
must have role `user`.") and deepseek-reasoner ("The last message of deepseek-reasoner must be
a user message, or an assistant message with prefix mode on") refuse one whose last turn is
not the user's."""


def edged(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    """OpenAI-style turns with the user's first and last: `OPENING_USER_TURN` before a history
    that opens with the assistant, `CLOSING_USER_TURN` after one that ends with it. System
    messages before the first other turn stay first. Changes `turns` and returns it."""
    start = next((i for i, m in enumerate(turns) if m["role"] != "system"), len(turns))
    if start < len(turns) and turns[start]["role"] == "assistant":
        turns.insert(start, {"role": "user", "content": OPENING_USER_TURN})
    if turns and turns[-1]["role"] == "assistant":
        turns.append({"role": "user", "content": CLOSING_USER_TURN})
    return turns
