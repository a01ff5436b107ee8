"""Rules about the source that the compiler does not enforce: patterns known to miscompile
with the toolchain keel builds with (Debian's GCC 12)."""
import os
import re
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DIRS = ("src", "sdk", "include", "tools", "tests", "bench")


def sources():
    for d in DIRS:
        for base, _, files in os.walk(os.path.join(ROOT, d)):
            for f in files:
                if f.endswith((".cpp", ".h")):
                    yield os.path.join(base, f)


PATTERN = re.compile(r"[?:]\s*co_await\b")
LABEL = re.compile(r"^\s*(case\b[^\n]*|default\s*)$")  # `case X: co_await ...` is a label


def conditional_co_awaits(text):
    """Offsets of co_awaits that are an operand of ?: in `text` (comments removed)."""
    out = []
    for m in PATTERN.finditer(text):
        if text[m.start()] == ":" and LABEL.match(text[text.rfind("\n", 0, m.start()) + 1:m.start()]):
            continue
        out.append(m.start())
    return out


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


class SourceRules(unittest.TestCase):
    def test_no_co_await_in_a_conditional_expression(self):
        # GCC 12 destroys the result of `c ? co_await a : co_await b` twice: a double free once
        # the result owns memory (it crashed a node when a write missed its quorum).
        found = []
        for path in sources():
            with open(path, encoding="utf-8", errors="replace") as f:
                text = strip_comments(f.read())
            for at in conditional_co_awaits(text):
                line = text.count("\n", 0, at) + 1
                found.append("%s:%d" % (os.path.relpath(path, ROOT), line))
        self.assertEqual(found, [], "use if/else around the co_awaits instead")

    def test_the_rule_finds_what_it_forbids(self):
        text = "auto r = x ? co_await a()\n         : co_await b(); // ? co_await c\n"
        self.assertEqual(len(conditional_co_awaits(strip_comments(text))), 2)
        self.assertEqual(conditional_co_awaits("  case Routing::kAll:\n    co_await run();\n"), [])


if __name__ == "__main__":
    unittest.main()
