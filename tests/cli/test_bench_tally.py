"""`cmpp-gateway bench`'s figures: the latency histogram, the tally of several processes merged
into one, and how --processes shares out the totals."""

from __future__ import annotations

import random

from gateway.bench.histogram import EXACT, LARGEST, TABLE_SIZE, Histogram, bucket_of, bucket_range
from gateway.bench.options import shares
from gateway.bench.report import latency_ms, percentile, summary
from gateway.bench.tally import Second, Tally, match_across

QS = (0, 1, 25, 50, 90, 99, 99.9, 100)


def histogram_of(micros: list[int]) -> Histogram:
    histogram = Histogram()
    for value in micros:
        histogram.record(value / 1e6)
    return histogram


def top(micros: int) -> int:
    """The highest value of the bucket ``micros`` falls in: what a percentile there reports."""
    return bucket_range(bucket_of(micros))[1]


def exact(micros: list[int], q: float) -> int:
    """The nearest-rank-below percentile of the values themselves (report.percentile)."""
    return percentile(sorted(micros), q)


def test_buckets_are_contiguous_and_at_most_one_64th_wide():
    previous_high = -1
    for index in range(bucket_of(10**9) + 1):
        low, high = bucket_range(index)
        assert low == previous_high + 1 and bucket_of(low) == bucket_of(high) == index
        assert high - low <= max(0, low // 64)
        previous_high = high


def test_percentiles_of_a_known_distribution_are_exact_below_128_us_and_within_1_64th_above():
    small = list(range(0, EXACT))                         # every value its own bucket
    assert [histogram_of(small).percentile(q) for q in QS] == [exact(small, q) for q in QS]
    uniform = list(range(1, 100_001, 7))                  # 7 µs .. 100 ms, evenly spread
    rng = random.Random(15)
    skewed = [int(rng.lognormvariate(7, 1.2)) for _ in range(50_000)]   # a long tail
    for values in (uniform, skewed):
        histogram = histogram_of(values)
        assert histogram.count == len(values) and histogram.largest == max(values)
        for q in QS:
            true = exact(values, q)
            assert true <= histogram.percentile(q) <= true + true // 64, (q, true)
        assert histogram.percentile(100) == max(values)


def test_values_around_the_lookup_table_and_beyond_the_largest_land_in_their_buckets():
    values = [-5, 0, TABLE_SIZE - 1, TABLE_SIZE, TABLE_SIZE + 1, 10**9, LARGEST, LARGEST * 4]
    histogram = histogram_of(values)
    assert sorted(histogram.counts) == sorted(
        {bucket_of(max(0, v)) for v in values}) and histogram.count == len(values)
    assert histogram.counts[bucket_of(LARGEST)] == 2     # larger values count as the largest
    assert histogram.largest == LARGEST == histogram.percentile(100)
    assert Histogram.from_json(histogram.to_json()).largest == LARGEST


def test_an_empty_histogram_and_latency_ms():
    assert Histogram().percentile(50) == 0 and Histogram().count == 0
    histogram = histogram_of([1_000] * 9 + [250_000])    # nine at 1 ms, one at 250 ms
    assert top(1_000) == 1_007                            # 1 ms is in [992, 1007] µs
    assert latency_ms(histogram) == {"p50": 1.007, "p90": 250.0, "p99": 250.0, "max": 250.0}
    assert latency_ms(histogram, (50,), with_max=False) == {"p50": 1.007}


def test_merged_histograms_give_the_percentiles_of_all_the_values_together():
    fast, slow = [1_000] * 1_000, [100_000] * 1_000       # one process at 1 ms, one at 100 ms
    merged = Histogram.merged([histogram_of(fast), histogram_of(slow)])
    assert merged.counts == histogram_of(fast + slow).counts
    assert (merged.percentile(25), merged.percentile(50), merged.percentile(99)) == \
        (top(1_000), 100_000, 100_000)  # not the mean of the two processes' p50s (50.5 ms)
    again = Histogram.from_json(merged.to_json())
    assert again.counts == merged.counts and again.largest == merged.largest == 100_000


def test_shares_split_connections_count_and_tps_into_exact_totals():
    parts = shares(8, 100.0, 1001, 3)
    assert [p.connections for p in parts] == [3, 3, 2]
    assert [p.count for p in parts] == [334, 334, 333]
    assert [p.tps for p in parts] == [37.5, 37.5, 25.0]
    assert [p.index for p in parts] == [0, 1, 2]
    assert [p.count for p in shares(4, 0.0, None, 2)] == [None, None]
    assert [p.tps for p in shares(4, 0.0, None, 2)] == [0.0, 0.0]


def worker_tally(start: float, acknowledged: int, latency_us: int, level: int) -> Tally:
    assert top(latency_us) == latency_us                 # reported exactly
    tally = Tally(start=start, end=start + 2.0, messages_started=acknowledged,
                  messages_acknowledged=acknowledged, segments_started=acknowledged,
                  segments_acknowledged=acknowledged, reports_expected=acknowledged,
                  reports=acknowledged, cpu_seconds=0.5)
    tally.results_ok = acknowledged
    tally.latency_by_level[level] = histogram_of([latency_us] * acknowledged)
    tally.report_latency = histogram_of([20_000] * acknowledged)
    tally.seconds = [Second(acknowledged // 2), Second(acknowledged - acknowledged // 2)]
    return tally


def test_tallies_of_two_processes_merge_into_one_summary():
    one, two = worker_tally(10.0, 300, 1_023, 0), worker_tally(10.01, 100, 50_175, 9)
    one.results[8], one.failures["Result 8 beyond the resend cap"] = 4, 1
    merged = Tally.from_json(one.to_json()).merge(Tally.from_json(two.to_json()))
    assert (merged.start, merged.end) == (10.0, 12.01)
    assert merged.segments_acknowledged == merged.messages_acknowledged == 400
    assert merged.result_counts() == {0: 400, 8: 4} and merged.failures == {
        "Result 8 beyond the resend cap": 1}
    assert [s.acknowledged for s in merged.seconds] == [200, 200]
    assert merged.cpu_seconds == 1.0
    s = summary(merged, merged.end, {})
    assert s["submit_latency_ms"] == {"responses": 400, "p50": 1.023, "p90": 50.175,
                                      "p99": 50.175, "max": 50.175}
    assert s["submit_latency_ms_by_msg_level"] == [
        {"msg_level": 0, "responses": 300, "p50": 1.023, "p90": 1.023, "p99": 1.023,
         "max": 1.023},
        {"msg_level": 9, "responses": 100, "p50": 50.175, "p90": 50.175, "p99": 50.175,
         "max": 50.175}]
    assert s["tool_cpu"] == {"seconds": 1.0, "cores": round(1.0 / 2.01, 3),
                             "us_per_submit": round(1.0 / 400 * 1e6, 2)}  # per SUBMIT_RESP timed


def test_a_msg_level_of_both_processes_merges_into_one_histogram():
    one, two = worker_tally(10.0, 300, 1_023, 0), worker_tally(10.0, 100, 50_175, 0)
    merged = Tally.from_json(one.to_json()).merge(Tally.from_json(two.to_json()))
    [level] = summary(merged, merged.end, {})["submit_latency_ms_by_msg_level"]
    assert level == {"msg_level": 0, "responses": 400, "p50": 1.023, "p90": 50.175,
                     "p99": 50.175, "max": 50.175}


def test_reports_that_reached_another_process_are_matched_at_the_end():
    tally = Tally(reports_expected=3, reports=3, reports_unmatched=2)
    awaiting = {101: 5.0, 102: 5.0}          # SUBMITs of one process, their reports not seen
    early = {101: 5.25, 999: 6.0}            # reports another process saw, with no SUBMIT there
    match_across(tally, awaiting, early)
    assert tally.reports_unmatched == 1      # 999 matches nothing anywhere
    assert tally.report_latency.count == 1 and tally.report_latency.largest == 250_000
    assert summary(tally, 1.0, {})["reports"]["outstanding"] == 1      # 102's report
