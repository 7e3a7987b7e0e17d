"""A bounded load test of the app: N concurrent gradio_client users against a local server.

    python bench/load_demo.py                        # 20 users, the default run each
    python bench/load_demo.py --users 8 --setting small --max-seconds 120

The script starts ``demo.py`` on 127.0.0.1 (a free port) in a subprocess, starts ``--users``
clients at once, each submitting one ``/train_hltm`` run, and prints per user the wait (until
its first streamed picture: the time in the queue plus the first epoch) and the total (until
its result), then p50/p95 of both, the server's resident memory (before, peak, after) and
the errors. It stops by itself: after ``--max-seconds`` it cancels what is left and ends the
server. Users are capped at 64 (the queue's size), the duration at 1800 s.
"""
import argparse
import os
import platform
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SETTINGS = {"default": {}, "small": dict(depth=4, epochs=4, steps_per_epoch=100, batch_size=64)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    """Resident set size of process ``pid`` in MB (Linux /proc), or NaN."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def start_server(port):
    proc = subprocess.Popen([sys.executable, "demo.py", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from gradio_client import Client
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("load_demo: the server exited at start")
        try:
            return proc, Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("load_demo: the server did not start within 120 s")


def user(url, setting, out, t_start):
    """One user: submit, note when the first picture and the result arrive."""
    from gradio_client import Client
    rec = {"wait": None, "total": None, "error": None}
    out.append(rec)
    try:
        job = Client(url, verbose=False).submit(**setting, api_name="/train_hltm")
        rec["job"] = job
        while not job.done():
            if rec["wait"] is None and job.outputs():
                rec["wait"] = time.perf_counter() - t_start
            time.sleep(0.05)
        result = job.result()[-1]
        rec["wait"] = rec["wait"] or time.perf_counter() - t_start
        rec["total"] = time.perf_counter() - t_start
        if result.get("status") != "done":
            rec["error"] = f"status {result.get('status')}"
    except Exception as exc:                 # counted and printed, the load test goes on
        rec["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))] if v else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=20, help="concurrent users (1-64)")
    p.add_argument("--setting", choices=SETTINGS, default="default")
    p.add_argument("--max-seconds", type=float, default=900, help="stop after this (<= 1800)")
    args = p.parse_args(argv)
    if not 1 <= args.users <= 64 or not 0 < args.max_seconds <= 1800:
        p.error("--users must be in [1, 64] and --max-seconds in (0, 1800]")
    port = free_port()
    proc, _ = start_server(port)
    url = f"http://127.0.0.1:{port}/"
    try:
        rss = {"before": rss_mb(proc.pid), "peak": 0.0}
        out, t0 = [], time.perf_counter()
        threads = [threading.Thread(target=user, args=(url, SETTINGS[args.setting], out, t0),
                                    daemon=True) for _ in range(args.users)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads) and time.perf_counter() - t0 < args.max_seconds:
            rss["peak"] = max(rss["peak"], rss_mb(proc.pid))
            time.sleep(0.5)
        for rec in out:                      # past the time limit: cancel what is left
            if rec["total"] is None and "job" in rec:
                rec["job"].cancel()
                rec["error"] = rec["error"] or "cancelled at --max-seconds"
        time.sleep(2)
        rss["after"] = rss_mb(proc.pid)
        report(args, out, rss, time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def report(args, out, rss, wall):
    waits = [r["wait"] for r in out if r["wait"] is not None and not r["error"]]
    totals = [r["total"] for r in out if r["total"] is not None and not r["error"]]
    errors = [r["error"] for r in out if r["error"]]
    print(f"# {args.users} users x 1 '{args.setting}' /train_hltm run; {platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, Python "
          f"{platform.python_version()}")
    print(f"finished {len(totals)}/{len(out)} in {wall:.0f} s; errors {len(errors)}"
          + (f": {sorted(set(errors))}" if errors else ""))
    print(f"wait until the first picture: p50 {pct(waits, 0.5):.1f} s, p95 "
          f"{pct(waits, 0.95):.1f} s, max {max(waits, default=float('nan')):.1f} s")
    print(f"time until the result:        p50 {pct(totals, 0.5):.1f} s, p95 "
          f"{pct(totals, 0.95):.1f} s, max {max(totals, default=float('nan')):.1f} s")
    print(f"server resident memory: {rss['before']:.0f} MB before, {rss['peak']:.0f} MB peak, "
          f"{rss['after']:.0f} MB after")


if __name__ == "__main__":
    main()
