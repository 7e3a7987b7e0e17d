"""A bounded load test of the app: concurrent gradio_client users against a local server.

    python bench/load_demo.py                        # 20 users, the default run each
    python bench/load_demo.py --mode distinct        # 20 users, 20 different seeds
    python bench/load_demo.py --mode abuse           # a 3M-entry list, a run, 70 submissions
    python bench/load_demo.py --users 8 --setting small --max-seconds 120 --runs 2

The script starts ``demo.py`` on 127.0.0.1 (a free port) in a subprocess (``--runs``: its runs
at once; default the server's own: the cores), waits for its startup warm-up, connects one
``gradio_client.Client`` per user (before the clock starts: the users have the page open), has
them all submit at once and prints per mode:

- ``same``: ``--users`` clients, each submitting the same ``/train_hltm`` run (``--setting``);
- ``distinct``: the same, user i with seed i + 1 (no two share a run);
- ``abuse``: one ``/byol_ablation`` call whose predictor list holds 3,000,000 entries, one
  default ``/train_hltm`` run (backend numba), then 70 ``/train_hltm`` submissions in a row
  (the "small" setting, 70 seeds; the queue holds 64, so a few are refused).

It prints the wait until each user's first streamed picture (queue plus first epoch) and until
its result as p50/p95/max, the errors, the server's resident memory before (after the
warm-up), at its peak and ``--after`` seconds (60) after the last user finished, and the
machine: cores, and the 1-minute load average sampled during the run (mean and max; other
jobs on a shared machine count in it). It stops by itself: after ``--max-seconds`` it cancels
what is left. Users are capped at 64 (the queue's size), the duration at 1800 s.
"""
import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SETTINGS = {"default": {}, "small": dict(depth=4, epochs=4, steps_per_epoch=100, batch_size=64)}
MODES = ("same", "distinct", "abuse")
ABUSE_LIST = 3_000_000       # entries of the abuse mode's predictor list
ABUSE_SUBMISSIONS = 70


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


def start_server(port, runs, log):
    cmd = [sys.executable, "demo.py", "--port", str(port)] + (
        ["--runs", str(runs)] if runs else [])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    from gradio_client import Client
    deadline = time.monotonic() + 600            # the warm-up may compile the kernels first
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("load_demo: the server exited at start")
        try:
            return proc, Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("load_demo: the server did not start within 600 s")


def user(client, kwargs, out, t_start, api_name="/train_hltm", check=True):
    """One user (a connected ``Client``): submit, note when the first picture and the result
    arrive."""
    rec = {"wait": None, "total": None, "error": None}
    out.append(rec)
    try:
        job = client.submit(**kwargs, api_name=api_name)
        rec["job"] = job
        while not job.done():
            if rec["wait"] is None and job.outputs():
                rec["wait"] = time.perf_counter() - t_start
            time.sleep(0.05)
        result = job.result()[-1]
        rec["wait"] = rec["wait"] or time.perf_counter() - t_start
        rec["total"] = time.perf_counter() - t_start
        if check and result.get("status") != "done":
            rec["error"] = f"status {result.get('status')}"
    except Exception as exc:                 # counted and printed, the load test goes on
        rec["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"


def connect(url, n):
    """``n`` connected clients (each fetches the app's config once), made before the clock
    starts: the users have the page open and press Train at once."""
    from gradio_client import Client
    return [Client(url, verbose=False) for _ in range(n)]


def crowd(args):
    """``[(kwargs, api_name, check)]``: what each user asks for."""
    base = SETTINGS[args.setting]
    if args.mode == "same":
        return [(base, "/train_hltm", True)] * args.users
    if args.mode == "distinct":
        return [({**base, "seed": i + 1}, "/train_hltm", True) for i in range(args.users)]
    big = dict(data="toy", predictors=["none"] * ABUSE_LIST, bn_means=["omit"], emas=["0"],
               steps=50)
    return ([(big, "/byol_ablation", False), ({}, "/train_hltm", True)]
            + [({**SETTINGS["small"], "seed": 100 + i}, "/train_hltm", True)
               for i in range(ABUSE_SUBMISSIONS)])


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))] if v else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=MODES, default="same")
    p.add_argument("--users", type=int, default=20, help="concurrent users (1-64)")
    p.add_argument("--setting", choices=SETTINGS, default="default")
    p.add_argument("--runs", type=int, default=None, help="the server's runs at once")
    p.add_argument("--after", type=float, default=60.0, help="seconds before 'after' memory")
    p.add_argument("--max-seconds", type=float, default=900, help="stop after this (<= 1800)")
    args = p.parse_args(argv)
    if not 1 <= args.users <= 64 or not 0 < args.max_seconds <= 1800:
        p.error("--users must be in [1, 64] and --max-seconds in (0, 1800]")
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc, _ = start_server(port, args.runs, log)
        try:
            rss, loads, out, wall = run_crowd(args, proc, f"http://127.0.0.1:{port}/")
            report(args, out, rss, loads, wall)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        log.seek(0)
        print("server log:", *[ln.strip() for ln in log if "minissl app:" in ln])


