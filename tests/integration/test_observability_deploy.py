"""deploy/observability stays usable: the alerting rules pass `promtool check rules` and their
unit tests (`promtool test rules`), the Prometheus configuration is valid, and every keel metric
that a dashboard panel or an alert reads is one a running node actually exports."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request

import redis

from harness import wait_for, KEEL_BIN, Keel, free_port, http

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEPLOY = os.path.join(ROOT, "deploy", "observability")


def promtool(*args):
    return subprocess.run(["promtool", *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120)


def metric_names(text):
    """keel_* metric names an expression reads (histogram series reduced to their family)."""
    names = set(re.findall(r"\b(keel_[a-z_]+)\b", text))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


class DeployObservabilityTest(unittest.TestCase):
    def test_rules_are_valid_and_their_unit_tests_pass(self):
        r = promtool("check", "rules", "alerts.yml")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = promtool("test", "rules", "alerts_test.yml")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout + r.stderr)
        r = promtool("check", "config", "prometheus.yml")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_every_alert_has_a_runbook_section(self):
        with open(os.path.join(DEPLOY, "alerts.yml")) as f:
            rules = f.read()
        with open(os.path.join(ROOT, "docs", "operations.md")) as f:
            anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
                       for h in re.findall(r"^#+ (.+)$", f.read(), re.M)}
        links = re.findall(r'runbook_url: "docs/operations.md#([a-z0-9-]+)"', rules)
        alerts = re.findall(r"- alert: (\w+)", rules)
        self.assertEqual(len(links), len(alerts), "every alert links a runbook")
        self.assertEqual(sorted(set(links) - anchors), [], "runbook links without a section in docs/operations.md")

    def test_dashboards_and_alerts_read_metrics_a_node_exports(self):
        wanted = {}
        for name in sorted(os.listdir(os.path.join(DEPLOY, "grafana"))):
            with open(os.path.join(DEPLOY, "grafana", name)) as f:
                dash = json.load(f)
            self.assertTrue(dash["uid"] and dash["title"] and dash["panels"], name)
            for p in dash["panels"]:
                self.assertTrue(p["targets"], "%s: panel %r has no query" % (name, p["title"]))
                for t in p["targets"]:
                    for m in metric_names(t["expr"]):
                        wanted.setdefault(m, "%s: %s" % (name, p["title"]))
        with open(os.path.join(DEPLOY, "alerts.yml")) as f:
            for m in metric_names(f.read()):
                wanted.setdefault(m, "alerts.yml")
        self.assertGreater(len(wanted), 25)

        # A one-member cluster with a TLS listener, so that the cluster and certificate
        # families are there too.
        pki = tempfile.mkdtemp(prefix="keel-obs-pki-")
        self.addCleanup(shutil.rmtree, pki, True)
        for args in (["cert", "init", "--dir", pki, "--cluster", "obs"],
                     ["cert", "issue", "--node", "1", "--dir", pki, "--host", "127.0.0.1", "--ttl", "1d"]):
            subprocess.run([KEEL_BIN, *args], check=True, capture_output=True, timeout=60)
        peer = free_port()
        k = Keel("--engine", "memory", "--node-id", "1", "--peer-port", str(peer),
                 "--peers", "1@127.0.0.1:%d" % peer,
                 "--set", "tls.port=%d" % free_port(),
                 "--set", "tls.cert_file=" + os.path.join(pki, "node-1.crt"),
                 "--set", "tls.key_file=" + os.path.join(pki, "node-1.key"),
                 "--set", "tls.auth_clients=no")
        k.start()
        self.addCleanup(k.cleanup)
        r = redis.Redis(port=k.port)

        def can_write():  # a fresh member answers CLUSTERDOWN until it has its partition map
            try:
                return r.set("a", "1")
            except redis.exceptions.ResponseError as e:
                if "CLUSTERDOWN" not in str(e):
                    raise
                return False
        wait_for("the node's first partition map", can_write, 20)
        r.get("a")
        exported = set()
        for _ in range(200):  # the cluster families appear once the node has a partition map
            body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.http_port, timeout=10).read().decode()
            exported = set(re.findall(r"^# TYPE (keel_[a-z_]+) ", body, re.M))
            if "keel_cluster_quorum" in exported:
                break
            time.sleep(0.1)
        missing = {m: where for m, where in wanted.items() if m not in exported}
        self.assertEqual(missing, {}, "read by a dashboard or an alert but not exported")

        # The certificate lives one day: below health.tls_min_days (3), so readiness says so,
        # and the metric gives its expiry.
        expiry = float(re.search(r'^keel_tls_certificate_expiry_timestamp_seconds\{listener="resp"\} (\S+)$',
                                 body, re.M).group(1))
        self.assertAlmostEqual(expiry - time.time(), 86400, delta=600)
        st, ready = http("GET", k.http_port, "/health/ready/certificates")
        self.assertEqual(st, 503, ready)
        self.assertIn("the resp certificate: 1.0 days left (at least 3 required", json.dumps(ready))


if __name__ == "__main__":
    unittest.main()
