"""Tests of bench/report.py (scripts/bench.sh's report), on a small synthetic run.

    python3 -m unittest discover -s bench -p 'test_*.py'      (scripts/test.sh runs it)

testdata/report-expected.md is the report of that run as the report code printed it inside
bench.sh's heredoc before it moved here: the format docs/PERFORMANCE.md quotes.
"""

import json
import os
import tempfile
import unittest

import report

HERE = os.path.dirname(os.path.abspath(__file__))
RECORD_SIZE = 1024


def lmq_perf_out(rate, mb, verified=True, consume=False):
    if consume:
        return {"consume_records_per_s": rate, "consume_mb_per_s": mb, "expected": 1000,
                "consumed": 1000 if verified else 990, "consume_bytes": 1000 * RECORD_SIZE,
                "verified": verified}
    histogram = {"count": 100, "p50": 1500, "p99": 4000, "p999": 9000}
    return {"produce_records_per_s": rate, "produce_mb_per_s": mb, "sent": 1000, "acked": 1000,
            "stored": 1000, "consumed": 1000, "produce_bytes": 1000 * RECORD_SIZE,
            "consume_bytes": 1000 * RECORD_SIZE, "e2e_latency_us": histogram,
            "produce_latency_us": histogram, "behind_schedule_ms_max": 3, "verified": verified}