def run_crowd(args, proc, url):
    asks = crowd(args)
    clients = connect(url, len(asks))
    rss = {"before": rss_mb(proc.pid), "peak": 0.0}
    out, loads, t0 = [], [], time.perf_counter()
    threads = []
    for client, (kwargs, api, check) in zip(clients, asks):
        threads.append(threading.Thread(target=user, args=(client, kwargs, out, t0, api,
                                                           check), daemon=True))
        threads[-1].start()
        if args.mode == "abuse" and api == "/byol_ablation":
            time.sleep(2.0)                  # the big list first, then the runs
    while any(t.is_alive() for t in threads) and time.perf_counter() - t0 < args.max_seconds:
        rss["peak"] = max(rss["peak"], rss_mb(proc.pid))
        loads.append(os.getloadavg()[0])
        time.sleep(0.5)
    for rec in out:                          # past the time limit: cancel what is left
        if rec["total"] is None and "job" in rec:
            rec["job"].cancel()
            rec["error"] = rec["error"] or "cancelled at --max-seconds"
    wall = time.perf_counter() - t0
    t_end = time.monotonic()
    while time.monotonic() - t_end < args.after:
        rss["peak"] = max(rss["peak"], rss_mb(proc.pid))
        time.sleep(0.5)
    rss["after"] = rss_mb(proc.pid)
    return rss, loads, out, wall


def report(args, out, rss, loads, wall):
    waits = [r["wait"] for r in out if r["wait"] is not None and not r["error"]]
    totals = [r["total"] for r in out if r["total"] is not None and not r["error"]]
    errors = [r["error"] for r in out if r["error"]]
    what = {"same": f"{args.users} users x the same '{args.setting}' /train_hltm run",
            "distinct": f"{args.users} users x a '{args.setting}' /train_hltm run, seeds "
                        f"1..{args.users}",
            "abuse": f"abuse: a {ABUSE_LIST:,}-entry /byol_ablation list, a default run, "
                     f"{ABUSE_SUBMISSIONS} submissions"}[args.mode]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"# {what}; {platform.machine()}, {cores} cores, load average (1 min) during the run "
          f"mean {sum(loads) / max(1, len(loads)):.1f}, max {max(loads, default=0):.1f}, "
          f"Python {platform.python_version()}")
    print(f"finished {len(totals)}/{len(out)} in {wall:.0f} s; errors {len(errors)}"
          + (f": {sorted(set(errors))}" if errors else ""))
    print(f"wait until the first picture: p50 {pct(waits, 0.5):.1f} s, p95 "
          f"{pct(waits, 0.95):.1f} s, max {max(waits, default=float('nan')):.1f} s")
    print(f"time until the result:        p50 {pct(totals, 0.5):.1f} s, p95 "
          f"{pct(totals, 0.95):.1f} s, max {max(totals, default=float('nan')):.1f} s")
    print(f"server resident memory: {rss['before']:.0f} MB before, {rss['peak']:.0f} MB peak, "
          f"{rss['after']:.0f} MB {args.after:.0f} s after "
          f"({rss['after'] / rss['before']:.2f}x before)")


if __name__ == "__main__":
    main()
