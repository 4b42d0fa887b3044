"""The benchmark runner's own settings (the benchmarks themselves take minutes: `python -m ganlib bench`)."""

from ganlib import bench


def test_benchmarks_run_with_omp_num_threads_when_it_is_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert bench.threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert bench.threads() == 3
    for unusable in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert bench.threads() == bench.THREADS
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert bench.threads() == bench.THREADS == 2
