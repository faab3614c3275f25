"""Pure pieces of the agent path: sanitize_code and a cell's outputs as tool content (no network)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from aca_kernel._validation import sanitize_code
from aca_kernel.mcp._content import Image, Text, outcome_result


@pytest.mark.parametrize(("code", "expected"), [
    ("```python\nprint(1)\n```", "print(1)"),
    ("```py\nfor i in range(2):\n    print(i)\n```", "for i in range(2):\n    print(i)"),
    ("\n\n```\nimport os\nos.getcwd()\n```\n\n", "import os\nos.getcwd()"),
    ("~~~python\nx = 1\n~~~", "x = 1"),
    ("  x = 1\n  y = 2\n", "x = 1\ny = 2"),            # indented as a block: dedented, not an IndentationError
    ("python\nprint(2)", "print(2)"),                 # a fence's tag left on its own line
    ("pythonic = 1", "pythonic = 1"),                 # a name starting with "python" is code, not a tag
    ("`print(1)`", "print(1)"),
    ("```python\nx = 1", "x = 1"),                    # an unclosed fence
    ("s = '''\n```\n'''", "s = '''\n```\n'''"),       # a fence inside the code is left alone
    ("x = 1   ", "x = 1"),
    ("", ""),
])
def test_sanitize_code(code, expected):
    assert sanitize_code(code) == expected


def outcome(*outputs, error=None, notices=()):
    return SimpleNamespace(outputs=list(outputs), error=error, notices=list(notices))


def stream(name, text):
    return {"output_type": "stream", "name": name, "text": text}


def test_streams_merge_and_sections_keep_their_order():
    result = outcome_result(outcome(stream("stdout", "a\n"), stream("stdout", "b\n"),
                                    {"output_type": "display_data",
                                     "data": {"text/plain": "<IPython.core.display.Markdown object>",
                                              "text/markdown": "**m**"}},
                                    stream("stdout", "c\n"),
                                    {"output_type": "execute_result", "data": {"text/plain": "3"}}),
                            limit=1000)
    assert result.blocks == [Text("[stdout]\na\nb\n[display]\n**m**\n[stdout]\nc\n[result]\n3")]
    assert not result.is_error


def test_images_split_the_text_and_lose_whitespace():
    png = {"output_type": "display_data", "data": {"image/png": "iVBO\nRw0K\n", "text/plain": "<Figure>"}}
    result = outcome_result(outcome(stream("stdout", "x\n"), png, {"output_type": "execute_result",
                                                                   "data": {"text/plain": "1"}}), limit=1000)
    assert result.blocks == [Text("[stdout]\nx"), Image("iVBORw0K", "image/png"), Text("[result]\n1")]


def test_clear_output_drops_what_came_before_and_notes_stay():
    result = outcome_result(outcome(stream("stdout", "10%\n"), {"output_type": "clear_output", "wait": True},
                                    stream("stdout", "done\n"), notices=["a \x1b[1mnote\x1b[0m"]), limit=1000)
    assert result.blocks == [Text("[note] a note"), Text("[stdout]\ndone")]


def test_errors_are_ansi_free_and_sections_capped():
    error = {"ename": "ValueError", "evalue": "boom",
             "traceback": ["\x1b[31m" + "-" * 40 + "\x1b[0m", "\x1b[31mValueError\x1b[0m: boom"]}
    result = outcome_result(outcome(stream("stdout", "x" * 50), error=error), limit=20)
    assert result.is_error
    text = result.blocks[0].text
    assert text.startswith("[stdout]\n" + "x" * 20 + "\n[... 30 more characters cut;")
    # A traceback keeps its end, where the exception is.
    assert text.endswith("[error]\nValueError: boom\n[... 37 characters of the traceback cut ...]\n"
                         "---\nValueError: boom")
    assert "\x1b" not in text


def test_nothing_to_show_is_said():
    assert outcome_result(outcome(), limit=10).blocks == [
        Text("The code ran and printed nothing; it had no value to show.")]
