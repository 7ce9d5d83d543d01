#!/usr/bin/env python3
"""tests/system/lbload.py: a bounded HTTP load generator that records every request.

usage: lbload.py URL OUT.csv [--threads N] [--interval-ms MS] [--max-s S] [--stop FILE]

Each thread sends GET URL over a keep-alive connection (reconnecting after any error), one
request per interval, and appends "t_ms,ok,status,body,lat_ms" lines to OUT.csv (t_ms: wall
clock milliseconds; ok: 1 for a 200, 0 otherwise, with status "ERR:<reason>" for a connection
or timeout error; body: the first line of the answer, which names the revision and the host
that served it; lat_ms: the request's latency). Stops when FILE exists or after --max-s
seconds (always bounded), then prints "requests N failed M".
"""
import argparse
import http.client
import os
import threading
import time
import urllib.parse


def worker(url, interval, deadline, stop, out, lock, counts):
    u = urllib.parse.urlsplit(url)
    conn = None
    while time.time() < deadline and not os.path.exists(stop):
        t0 = time.time()
        ok, status, body = 0, "", ""
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
            conn.request("GET", u.path or "/")
            r = conn.getresponse()
            data = r.read()
            status = str(r.status)
            body = data.decode("utf-8", "replace").split("\n", 1)[0].strip()
            ok = 1 if r.status == 200 else 0
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # noqa: BLE001 - every failure is a failed request
            status = "ERR:" + type(e).__name__
            if conn is not None:
                conn.close()
            conn = None
        lat = (time.time() - t0) * 1000.0
        line = "%d,%d,%s,%s,%.3f\n" % (int(t0 * 1000), ok, status, body.replace(",", " "), lat)
        with lock:
            out.write(line)
            counts[0] += 1
            counts[1] += 0 if ok else 1
        left = interval - (time.time() - t0)
        if left > 0:
            time.sleep(left)
    if conn is not None:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--interval-ms", type=int, default=10)
    ap.add_argument("--max-s", type=int, default=600)
    ap.add_argument("--stop", default="/nonexistent")
    a = ap.parse_args()
    deadline = time.time() + a.max_s
    lock = threading.Lock()
    counts = [0, 0]
    with open(a.out, "w", buffering=1) as out:
        ts = [threading.Thread(target=worker, args=(a.url, a.interval_ms / 1000.0, deadline,
                                                    a.stop, out, lock, counts))
              for _ in range(a.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    print("requests %d failed %d" % (counts[0], counts[1]))


if __name__ == "__main__":
    main()
