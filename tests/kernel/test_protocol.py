"""The kernel through jupyter_kernel_test's protocol suite, against a real local session pool."""

from __future__ import annotations

import jupyter_kernel_test


class _Samples:
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [
        {"code": "6*7", "result": "42"},
        {"code": "'a' + 'b'", "result": "'ab'"},
        {"code": "import pandas as pd\npd.DataFrame({'a': [1]})", "mime": "text/html"},
    ]
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>x</b>'))", "mime": "text/html"},
        {"code": "from IPython.display import Math, display; display(Math('x^2'))", "mime": "text/latex"},
        {"code": "from IPython.display import Markdown, display; display(Markdown('*m*'))", "mime": "text/markdown"},
    ]
    code_clear_output = "from IPython.display import clear_output; clear_output()"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]
    code_inspect_sample = "zip"
    code_page_something = "zip?"
    supported_history_operations = ("tail", "search")
    # GLOB syntax: a literal "*", so cells of other tests in this run ("6 * 7") do not match too
    code_history_pattern = "6[*]7"


class TestACAKernel(_Samples, jupyter_kernel_test.KernelTests):
    kernel_name = "aca_test"
