#!/usr/bin/env python3
"""API latency of a running `distd serve` under concurrent clients.

    tests/bench/api.py URL CERT KEY [--clients 32] [--requests 50] PATH...

Each client opens its own mutually authenticated connection (CERT/KEY: an X.509-SVID, e.g.
`spire-server x509 mint`), keeps it alive, and sends REQUESTS GETs, cycling through PATHs
(e.g. /v1/catalog /v1/jobs/1). Prints, per path, the median, 90th and 99th percentile and the
maximum of the request latencies, and the overall throughput.
"""

import argparse
import http.client
import ssl
import statistics
import threading
import time
import urllib.parse


def client(url, context, paths, requests, results, errors):
    parsed = urllib.parse.urlparse(url)
    connection = http.client.HTTPSConnection(parsed.hostname, parsed.port, context=context)
    for i in range(requests):
        path = paths[i % len(paths)]
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        took = time.perf_counter() - started
        if response.status != 200:
            errors.append((path, response.status))
        results.setdefault(path, []).append(took)
    connection.close()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    context = ssl.create_default_context()
    # The server is an SVID with a URI SAN only; this measures the daemon, not name checks.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(args.cert, args.key)
    # Each client fills its own dict; they are merged afterwards.
    per_client, errors = [dict() for _ in range(args.clients)], []
    threads = [
        threading.Thread(
            target=client,
            args=(args.url, context, args.paths, args.requests, results, errors),
        )
        for results in per_client
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    merged = {}
    for results in per_client:
        for path, values in results.items():
            merged.setdefault(path, []).extend(values)
    total = sum(len(v) for v in merged.values())
    print(f"{args.clients} clients x {args.requests} requests in {elapsed:.2f} s: {total / elapsed:.0f} requests/s")
    for path, values in merged.items():
        ms = [v * 1000 for v in values]
        print(
            f"{path}: n={len(ms)} median {statistics.median(ms):.1f} ms, p90 {percentile(ms, 90):.1f} ms, "
            f"p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms"
        )
    if errors:
        print(f"errors: {len(errors)}, first: {errors[0]}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