class Run:
    """A run directory as bench.sh leaves it: measurements.jsonl, tool outputs, RSS samples."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(f"{directory}/out")
        self.rows = []

    def out(self, tag, text):
        path = f"{self.dir}/out/{tag}.out"
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def measure(self, tag, text, **fields):
        row = {"status": 0, "client_util": 0.5, "broker_cpu_s": 2.0}
        row.update(fields)
        row["out"] = self.out(tag, text)
        self.rows.append(row)

    def write(self):
        with open(f"{self.dir}/measurements.jsonl", "w", encoding="utf-8") as handle:
            for row in self.rows:
                handle.write(json.dumps(row) + "\n")
        for broker, anon in (("kafka", 512000), ("lmq", 20480)):
            with open(f"{self.dir}/rss-{broker}.txt", "w", encoding="utf-8") as handle:
                for step in range(3):
                    handle.write(f"VmRSS: {anon + 4096 * step} RssAnon: {anon + 1024 * step} "
                                 f"RssFile: {8192 + step} RssShmem: 0 \n")


def synthetic_run(directory):
    """Both brokers, every tool, durability a and b, two consume passes, start-ups."""
    run = Run(directory)
    run.rows.append({"kind": "meta", "mode": "quick", "started": "2026-12-07T10:00:00Z",
                     "command": "scripts/bench.sh --quick", "kafka_version": "4.4.0", "cpus": 2,
                     "broker_cpus": 0, "client_cpus": 1, "seconds": 10, "record_size": 1024,
                     "load_before": "0.10 0.20 0.30", "kernel": "6.1.0", "cpu_model": "Test CPU",
                     "lmq_commit": "abc1234"})
    run.rows.append({"kind": "ceilings", "loopback_mb_per_s": 4000.0, "loopback_tool": "iperf3",
                     "disk_fdatasync_mb_per_s": 900.0, "disk_buffered_mb_per_s": 1500.0,
                     "disk_dsync_16k_mb_per_s": 80.0})
    speed = {"kafka": 1.0, "lmq": 1.5}
    for broker in ("kafka", "lmq"):
        s = speed[broker]
        for dur in ("a", "b"):
            common = {"broker": broker, "durability": dur, "partitions": 8}
            base = f"{broker}-{dur}"
            run.measure(f"{base}-lmqperf-max", json.dumps(lmq_perf_out(100000 * s, 102.4 * s)),
                        kind="produce", tool="lmq-perf", linger_ms=5, codec="none", **common)
            sent = 50000
            run.measure(f"{base}-pp",
                        f"{sent} records sent, {60000 * s:.1f} records/sec (58.59 MB/sec), "
                        "3.0 ms avg latency, 90.0 ms max latency, 2 ms 50th, 5 ms 95th, "
                        "9 ms 99th, 20 ms 99.9th.\n",
                        kind="produce", tool="ProducerPerformance", linger_ms=5, codec="none",
                        expected=sent, stored={"log_end_total": sent}, **common)
            run.measure(f"{base}-rdkafka",
                        json.dumps({"produce_records_per_s": 80000 * s,
                                    "produce_mb_per_s": 81.92 * s, "delivered": sent}),
                        kind="produce", tool="rdkafka-perf", linger_ms=5, codec="none",
                        expected=sent,
                        stored={"log_end_total": sent if broker == "kafka" else sent - 1},
                        **common)
            if dur == "a":
                for pass_ in (1, 2):
                    run.measure(f"{base}-cp-{pass_}",
                                "start.time, end.time, data.consumed.in.MB, MB.sec, "
                                "data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, "
                                "fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n"
                                f"2026-12-07 10:00:00:000, 2026-12-07 10:00:01:000, 48.8, 48.8, "
                                f"{sent}, {sent}, 3000, 1000, 48.8, {90000 * s * pass_:.1f}\n",
                                kind="consume", tool="ConsumerPerformance", **{"pass": pass_},
                                expected=sent, **common)
                    run.measure(f"{base}-lmqperf-consume-{pass_}",
                                json.dumps(lmq_perf_out(120000 * s / pass_, 122.9 * s / pass_,
                                                        consume=True)),
                                kind="consume", tool="lmq-perf", expected=sent, **common)
                for pct in (25, 50):
                    run.measure(f"{base}-lmqperf-r{pct}",
                                json.dumps(lmq_perf_out(1000 * pct * (0.9 if broker == "lmq" and pct == 50 else 1), 1.0)),
                                kind="latency", tool="lmq-perf", linger_ms=5, codec="none",
                                load_pct=pct, target_rate=1000 * pct,
                                client_util=0.95 if pct == 25 else 0.5, **common)
        for data, ms in (("empty", 900 / s), ("1 GiB", 2000 / s)):
            run.rows.append({"kind": "startup", "broker": broker, "data": data,
                             "log_bytes": 0 if data == "empty" else 2**30, "ms": ms})
        run.rows.append({"kind": "fill", "broker": broker, "expected": 1048576,
                         "stored": {"log_end_total": 1048576}})
    run.rows.append({"kind": "end", "finished": "2026-12-07T10:08:00Z",
                     "load_after": "1.00 0.80 0.50"})
    run.write()


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.run_dir = os.path.join(self.tmp.name, "run")
        synthetic_run(self.run_dir)
        self.md, self.document, self.final = report.build(self.run_dir, RECORD_SIZE)

    def tearDown(self):
        self.tmp.cleanup()

    def test_the_markdown_is_the_format_of_the_bench_sh_heredoc(self):
        with open(os.path.join(HERE, "testdata", "report-expected.md"), encoding="utf-8") as f:
            self.assertEqual(self.md, f.read())

    def test_the_final_line_is_the_geometric_mean_of_durability_a_ratios(self):
        # Every (a) throughput ratio of the fixture is 1.5 (consume: the better pass of each).
        self.assertEqual(self.final, "produce 1.50 consume 1.50 p99 1.00 rss 0.04 start 0.67")
        self.assertEqual(self.document["final_line"], self.final)

    def test_main_writes_md_and_json_and_prints_the_final_line_last(self):
        dest = os.path.join(self.tmp.name, "quick")
        printed = os.path.join(self.tmp.name, "printed.txt")
        with open(printed, "w", encoding="utf-8") as out:
            import contextlib
            with contextlib.redirect_stdout(out):
                self.assertEqual(report.main(["report.py", self.run_dir, dest, str(RECORD_SIZE)]), 0)
        with open(f"{dest}.md", encoding="utf-8") as f:
            self.assertEqual(f.read(), self.md)
        with open(f"{dest}.json", encoding="utf-8") as f:
            self.assertEqual(json.load(f)["summary"]["produce"], 1.5)
        with open(printed, encoding="utf-8") as f:
            self.assertEqual(f.read().splitlines()[-1], self.final)

    def test_a_wrong_stored_count_is_flagged_in_the_notes(self):
        row = next(r for r in self.document["rows"]
                   if r["tool"] == "rdkafka-perf" and r["durability"] == "a")
        self.assertIn("LMQ: COUNTS DIFFER", row["notes"])

    def test_client_bound_and_short_rate_runs_are_flagged(self):
        notes = [r["notes"] for r in self.document["rows"] if "at 25%" in r["measure"]]
        self.assertTrue(all("client-bound on Kafka (95% CPU)" in n for n in notes), notes)
        notes = [r["notes"] for r in self.document["rows"] if "at 50%" in r["measure"]]
        self.assertTrue(all("LMQ fell short of the rate (45,000/s)" in n for n in notes), notes)

    def test_repeated_consume_passes_keep_the_fastest_verified_one(self):
        row = next(r for r in self.document["rows"]
                   if r["tool"] == "ConsumerPerformance" and r["durability"] == "a")
        self.assertAlmostEqual(row["kafka"], 180000 * RECORD_SIZE / 1e6)


class CleanerTest(unittest.TestCase):
    """The log cleaner rows, alone (a --cleaner-only run) and after the comparison."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.run = Run(os.path.join(self.tmp.name, "run"))
        self.run.rows.append({"kind": "meta", "mode": "quick", "started": "2026-12-08T02:00:00Z",
                              "command": "scripts/bench.sh --quick --cleaner-only",
                              "kafka_version": "none", "cpus": 2, "broker_cpus": 0,
                              "client_cpus": 1, "seconds": 10, "record_size": 1024,
                              "load_before": "0.10 0.20 0.30", "kernel": "6.1.0",
                              "cpu_model": "Test CPU", "lmq_commit": "abc1234"})
        self.run.rows.append({"kind": "ceilings", "loopback_mb_per_s": 4000.0,
                              "loopback_tool": "iperf3", "disk_fdatasync_mb_per_s": 900.0,
                              "disk_buffered_mb_per_s": 1500.0, "disk_dsync_16k_mb_per_s": 80.0})
        self.run.measure("lmq-cleaner-throughput", "human line\n" + json.dumps({
            "log_bytes": 104_900_000, "records": 100_000, "keys": 10000, "seconds": 0.4,
            "bytes_read": 210_000_000, "bytes_written": 10_500_000, "records_kept": 10000,
            "mb_per_s": 262.3, "more_passes": False, "peak_rss_mb_before": 2.5,
            "peak_rss_mb_after": 131.0, "offset_map_mb": 134.2}), kind="cleaner_throughput",
            megabytes=100)
        for round_ in (1, 2):
            for mode, p99 in (("off", 4000 * round_), ("on", 5000 * round_)):
                out = lmq_perf_out(10000, 10.2)
                out["produce_latency_us"] = {"count": 80000, "p50": 900, "p99": p99, "p999": 9000}
                self.run.measure(f"lmq-cleaner-{mode}-{round_}", json.dumps(out),
                                 kind="cleaner_latency", cleaner=mode, round=round_,
                                 writer_status=0, partitions=8, target_rate=10000,
                                 writer_rate=10000, keys=10000,
                                 passes=7 if mode == "on" else 0,
                                 cleaner_read_bytes=300_000_000 if mode == "on" else 0)
        self.run.rows.append({"kind": "end", "finished": "2026-12-08T02:02:00Z",
                              "load_after": "1.00 0.80 0.50"})
        self.run.write()
        self.md, self.document, self.final = report.build(self.run.dir, RECORD_SIZE)

    def tearDown(self):
        self.tmp.cleanup()

    def test_the_p99_ratio_is_of_the_geometric_means_of_the_rounds(self):
        self.assertAlmostEqual(self.document["cleaner"]["p99_ratio"], 1.25)
        self.assertIn("| produce p99 with the cleaner ÷ without it (geometric means of the rounds; "
                      "target <= 1.2) | 1.25 | |", self.md)

    def test_throughput_and_memory_come_from_the_examples_json_line(self):
        self.assertIn("| cleaner throughput, one pass over a 105 MB compacted log (10,000 keys, "
                      "1 KiB values), MB/s of log | 262.3 | 210 MB read, 10.5 MB written, 0.40 s |",
                      self.md)
        self.assertIn("| cleaner peak RSS MB (the process: the pass and its offset map) | 131.0 |",
                      self.md)

    def test_the_passes_during_each_run_with_the_cleaner_are_noted(self):
        self.assertIn("| produce p50/p99/p99.9 ms, cleaner on, round 2: 8 partitions at 10,000 rec/s "
                      "while 10,000 rec/s go to a compacted topic | 0.90/10.00/9.00 | 7 cleaner passes, "
                      "300 MB read by them during the run |", self.md)

    def test_a_cleaner_only_run_has_no_comparison_table(self):
        self.assertNotIn("| measure | dur. |", self.md)
        self.assertNotIn("Workload:", self.md)
        self.assertEqual(self.final, "produce n/a consume n/a p99 n/a rss n/a start n/a")


