"""The command line: hltm (table and JSON), sweep (table, CSV, parallel), flag errors,
the subcommand registry, presets, and the module entry point."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import minissl
from minissl.cli import commands as cli
from minissl import experiments as E

SMALL = ["--depth", "3", "--epochs", "2", "--samples-per-epoch", "640", "--batch-size", "64",
         "--eval-samples", "2000", "--hid", "4"]


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_hltm_table_rows_per_epoch(capsys):
    status, out, _ = run(capsys, "hltm", *SMALL, "--seed", "2")
    assert status == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("# theory preset: depth 3") and "loss infonce (tau 0.1)" in lines[0]
    assert lines[1].split() == ["epoch", "d3", "d2", "d1", "loss", "seconds"]
    assert lines[2].split()[0] == "ceiling"
    rows = [ln.split() for ln in lines[3:]]
    assert [r[0] for r in rows] == ["0", "1", "2"]
    ceiling = [float(v) for v in lines[2].split()[1:]]
    for r in rows:
        corr = [float(v) for v in r[1:4]]
        assert all(0 <= c <= 1 for c in corr)
        assert all(c <= ce + 0.03 for c, ce in zip(corr, ceiling))
        assert np.isfinite(float(r[4]))


def test_hltm_json_and_reproducible(capsys):
    _, out1, _ = run(capsys, "hltm", *SMALL, "--json")
    _, out2, _ = run(capsys, "hltm", *SMALL, "--json")
    objs = [json.loads(ln) for ln in out1.strip().splitlines()]
    assert [o["epoch"] for o in objs] == [0, 1, 2]
    for o in objs:
        assert {"epoch", "corr_by_depth", "loss", "seconds", "ceiling_by_depth"} <= set(o)
        assert list(o["corr_by_depth"]) == ["3", "2", "1"]
    strip = lambda s: [{k: v for k, v in json.loads(ln).items() if k != "seconds"}
                       for ln in s.strip().splitlines()]
    assert strip(out1) == strip(out2)                      # fixed seed -> same numbers
    assert objs[0]["corr_by_depth"] != objs[-1]["corr_by_depth"]   # training changed the net


def test_reference_preset_settings():
    cfg = E.HLTMConfig(preset="reference").apply_preset()
    assert (cfg.loss, cfg.bias, cfg.normalize, cfg.lr, cfg.batch_size) == \
        ("ref_nce", True, True, 0.1, 128)
    assert cfg.tau == pytest.approx(0.01 * 10 / 2)
    assert (cfg.depth, cfg.num_children, cfg.hid, cfg.samples_per_epoch, cfg.polarity[0]) == \
        (5, 2, 10, 64000, 0.7)
    tree, net = cfg.build()
    assert net.bias and net.normalize and net.norm_eps == 1e-4
    assert E.HLTMConfig(preset="reference", hid=20).apply_preset().tau == pytest.approx(0.1)
    th = E.HLTMConfig().apply_preset()
    assert (th.loss, th.tau, th.bias, th.normalize) == ("infonce", 0.1, False, False)
    # an explicit value beats the preset
    assert E.HLTMConfig(preset="reference", loss="simple").apply_preset().loss == "simple"


@pytest.mark.parametrize("argv,flag", [
    (["--polarity", "0.9", "0.2"], "--polarity"), (["--depth", "0"], "--depth"),
    (["--hid", "0"], "--hid"), (["--lr", "-1"], "--lr"), (["--loss", "foo"], "--loss"),
    (["--tau", "0"], "--tau"), (["--keep-depth", "9"], "--keep-depth"),
    (["--num-children", "0"], "--num-children"), (["--epochs", "-1"], "--epochs"),
    (["--samples-per-epoch", "10"], "--samples-per-epoch"),
    (["--loss", "simple", "--negatives", "3"], "--negatives"),
    (["--momentum", "1.5"], "--momentum"),
])
def test_bad_values_name_the_flag(capsys, argv, flag):
    with pytest.raises(SystemExit) as e:
        cli.main(["hltm", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {flag}:" in err, err


def test_backend_flag(capsys):
    if not minissl.cupy_available():
        with pytest.raises(SystemExit):
            cli.main(["hltm", *SMALL, "--backend", "cupy"])
        assert "--backend: backend='cupy' cannot run here" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["hltm", "--backend", "tpu"])
    assert "invalid choice" in capsys.readouterr().err


def test_sampler_flag(capsys):
    """--sampler compiled (backend numba): same table, its own numbers from epoch 1 on (epoch
    0 and the ceiling are the NumPy sampler's), reproducible, and what the default ("auto")
    runs on backend numba; refused on other backends."""
    argv = ["hltm", *SMALL, "--backend", "numba", "--json"]
    _, a, _ = run(capsys, *argv, "--sampler", "numpy")
    _, b, _ = run(capsys, *argv, "--sampler", "compiled")
    _, c, _ = run(capsys, *argv)                       # the default "auto": compiled on numba
    a, b, c = ([json.loads(ln) for ln in out.strip().splitlines()] for out in (a, b, c))
    assert [o["epoch"] for o in b] == [0, 1, 2]
    assert b[0]["corr_by_depth"] == a[0]["corr_by_depth"] and b[0]["loss"] == a[0]["loss"]
    assert b[-1]["loss"] != a[-1]["loss"]
    assert [o["loss"] for o in b] == [o["loss"] for o in c]
    with pytest.raises(SystemExit):
        cli.main(["hltm", *SMALL, "--sampler", "compiled"])
    assert "--sampler: sampler='compiled' needs backend='numba'" in capsys.readouterr().err


def test_update_flag_reaches_train_config(capsys):
    """--update covariance goes to TrainConfig: it runs where train() supports it and is a
    usage error naming the flag where it does not."""
    cfg = cli._config(E.HLTMConfig, cli.build_parser().parse_args(["hltm", "--update",
                                                                  "gradient"]))
    assert cfg.train_config(steps=1).update == "gradient"
    status, out, _ = run(capsys, "hltm", *SMALL, "--update", "covariance")
    assert status == 0 and len(out.strip().splitlines()) == 6
    with pytest.raises(SystemExit):
        cli.main(["hltm", *SMALL, "--update", "adam"])
    assert "--update: invalid choice" in capsys.readouterr().err


def test_covariance_update_refuses_reference_net_before_printing(capsys):
    with pytest.raises(SystemExit):
        cli.main(["hltm", *SMALL, "--preset", "reference", "--update", "covariance"])
    out, err = capsys.readouterr()
    assert out == "" and "--update: update='covariance' needs a bias-free net" in err


def test_diverged_run_reports_and_fails(capsys):
    status, out, err = run(capsys, "hltm", *SMALL, "--loss", "simple", "--lr", "50",
                           "--epochs", "5")
    assert status == 1 and "diverged" in err and "smaller learning rate" in err


def test_sweep_table_and_csv(capsys, tmp_path):
    path = tmp_path / "sweep.csv"
    status, out, _ = run(capsys, "sweep", "--preset", "theory", "reference",
                         "--polarity", "0.7:1.0", "0.2:0.5", "--hid", "3", "--loss", "preset",
                         "simple", "--depth", "2", "--epochs", "1", "--samples-per-epoch",
                         "256", "--eval-samples", "500", "--seeds", "2", "--n-jobs", "2",
                         "--csv", str(path))
    assert status == 0
    lines = out.strip().splitlines()
    head = lines[1].split()
    assert head[:6] == ["preset", "polarity", "hid", "loss", "H", "seeds"]
    table = [ln.split() for ln in lines[2:10]]
    assert len(table) == 8                                  # 2 presets x 2 ranges x 2 losses
    assert {r[3] for r in table} == {"infonce", "ref_nce", "simple"}
    for r in table:
        assert r[5] == "2" and all("±" in c for c in r[6:])
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 16
    assert {r["seed"] for r in rows} == {"1", "2"}
    # the table's mean is the CSV's mean
    sel = [float(r["trained_d2"]) for r in rows
           if (r["preset"], r["polarity"], r["loss"]) == ("theory", "0.7:1.0", "infonce")]
    first = next(r for r in table if r[:4] == ["theory", "0.7:1.0", "3", "infonce"])
    assert first[7].split("±")[0] == f"{np.mean(sel):.3f}"


def test_sweep_marks_diverged_runs_and_bad_range(capsys):
    status, out, _ = run(capsys, "sweep", "--loss", "simple", "--lr", "50", "--depth", "2",
                         "--epochs", "3", "--samples-per-epoch", "640", "--batch-size", "64",
                         "--eval-samples", "500", "--seeds", "1")
    assert status == 0 and "div 1/1" in out
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--polarity", "0.7-1.0"])
    assert "--polarity" in capsys.readouterr().err


def test_registry_adds_a_command(monkeypatch, capsys):
    def add_echo_parser(sub):
        p = sub.add_parser("echo")
        p.add_argument("word")
        cli.add_training_flags(p)
        return p

    def run_echo(args):
        print(args.word, args.backend)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "echo", (add_echo_parser, run_echo))
    status, out, _ = run(capsys, "echo", "hi", "--backend", "numba")
    assert status == 0 and out.split() == ["hi", "numba"]


def test_progress_only_on_a_terminal(monkeypatch):
    args = cli.build_parser().parse_args(["hltm"])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert cli._progress(args, 10, "x") is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = cli._progress(args, 10, "x")
    assert bar is not None
    bar.close()
    args.progress = False
    assert cli._progress(args, 10, "x") is None


def test_covariance_command_prints_what_the_runner_records(capsys):
    argv = ["covariance", "--depth", "3", "--hid", "3", "--steps", "20", "--snapshots", "2",
            "--n-samples", "32", "--n-views", "2", "--batch-size", "16", "--k", "3"]
    status, out, _ = run(capsys, *argv, "--json")
    objs = [json.loads(ln) for ln in out.strip().splitlines()]
    assert status == 0 and [o["step"] for o in objs] == [0, 10, 20]
    recs = E.covariance_experiment(E.CovarianceConfig(depth=3, hid=3, steps=20, snapshots=2,
                                                      n_samples=32, n_views=2, batch_size=16,
                                                      k=3))
    for o, r in zip(objs, recs):
        np.testing.assert_allclose(o["eigvals"], r["eigvals"], rtol=1e-6)
        np.testing.assert_allclose(o["cos"], r["cos"], atol=1e-6)
    with pytest.raises(SystemExit):
        cli.main(["covariance", "--layer", "9"])
    assert "--layer" in capsys.readouterr().err


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "minissl", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "hltm" in r.stdout and "sweep" in r.stdout
    r = subprocess.run([sys.executable, "-m", "minissl", "hltm", "--depth", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--depth" in r.stderr
