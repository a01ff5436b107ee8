"""The user docs stay true: every setting is documented, every documented command exists."""
import os
import re
import unittest

import redis

from harness import Keel, Raw

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


class Docs(unittest.TestCase):
    def test_every_setting_is_documented(self):
        with open(os.path.join(ROOT, "docs/configuration.md")) as f:
            doc = f.read()
        with Keel("--engine", "memory") as k:
            settings = redis.Redis(port=k.port, decode_responses=True).config_get("*.*")
        self.assertGreater(len(settings), 15)
        missing = [key for key in settings if "`%s`" % key not in doc]
        self.assertEqual(missing, [], "settings missing from docs/configuration.md")

    def test_documented_commands_exist(self):
        with open(os.path.join(ROOT, "docs/resp.md")) as f:
            doc = f.read()
        section = doc.split("## Commands", 1)[1].split("\n## ", 1)[0]
        documented = set()
        for line in section.splitlines():
            if line.startswith("| `"):
                documented.update(re.findall(r"`([A-Z_.]+)`", line.split(" | ")[0]))
        self.assertGreater(len(documented), 60)
        with Keel("--engine", "memory") as k:
            raw = Raw(k.port).cmd("COMMAND", "LIST").decode()
        served = {line.upper() for line in raw.split("\r\n")[1:] if line and not line.startswith("$")}
        self.assertEqual(sorted(documented - served), [], "documented but not served")
        self.assertEqual(sorted(served - documented), [], "served but not documented")


if __name__ == "__main__":
    unittest.main()