class ParseTest(unittest.TestCase):
    def test_a_failed_run_reports_its_exit_status(self):
        m = {"status": 3, "tool": "lmq-perf", "kind": "produce"}
        self.assertEqual(report.parse(m, "", RECORD_SIZE)["detail"], "exit 3")

    def test_a_tool_that_printed_nothing_is_no_result(self):
        for tool in ("lmq-perf", "rdkafka-perf"):
            m = {"status": 0, "tool": tool, "kind": "produce", "expected": 1}
            self.assertEqual(report.parse(m, "", RECORD_SIZE)["detail"], "no result printed")

    def test_producer_performance_needs_every_record_stored(self):
        m = {"status": 0, "tool": "ProducerPerformance", "kind": "produce", "expected": 10,
             "stored": {"log_end_total": 9}}
        text = "10 records sent, 5.0 records/sec (0.01 MB/sec), 1 ms 99.9th.\n"
        res = report.parse(m, text, RECORD_SIZE)
        self.assertEqual(res["records_per_s"], 5.0)
        self.assertFalse(res["verified"])
        self.assertEqual(res["counts"], {"expected": 10, "sent": 10, "stored": 9})

    def test_peak_rss_counts_shared_memory_as_anonymous(self):
        peak = report.peak_rss("VmRSS: 4096 RssAnon: 1024 RssFile: 2048 RssShmem: 1024 \n"
                               "\n")
        self.assertEqual(peak, {"anon": 2.0, "file": 2.0, "vmrss": 4.0})


if __name__ == "__main__":
    unittest.main()
