"""Every limit the demo enforces, in one place: how much text each input may hold, how many model calls run at
once, how many requests may wait, how large a request body or upload may be.

Why: a demo reachable from the network (`--host 0.0.0.0`, `--share`) takes input from anyone who has the
login. An unbounded input costs the server far more than it costs the sender (a 12 MB chat history took 77 s
to render; 2 MB of stop strings made decoding 6x slower), so every handler checks its inputs here before any
model runs, and the HTTP layer refuses bodies far beyond what any legitimate input needs (demos.exposure).
The checks raise `gr.Error`: the person sees what was too long and by how much.
"""

from __future__ import annotations

# --- text inputs (characters) ----------------------------------------------------------------------------
MAX_CHARS = 5_000  # a task tab's text, a prompt, a chat message, the QA context
MAX_CODE_CHARS = 20_000  # each of the code tab's prompt, completion and tests
MAX_TITLE_CHARS = 200  # an article's title
MAX_OUTLINE_CHARS = 1_500  # an article's outline (at most 12 headings of 80 characters are used)
MAX_NAME_CHARS = 100  # a Python name (the code tab's entry point)
MAX_STOP_STRINGS = 8  # stop strings of the playground
MAX_STOP_CHARS = 64  # characters of one stop string
MAX_CHAT_MESSAGES = 64  # messages of a chat history (user and assistant turns)
MAX_CHAT_CHARS = 30_000  # characters of a chat history, all messages together

# --- model work ------------------------------------------------------------------------------------------
MAX_NEW_TOKENS = 256  # generation length is clamped to this (and to the backbone's context)
MAX_ATTENTION_TOKENS = 32  # the attention view is for short inputs
MAX_SWEEP_SAMPLES = 8  # samples per decoding setting of the creativity-coherence sweep
MAX_SWEEP_TOKENS = 128  # tokens per sample of the sweep
MAX_LENS_TOKENS = 16  # positions the logit lens shows (a column each)
MAX_PROBE_TRAIN, MAX_PROBE_TEST = 500, 300  # the demo's layer probe reads small subsets (the command reads more)
MAX_ATTRIBUTION_STEPS = 64  # integrated gradients' steps (a backward pass each)

# --- the server ------------------------------------------------------------------------------------------
CONCURRENCY_LIMIT = 2  # model calls at once, all tabs together (2 CPU cores); `--concurrency`
MAX_QUEUE = 16  # requests that may wait; more are refused at once with "queue full"; `--max-queue`
MODEL_GROUP = "model"  # the concurrency group of every event that may run a model
UI_GROUP = "ui"  # cheap events (a dropdown's description, clearing a box): their own small group
UI_EVENT = {"concurrency_id": UI_GROUP, "concurrency_limit": 2}  # keyword arguments of such an event
# a request body: the largest legitimate one (the code tab: 3 x 20,000 characters, JSON-escaped) is far below
MAX_BODY_BYTES = 1_000_000
MAX_UPLOAD = "1mb"  # the app has no upload component; gradio's upload route still exists


def fail(message: str):
    """Stop a handler and show `message` to the person (a toast in the browser, an error to API clients)."""
    import gradio as gr  # here, not at the top: the CLI reads the limits for --help without loading gradio

    raise gr.Error(message, print_exception=False)


def check_text(text, what: str = "text", max_chars: int = MAX_CHARS, required: bool = True) -> str:
    """The text itself, or a clear message when it is empty (unless not `required`: then ""), too long or
    looks like binary data. Every free-text input of every handler goes through here."""
    if text is None or not str(text).strip():
        if required:
            fail(f"The {what} is empty: type or paste some text.")
        return ""
    if not isinstance(text, str):
        fail(f"The {what} must be text, got {type(text).__name__}.")
    if len(text) > max_chars:
        fail(f"The {what} is too long: {len(text):,} characters; this demo accepts at most {max_chars:,}. "
             "Shorten it.")
    bad = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\t\n\r") or ch in "\x7f\ufffd")
    if "\x00" in text or bad > max(1, len(text) // 100):
        fail(f"The {what} looks like binary data ({bad} control or undecodable characters): paste plain text.")
    return text


def check_stops(stop) -> tuple[str, ...]:
    """The playground's stop strings (one a line, `\\n` for a newline), at most MAX_STOP_STRINGS of at most
    MAX_STOP_CHARS each: every decoding step searches the text for each of them."""
    text = check_text(stop, "text of the stop strings", MAX_STOP_STRINGS * (MAX_STOP_CHARS + 1), required=False)
    stops = tuple(s.replace("\\n", "\n") for s in text.splitlines() if s)
    if len(stops) > MAX_STOP_STRINGS:
        fail(f"Too many stop strings: {len(stops)}; this demo accepts at most {MAX_STOP_STRINGS}.")
    for s in stops:
        if len(s) > MAX_STOP_CHARS:
            fail(f"A stop string is too long: {len(s):,} characters; this demo accepts at most {MAX_STOP_CHARS}.")
    return stops


def _text_of(content) -> str:
    """Gradio message content (a string, or a list of parts) as plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    if isinstance(content, (list, tuple)):
        return "".join(_text_of(part) for part in content)
    return "" if content is None else str(content)


def check_history(history) -> list[dict]:
    """A chat history as plain-text messages ({"role", "content"}), or a clear message when it holds more
    than MAX_CHAT_MESSAGES messages, a message over MAX_CHARS characters or MAX_CHAT_CHARS in all: the
    whole history is rendered through the chat template and tokenized on every turn."""
    history = history or []
    if not isinstance(history, list) or not all(isinstance(m, dict) and "role" in m for m in history):
        fail("The chat history is not a list of messages with a role and a content.")
    if len(history) > MAX_CHAT_MESSAGES:
        fail(f"The conversation is too long: {len(history)} messages; this demo keeps at most "
             f"{MAX_CHAT_MESSAGES}. Press Clear to start a new one.")
    messages = [{"role": str(m["role"]), "content": _text_of(m.get("content"))} for m in history]
    for m in messages:
        if len(m["content"]) > MAX_CHARS:
            fail(f"A message of the conversation is too long: {len(m['content']):,} characters; this demo "
                 f"accepts at most {MAX_CHARS:,}.")
    total = sum(len(m["content"]) for m in messages)
    if total > MAX_CHAT_CHARS:
        fail(f"The conversation is too long: {total:,} characters; this demo keeps at most {MAX_CHAT_CHARS:,}. "
             "Press Clear to start a new one.")
    return messages
