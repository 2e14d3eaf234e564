"""Unknown tokens benchmark: a known user's posts while clients flood the collector with tokens
the hub does not know.

A real JupyterHub (tests/hubserver.py: configurable-http-proxy, the collector as a managed
service writing a JSON-lines file) on 127.0.0.1. alice posts one event at a time with her token,
first on a quiet collector (the baseline), then while `--clients` threads post `--tokens` events,
each with a new random token, through the proxy. Printed: alice's latency quiet and during the
flood (median, max), their ratio, the flood's duration and statuses, and how many questions the
hub was asked (its access log's `GET /hub/api/user` lines).

    python benchmarks/bench_tokens.py                      # 2000 tokens, 64 clients, age 1 s
    python benchmarks/bench_tokens.py --age 60 --clients 16
    python benchmarks/bench_tokens.py --repeat 20          # each token sent 20 times

`--age` is `auth_cache_max_age`: at 1 s alice's answer expires during the flood, so her token
is asked about again amid the unknown ones (its own turn since the hub accepted it once).
"""

from __future__ import annotations

import argparse
import collections
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hubserver import SERVICE, running_hub

NOTEBOOK = "https://events.jupyter.org/jupyter_telemetry_ext/notebook"
CONFIG = """\
import logging
c.TelemetryCollector.record_user = "username"
c.TelemetryCollector.auth_cache_max_age = {age}
c.EventLog.handlers = [logging.FileHandler({sink!r})]
c.EventLog.allowed_schemas = {{{notebook!r}: {{"allowed_categories": ["user-identifier"]}}}}
"""
LOOKUP = re.compile(r"\] \d{3} GET /hub/api/user \(")


def main() -> None:
    """Run the flood once; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000, help="posts of the flood")
    parser.add_argument("--clients", type=int, default=64, help="threads posting the flood")
    parser.add_argument("--repeat", type=int, default=1, help="posts per unknown token")
    parser.add_argument("--age", type=int, default=1, help="auth_cache_max_age (seconds)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        config = tmp / "telemetry_config.py"
        config.write_text(CONFIG.format(age=args.age, sink=str(tmp / "events.jsonl"),
                                        notebook=NOTEBOOK))  # fmt: skip
        with running_hub(tmp, config) as hub:
            url = f"{hub.url}services/{SERVICE}/api/telemetry/events"
            alice = hub.user_token("alice")

            def post(token: str, client_id: str) -> tuple[int, float]:
                body = {"schema_id": NOTEBOOK, "version": 1, "data": {"action": "opened"},
                        "id": client_id}  # fmt: skip
                started = time.perf_counter()
                reply = requests.post(url, json=body, timeout=120,
                                      headers={"Authorization": f"token {token}"})  # fmt: skip
                return reply.status_code, time.perf_counter() - started

            quiet = [post(alice, f"q-{n}")[1] for n in range(20)]
            asked_before = len(LOOKUP.findall(hub.log.read_text("utf-8", "replace")))
            tokens = [secrets.token_hex(16) for _ in range(-(-args.tokens // args.repeat))]
            statuses: collections.Counter[int] = collections.Counter()
            done = threading.Event()

            def flood() -> None:
                with ThreadPoolExecutor(args.clients) as pool:
                    jobs = range(args.tokens)
                    for status, _ in pool.map(lambda n: post(tokens[n % len(tokens)], f"f-{n}"),
                                              jobs):  # fmt: skip
                        statuses[status] += 1
                done.set()

            started = time.perf_counter()
            threading.Thread(target=flood).start()
            time.sleep(0.5)
            during = []
            while not done.is_set():
                status, took = post(alice, f"k-{len(during)}")
                if status != 200:
                    sys.exit(f"alice's post answered {status} during the flood")
                during.append(took)
                time.sleep(0.3)
            elapsed = time.perf_counter() - started
            time.sleep(2)  # the hub writes its log line after it answered
            asked = len(LOOKUP.findall(hub.log.read_text("utf-8", "replace"))) - asked_before
    if not during:
        sys.exit("the flood ended before alice posted: raise --tokens")
    ms = 1000.0
    print(f"alice quiet: median {statistics.median(quiet) * ms:.1f} ms (n={len(quiet)})")
    print(f"alice during the flood: median {statistics.median(during) * ms:.1f} ms, max "
          f"{max(during) * ms:.1f} ms (n={len(during)}); ratio to quiet "
          f"{statistics.median(during) / statistics.median(quiet):.1f}x")  # fmt: skip
    print(
        f"flood: {args.tokens} posts, {len(tokens)} tokens, {args.clients} clients, "
        f"{elapsed:.1f} s, statuses {dict(sorted(statuses.items()))}"
    )
    print(f"hub asked about tokens: {asked}")


if __name__ == "__main__":
    main()
