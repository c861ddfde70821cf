"""The one timing loop: arms interleaved call by call, warm-up untimed, every timed call recorded."""

from reskd_infer.bench.machine import ISA_FLAGS, machine_info
from reskd_infer.bench.timing import interleave, percentile, spread


def test_interleave_runs_arms_in_turn_and_times_only_the_timed_rounds():
    calls = []
    arms = {name: (lambda n=name: calls.append(n) or len(calls)) for name in ("a", "b", "c")}
    timed = interleave(arms, rounds=3, warmup=2)
    assert calls == ["a", "b", "c"] * 5  # round by round, one call of each arm per round
    for name in arms:
        assert len(timed.wall[name]) == len(timed.cpu[name]) == 3
        assert all(s >= 0 for s in timed.wall[name])
        assert timed.ms(name) == [1000.0 * s for s in timed.wall[name]]
    # What the timed calls returned, in order: warm-up calls (1-6) are not kept.
    assert timed.returned == {"a": [7, 10, 13], "b": [8, 11, 14], "c": [9, 12, 15]}


def test_spread_is_median_nearest_rank_p90_min_and_count():
    assert spread([]) is None
    assert spread([4.0, 1.0, 3.0, 2.0]) == {"median_ms": 2.5, "p90_ms": 4.0, "min_ms": 1.0, "runs": 4}
    ten = [float(v) for v in range(1, 11)]
    assert percentile(ten, 0.9) == 9.0 and percentile(ten, 0.5) == 5.0 and percentile([7.0], 0.9) == 7.0


def test_machine_info_names_the_cpu_its_isa_and_the_engines():
    info = machine_info(engine_threads=2)
    assert info["cpu"] and info["cpus"] >= 1 and info["torch_threads"] >= 1 and info["threads"] == 2
    assert set(info["isa"]) <= set(ISA_FLAGS)
    assert "torch" in info["versions"]
    assert "threads" not in machine_info()  # only recorded when the caller knows the engines' threads
