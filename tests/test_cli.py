"""The command line: hltm (table and JSON), sweep (table, CSV, parallel), flag errors,
the subcommand registry, presets, and the module entry point."""
import argparse
import csv
import json
import re
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


def test_progress_bar_on_a_terminal_lines_elsewhere(monkeypatch, capsys):
    """A tqdm bar where stderr is a terminal; else one line per unit of work on stderr and, within
    a unit, a note at most every ``every`` seconds; ``--no-progress``: nothing."""
    args = cli.build_parser().parse_args(["hltm"])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with cli.Progress(args, 3, "runs", "x", every=3600) as bar:
        assert bar.bar is None
        bar.update()
        bar.note("step 5")                            # within 3600 s of the last line: quiet
        bar.update(0)
        bar.update()
    err = capsys.readouterr().err.splitlines()
    assert [ln.rsplit(",", 1)[0] for ln in err] == ["# x: 1/3 runs", "# x: 2/3 runs"]
    with cli.Progress(args, 3, "runs", "x", every=0) as bar:
        bar.note("step 5")
    assert capsys.readouterr().err.startswith("# x: 0/3 runs; step 5, ")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with cli.Progress(args, 10, "runs", "x") as bar:
        assert bar.bar is not None                    # tqdm (the 'parallel' extra)
    args.progress = False
    with cli.Progress(args, 10, "runs", "x") as bar:
        bar.update()
        assert bar.bar is None
    capsys.readouterr()
    assert capsys.readouterr().err == ""


