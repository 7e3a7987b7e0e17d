"""Sweeps on a real cluster engine: a Dask distributed ``LocalCluster`` (2 worker processes,
one thread each, on 127.0.0.1, no dashboard) started in-process runs the configurations
(``experiments.run_sweep(scheduler=...)``, the CLI's ``sweep --dask``) and gives the table
of the local joblib run."""
import time

import pytest

from minissl.cli import commands as cli
from minissl import experiments as E

distributed = pytest.importorskip(
    "distributed", reason="the Dask sweep needs the 'cluster' extra (dask[distributed])")

ARGS = dict(depth=2, hid=3, epochs=1, samples_per_epoch=128, batch_size=64, eval_samples=200)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address=None) as c:
        yield c


def test_dask_sweep_gives_the_local_table(cluster):
    base = E.HLTMConfig(**ARGS)
    cfgs = E.sweep_configs(base, ["theory", "reference"], [(0.7, 1.0)], [3], ["preset"],
                           [1, 2])
    local = E.run_sweep(cfgs, n_jobs=1)
    seen = []
    t = time.perf_counter()
    with distributed.Client(cluster) as client:
        remote = E.run_sweep(cfgs, scheduler=client, callback=seen.append)
        workers = {w["id"] for w in client.scheduler_info()["workers"].values()}
    assert time.perf_counter() - t < 120
    assert len(workers) == 2 and len(seen) == len(cfgs)
    assert E.sweep_table(remote, 2) == E.sweep_table(local, 2)
    drop = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert drop(remote) == drop(local)


def test_cli_sweep_dask_flag(cluster, capsys):
    argv = ["sweep", "--depth", "2", "--hid", "3", "--epochs", "1", "--samples-per-epoch",
            "128", "--batch-size", "64", "--eval-samples", "200", "--seeds", "2"]
    assert cli.main(argv) == 0
    local = capsys.readouterr().out.splitlines()
    assert cli.main(argv + ["--dask", cluster.scheduler_address]) == 0
    remote = capsys.readouterr().out.splitlines()
    assert "Dask scheduler tcp://127.0.0.1:" in remote[0]
    assert remote[1:-1] == local[1:-1]                      # the table (not the wall time)
