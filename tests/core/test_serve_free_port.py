"""`runwatch serve --port 0`: the port it bound is the one it prints and the one in every URL it writes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request


def test_serve_on_port_0_prints_and_uses_the_bound_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runwatch", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        found = re.fullmatch(
            r"runwatch: reference server on http://127\.0\.0\.1:(\d+); Ctrl-C stops it\n", first
        )
        assert found, first
        port = int(found[1])
        assert port != 0
        body = json.dumps({"script": [{"status": "SUCCEEDED"}]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/runs",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as answer:
            location = answer.headers["Location"]
            run = json.loads(answer.read())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert location == f"http://127.0.0.1:{port}/runs/{run['id']}"
    assert run["url"] == location
