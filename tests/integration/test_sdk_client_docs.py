"""docs/sdk.md's client examples stay true: every ```cpp block preceded by
`<!-- client-example: FILE#NAME -->` is exactly the region between `// doc:begin NAME` and
`// doc:end` of FILE (a program in examples/client, which the build compiles and
test_sdk_install.py runs against a real node)."""
import os
import re
import textwrap
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TAG = re.compile(r"<!-- client-example: ([^#\s]+)#(\S+) -->\n```cpp\n(.*?)\n```", re.S)


def region(path, name):
    lines, out = open(os.path.join(ROOT, path)).read().split("\n"), None
    for line in lines:
        if line.strip() == "// doc:begin " + name:
            out = []
        elif out is not None and line.strip() == "// doc:end":
            return textwrap.dedent("\n".join(out))
        elif out is not None:
            out.append(line)
    raise AssertionError("%s has no region '%s'" % (path, name))


class ClientDocs(unittest.TestCase):
    def test_client_examples_match_the_compiled_programs(self):
        with open(os.path.join(ROOT, "docs/sdk.md")) as f:
            doc = f.read()
        self.assertIn("\n## Client\n", doc)
        self.assertIn("\n## Installing the SDK\n", doc)
        found = TAG.findall(doc)
        self.assertEqual(doc.count("<!-- client-example:"), len(found), "a client-example tag without a cpp block")
        self.assertGreaterEqual(len(found), 3)
        for path, name, code in found:
            self.assertTrue(path.startswith("examples/client/"), path)
            self.assertEqual(code, region(path, name), "docs/sdk.md example %s#%s differs from the program" % (path, name))

    def test_every_marked_region_is_shown(self):
        with open(os.path.join(ROOT, "docs/sdk.md")) as f:
            shown = {(p, n) for p, n, _ in TAG.findall(f.read())}
        for name in sorted(os.listdir(os.path.join(ROOT, "examples/client"))):
            if not name.endswith(".cpp"):
                continue
            path = "examples/client/" + name
            for marker in re.findall(r"// doc:begin (\S+)", open(os.path.join(ROOT, path)).read()):
                self.assertIn((path, marker), shown, "region %s#%s is not in docs/sdk.md" % (path, marker))


if __name__ == "__main__":
    unittest.main()
