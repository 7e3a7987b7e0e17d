"""minissl.budget: environment parsing, the checks' messages, and the estimators against
hand-computed values and NumPy's own byte counts."""
import tracemalloc

import numpy as np
import pytest

from minissl.budget import (DEFAULT, PUBLIC_APP, GiB, Limits, MiB, ResourceLimitError,
                            array_bytes, check_memory, check_work, current_limits, format_bytes,
                            mlp_activation_bytes, mlp_step_work, mlp_weights, parse_bytes,
                            seconds_estimate)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("MINISSL_MAX_MEMORY", raising=False)
    monkeypatch.delenv("MINISSL_MAX_WORK", raising=False)


def test_defaults_and_presets():
    assert current_limits() == DEFAULT == Limits(2 * GiB, 1e13)
    assert PUBLIC_APP.max_memory == 512 * MiB
    assert seconds_estimate(PUBLIC_APP.max_work) == pytest.approx(120)
    assert PUBLIC_APP.max_memory < DEFAULT.max_memory and PUBLIC_APP.max_work < DEFAULT.max_work
    with pytest.raises(AttributeError):
        DEFAULT.max_memory = 1          # frozen


@pytest.mark.parametrize("text, expected", [
    ("2147483648", 2 * GiB), ("2G", 2 * GiB), ("2GB", 2 * GiB), ("512M", 512 * MiB),
    ("512mib", 512 * MiB), ("1.5GiB", 3 * GiB // 2), ("1e9", 10 ** 9), (" 64 K ", 64 * 1024),
    ("100B", 100), ("1T", 1 << 40)])
def test_memory_from_env(monkeypatch, text, expected):
    monkeypatch.setenv("MINISSL_MAX_MEMORY", text)
    assert current_limits() == Limits(expected, DEFAULT.max_work)
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1", "0", "2X", "512iB", "1.2.3", "inf", "nan"])
def test_bad_memory_env_is_named_with_an_example(monkeypatch, text):
    monkeypatch.setenv("MINISSL_MAX_MEMORY", text)
    with pytest.raises(ValueError, match=r"MINISSL_MAX_MEMORY=.*e\.g\. MINISSL_MAX_MEMORY=2G"):
        current_limits()


def test_work_from_env(monkeypatch):
    monkeypatch.setenv("MINISSL_MAX_WORK", "1e11")
    monkeypatch.setenv("MINISSL_MAX_MEMORY", "")          # empty: unset
    assert current_limits() == Limits(DEFAULT.max_memory, 1e11)


@pytest.mark.parametrize("text", ["fast", "0", "-5", "inf", "nan", "1e13s"])
def test_bad_work_env_is_named_with_an_example(monkeypatch, text):
    monkeypatch.setenv("MINISSL_MAX_WORK", text)
    with pytest.raises(ValueError, match=r"MINISSL_MAX_WORK=.*e\.g\. MINISSL_MAX_WORK=1e13"):
        current_limits()


def test_override_wins_over_env(monkeypatch):
    monkeypatch.setenv("MINISSL_MAX_MEMORY", "junk")
    assert current_limits(PUBLIC_APP) is PUBLIC_APP
    with pytest.raises(TypeError, match="Limits or None"):
        current_limits({"max_memory": 1})


@pytest.mark.parametrize("kwargs", [dict(max_memory=0, max_work=1.0),
                                    dict(max_memory=1.5, max_work=1.0),
                                    dict(max_memory=True, max_work=1.0),
                                    dict(max_memory=1, max_work=0),
                                    dict(max_memory=1, max_work=float("inf"))])
def test_limits_validate(kwargs):
    with pytest.raises(ValueError):
        Limits(**kwargs)


def test_check_memory_message_names_parameter_estimate_and_limit():
    nbytes = int(8.3 * GiB)
    with pytest.raises(ResourceLimitError) as e:
        check_memory(nbytes, "the evaluation pass", "hid=1000")
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert msg.startswith("hid=1000 needs ~8.3 GiB for the evaluation pass")
    assert "the limit is 2.0 GiB" in msg
    assert "MINISSL_MAX_MEMORY=9G" in msg and "limits=Limits(" in msg
    check_memory(2 * GiB, "the evaluation pass", "hid=1000")            # at the limit: fine
    with pytest.raises(ResourceLimitError, match="the limit is 1.0 KiB"):
        check_memory(2048, "x", "n=1", Limits(1024, 1.0))


def test_limits_none_reads_the_environment(monkeypatch):
    monkeypatch.setenv("MINISSL_MAX_MEMORY", "1K")
    with pytest.raises(ResourceLimitError, match="the limit is 1.0 KiB"):
        check_memory(2048, "x", "n=1", limits=None)


def test_check_work_message_names_parameter_estimate_limit_and_seconds():
    with pytest.raises(ResourceLimitError) as e:
        check_work(3.14e13, "training", "steps=1000")
    msg = str(e.value)
    assert msg.startswith("steps=1000 needs ~3.14e+13 multiply-adds (~6,280 s) for training")
    assert "the limit is 1e+13 (~2,000 s)" in msg
    assert "MINISSL_MAX_WORK=3.2e+13" in msg and "limits=Limits(" in msg
    check_work(1e13, "training", "steps=1000")
    with pytest.raises(ResourceLimitError, match=r"~0\.1 s.*the limit is 1e\+08 \(~0\.02 s\)"):
        check_work(5e8, "training", "steps=1", Limits(1, 1e8))


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                     (1536, "1.5 KiB"), (512 * MiB, "512.0 MiB"),
                                     (80_000_000_000, "74.5 GiB"), (1 << 60, "1.0 EiB")])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("shape", [(), (0,), (3,), (4, 5), (2, 0, 7), (3, 1, 2, 5)])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int8", "bool", "complex128"])
def test_array_bytes_matches_numpy(shape, dtype):
    assert array_bytes(shape, dtype) == np.empty(shape, dtype).nbytes
    assert array_bytes(np.int64(7), dtype) == np.empty(7, dtype).nbytes


def test_array_bytes_is_exact_for_huge_shapes_without_allocating():
    tracemalloc.start()
    try:
        n = array_bytes((10 ** 9, 10 ** 9), "float64")
        big = array_bytes((10 ** 12,) * 3, np.float32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert type(n) is int and n == 8 * 10 ** 18
    assert big == 4 * 10 ** 36
    assert peak < 1 << 20
    with pytest.raises(ValueError, match="negative"):
        array_bytes((3, -1), "float64")
    with pytest.raises(TypeError):
        array_bytes((2.5,), "float64")


def test_mlp_estimators_by_hand():
    sizes = [3, 4, 2]                                   # W_1: 4x3 = 12, W_2: 2x4 = 8
    assert mlp_weights(sizes) == 20
    assert mlp_weights(sizes, masks=[None, np.ones((2, 4))]) == 28     # + the dense mask
    assert mlp_weights(sizes, masks=[np.ones((4, 3)), np.ones((2, 4))]) == 40
    assert mlp_activation_bytes(sizes, 5, "float32") == 2 * 5 * (3 + 4 + 2) * 4
    assert mlp_step_work(sizes, 5) == 3 * 20 * 5
    assert mlp_step_work(sizes, 5, live_weights=10) == 3 * 10 * 5
    huge = [10 ** 6] * 3
    assert mlp_weights(huge) == 2 * 10 ** 12
    assert mlp_step_work(huge, 10 ** 6) == 6 * 10 ** 18