def test_long_commands_report_progress_and_their_header_first(capsys):
    """supervision printed nothing for minutes and ``decoupling --table`` nothing until its
    end: the header comes first, then a progress line per run on stderr."""
    status = cli.main(["supervision", "--depth", "2", "--hid", "2", "--epochs", "1",
                       "--samples-per-epoch", "128", "--batch-size", "64", "--eval-samples",
                       "200", "--seeds", "2", "--pairings", "given", "in_batch"])
    out, err = capsys.readouterr()
    assert status == 0 and out.startswith("# supervision: depth 2") and "seeds 1..2" in out
    assert [ln.split(",")[0] for ln in err.splitlines()] == [
        f"# supervision: {i}/4 runs" for i in range(1, 5)]
    table = [ln.split() for ln in out.splitlines() if ln.split()[:1] in (["untrained"],
                                                                       ["ceiling"])]
    assert [r[2] for r in table] == ["2", "2"]        # the seeds, not the runs (4)
    status = cli.main(["decoupling", "--table", "--only", "none", "relu none", "--seeds", "2",
                       "--steps", "3", "--batch-size", "16", "--d1", "40", "--dense-rank", "8",
                       "--width", "8"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("# decoupling table: 2 settings x seeds [0, 1]")
    assert lines[1].startswith("# setting | ρ_sp | ρ_dn | alignment")
    assert [ln.split(",")[0] for ln in err.splitlines()] == [
        f"# decoupling --table: {i}/4 runs" for i in range(1, 5)]


def test_selectivity_fits_its_snapshots_to_a_short_run(capsys):
    """``selectivity --steps 10`` failed naming --snapshots (default 30), a flag not given:
    a default that does not fit --steps is fitted, and the header says so."""
    status = cli.main(["selectivity", "--depth", "2", "--hid", "3", "--steps", "10",
                       "--eval-samples", "200", "--k", "2", "--n-samples", "16", "--n-views", "2"])
    out, err = capsys.readouterr()
    assert status == 0 and "10 steps, 10 snapshots" in out.splitlines()[0]
    assert err.splitlines()[-1].startswith("# selectivity: 1/1 seeds")
    with pytest.raises(SystemExit):
        cli.main(["selectivity", "--steps", "10", "--snapshots", "30"])
    assert "--snapshots: snapshots must be an integer in [1, 10], got 30" in \
        capsys.readouterr().err


def test_byol_figures_help_and_default_folder(capsys, monkeypatch, tmp_path):
    """byol-figures had no help text and wrote to docs/img relative to the current folder."""
    with pytest.raises(SystemExit):
        cli.main(["byol-figures", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--outdir OUTDIR" in out and "whatever the current folder" in out and "Time:" in out
    assert "seed of the toy data" in out
    monkeypatch.chdir(tmp_path)
    called = []
    monkeypatch.setattr(E, "byol_doc_figures", lambda outdir, seed, progress: called.append(
        (outdir, seed)))
    assert cli.main(["byol-figures", "--seed", "3"]) == 0
    assert called == [(cli._docs_img(), 3)] and cli._docs_img().endswith("docs/img")
    assert not (tmp_path / "docs").exists()


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_help_states_the_expected_time(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"Time[^.]*~[\d.-]+ (s|min)", out), out[:600]


def test_covariance_command_prints_what_the_runner_records(capsys):
    argv = ["covariance", "--depth", "3", "--hid", "3", "--steps", "20", "--snapshots", "2",
            "--n-samples", "32", "--n-views", "2", "--batch-size", "16", "--k", "3"]
    status, out, _ = run(capsys, *argv, "--json")
    objs = [json.loads(ln) for ln in out.strip().splitlines()]
    assert status == 0 and [o["step"] for o in objs] == [0, 10, 20]
    recs = E.covariance_experiment(E.with_settings(
        E.CovarianceConfig(), depth=3, hid=3, steps=20, snapshots=2, n_samples=32, n_views=2,
        batch_size=16, k=3))
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


def test_flags_are_the_configs_settings(capsys):
    """A command's flags are its config's settings (``backend.setting`` metadata): a nested
    run's settings are plain flags, the help and default are the field's, choices are
    enforced, and no flag given leaves the config's own default (BYOL's too)."""
    parser = cli.build_parser()
    cfg = cli._config(E.CovarianceConfig, parser.parse_args(["covariance", "--depth", "3",
                                                             "--k", "4"]))
    assert (cfg.run.depth, cfg.k) == (3, 4) and cfg.run.steps == E.CovarianceConfig().run.steps
    with pytest.raises(SystemExit):
        parser.parse_args(["covariance", "--help"])
    out = capsys.readouterr().out
    assert "--n-views N_VIEWS     augmented views averaged in Kbar (default 4)" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["selectivity", "--update", "adam"])
    assert "--update: invalid choice" in capsys.readouterr().err
    args = parser.parse_args(["byol"])
    assert all(getattr(args, name) is None for name in cli._BYOL_FIELDS)
    with pytest.raises(SystemExit):
        parser.parse_args(["byol", "--help"])
    assert "(default 0.5)" in capsys.readouterr().out         # BYOLConfig.lr


# ----------------------------------------------------------------------------- every flag counts
# The result of a command is what it hands its runners (mocked: nothing runs). Every flag a
# subcommand accepts must change that, or be refused (exit 2, naming the flag, or the cost past
# the limits); the flags below change only how or where the result is shown or computed, and
# have tests of their own. (A flag whose value reaches the runner but is unused there passes
# this test: the seed flags are also checked on real runs below.)
EXECUTION_FLAGS = {"--json": "output format", "--progress": "progress display",
                   "--threads": "BLAS threads", "--n-jobs": "processes", "--jobs": "processes",
                   "--dask": "where the runs execute", "--csv": "writes a file",
                   "--figure": "writes a file"}
RUNNERS = ("hltm_experiment", "run_sweep", "covariance_experiment", "run_ablation",
           "byol_doc_figures", "run_selectivity_seeds", "selectivity_experiment",
           "acceleration_experiment", "decoupling_experiment", "decoupling_table",
           "run_supervision", "realdata_run", "realdata_table")
CONTEXTS = {"hltm": [[], ["--probe"]], "byol": [[], ["--data", "hltm"]],
            "selectivity": [[], ["--seeds", "2"]], "decoupling": [[], ["--table"]],
            "supervision": [[], ["--pairings", "given"]]}
VALUES = {"--polarity": [["0.2", "0.6"], ["0.2:0.6"]], "--preset": [["reference"]],
          "--loss": [["simple"], ["ref_nce"], ["preset", "simple"]], "--hid": [["3"], ["3", "6"]],
          "--label-latents": [["1"], ["0", "1"]], "--pairings": [["given"]],
          "--emas": [["0.5"]], "--hidden": [["8"]], "--predictors": [["linear"], ["mlp"]],
          "--bn-means": [["omit"]], "--only": [["relu complementary"]], "--layer": [["0"]],
          "--keep-depth": [["2"]], "--label-latent": [["1"]], "--negatives": [["2"]],
          "--sampler": [["compiled"]], "--backend": [["numba"], ["numpy"]],
          "--outdir": [["{tmp}"]],
          "--measured": [["1000"]], "--samples-per-epoch": [["1280"]], "--seeds": [["1"], ["2"]],
          "--probe": [[], ["all"]], "--snapshots": [["5"]], "--seed": [["7"]],
          "--batch-size": [["32"]], "--steps": [["60"]], "--k": [["3"], ["2"]]}


class Captured(Exception):
    """A runner was called: what the command would have run."""


def _canonical(v):
    if callable(v) and not isinstance(v, type) and not hasattr(v, "__dataclass_fields__"):
        return "<callable>"
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if isinstance(v, dict):
        return {k: _canonical(x) for k, x in v.items()}
    return re.sub(r" at 0x[0-9a-f]+", "", repr(v))


def _flag_values(action):
    flag = action.option_strings[0]
    if flag in VALUES:                                   # as many values as it takes
        n = {None: 1, "?": 1, "+": None}.get(action.nargs, action.nargs)
        return [v for v in VALUES[flag] if n is None or len(v) == n or (
            action.nargs == "?" and not v)]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [[]]                                      # --x and --no-x, below
    if action.nargs == 0:
        return [[]]
    if action.choices:
        return [[c] for c in action.choices]
    return {int: [["2"], ["3"]], float: [["0.3"], ["0.05"]]}.get(action.type, [["2"]])


RETURNS = {"selectivity_experiment": (None, {})}    # called once per seed: let it go on


def _result(argv, monkeypatch, capsys):
    """``("ran", runner calls)`` or ``("refused", stderr)``."""
    calls = []

    def capture(name):
        def runner(*args, **kwargs):
            calls.append((name, _canonical(args), _canonical(kwargs)))
            if name in RETURNS:
                return RETURNS[name]
            raise Captured
        return runner
    for name in RUNNERS:
        monkeypatch.setattr(E, name, capture(name))
    try:
        cli.main(argv)
    except SystemExit as e:
        assert e.code == 2 and not calls, (argv, e.code)
        return "refused", capsys.readouterr().err
    except Exception:                                # Captured, or fake results used
        if not calls:
            raise
    capsys.readouterr()
    assert calls, f"{argv} returned without running"
    return "ran", calls


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_flag_changes_the_run_or_is_refused(command, monkeypatch, capsys, tmp_path):
    sub = next(a for a in cli.build_parser()._actions
               if isinstance(a, argparse._SubParsersAction)).choices[command]
    ignored = []
    for context in CONTEXTS.get(command, [[]]):
        base = _result([command, *context], monkeypatch, capsys)
        assert base[0] == "ran", (context, base)
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flag = action.option_strings[0]
            if flag in EXECUTION_FLAGS or flag in context:
                continue
            tries = [[flag, *(v.replace("{tmp}", str(tmp_path)) for v in vals)]
                     for vals in _flag_values(action)]
            if isinstance(action, argparse.BooleanOptionalAction):
                tries = [[flag], ["--no-" + flag[2:]]]
            outcomes = [_result([command, *context, *t], monkeypatch, capsys) for t in tries]
            kinds = []
            for kind, out in outcomes:
                line = out.strip().splitlines()[-1] if kind == "refused" else ""
                named = flag in line or ("needs ~" in line and "the limit is" in line)
                kinds.append(("changed" if out != base[1] else "same") if kind == "ran" else
                             ("refused: " if named else "refused, not naming it: ")
                             + line[:150])
            if all(k == "same" for k in kinds) or any("not naming" in k for k in kinds):
                ignored.append(f"{' '.join([command, *context])} {flag}: {kinds}")
    assert not ignored, "\n".join(ignored)


SEED_RUNS = {   # tiny real runs: the seed flags must change what is printed
    "hltm": ["hltm", *SMALL, "--json"],
    "sweep": ["sweep", "--depth", "2", "--hid", "2", "--epochs", "1", "--samples-per-epoch",
              "128", "--batch-size", "64", "--eval-samples", "200", "--seeds", "1",
              "--no-progress"],
    "covariance": ["covariance", "--depth", "3", "--hid", "3", "--steps", "20", "--snapshots",
                   "1", "--n-samples", "16", "--n-views", "2", "--batch-size", "16", "--k", "2",
                   "--json"],
    "byol": ["byol", "--steps", "3", "--predictors", "linear", "--bn-means", "normal",
             "--emas", "0", "--eval-size", "16", "--batch-size", "8", "--json"],
    "selectivity": ["selectivity", "--depth", "2", "--hid", "3", "--steps", "10", "--eval-samples",
                    "200", "--k", "2", "--n-samples", "16", "--n-views", "2", "--json"],
    "selectivity --seeds": ["selectivity", "--depth", "2", "--hid", "3", "--steps", "10",
                            "--eval-samples", "200", "--k", "2", "--n-samples", "16",
                            "--n-views", "2", "--seeds", "1", "--json"],
    "acceleration": ["acceleration", "--steps", "10", "--eval-samples", "200", "--json"],
    "decoupling": ["decoupling", "--steps", "3", "--log-every", "3", "--batch-size", "16",
                   "--d1", "40", "--dense-rank", "8", "--width", "8", "--json"],
    "decoupling --table": ["decoupling", "--table", "--only", "none", "--seeds", "1", "--steps",
                           "3", "--batch-size", "16", "--d1", "40", "--dense-rank", "8",
                           "--width", "8", "--json"],
    "supervision": ["supervision", "--depth", "2", "--hid", "2", "--epochs", "1",
                    "--samples-per-epoch", "128", "--batch-size", "64", "--eval-samples", "200",
                    "--seeds", "1", "--pairings", "given", "--no-progress"],
}


def _printed(capsys, argv):
    """What a run prints, less its timings and comment lines."""
    assert cli.main(argv) == 0
    out = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{"):
            out.append({k: v for k, v in json.loads(line).items() if k != "seconds"})
        elif not line.startswith("#"):
            out.append(line)
    assert out, argv
    return out


@pytest.mark.parametrize("name", list(SEED_RUNS))
def test_the_seed_flags_change_the_result(name, capsys):
    """``--seed`` changes every command's numbers (``sweep --seed 7`` once printed exactly
    what ``--seed 1`` printed); ``byol-figures --seed`` reaches its runner (the flag test)."""
    argv = SEED_RUNS[name]
    assert _printed(capsys, argv + ["--seed", "7"]) != _printed(capsys, argv + ["--seed", "1"])
