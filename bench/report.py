#!/usr/bin/env python3
"""The report of scripts/bench.sh: LMQ ÷ Kafka ratios from one run's measurements.

usage: bench/report.py RUN_DIR DEST RECORD_SIZE

Reads RUN_DIR/measurements.jsonl (one JSON object per line, written by bench.sh's `record`:
kind meta, ceilings, produce, consume, latency, startup, fill, cleaner_throughput,
cleaner_latency, end), each measurement's tool output (its `out` file) and
RUN_DIR/rss-{kafka,lmq}.txt; writes DEST.md (the ratio table in markdown, then LMQ's log
cleaner rows when the run has them) and DEST.json, prints the markdown and, last, the line
    produce x.xx consume x.xx p99 x.xx rss x.xx start x.xx      (LMQ ÷ Kafka)
docs/PERFORMANCE.md quotes this output: keep its format. Tests: bench/test_report.py.
"""

import json
import math
import re
import sys

# Measures in table order, and tools within a measure.
ORDER = {"produce": 0, "consume": 1, "latency": 2}
TOOLS = {"ProducerPerformance": 0, "ConsumerPerformance": 0, "rdkafka-perf": 1, "lmq-perf": 2}
# A run whose client used this share of its core or more measured the client, not the broker.
CLIENT_BOUND_UTIL = 0.9
# A latency run that produced less than this share of its target rate fell short of it.
RATE_KEPT_SHARE = 0.95


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def last_json_line(text):
    """The last line of a tool's output as JSON, or None."""
    try:
        return json.loads(text.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None


def stored_total(m):
    stored = m.get("stored")
    return stored.get("log_end_total") if isinstance(stored, dict) else None


def parse(m, text, record_size):
    """Standard fields of one measurement from its tool's output TEXT."""
    res = {"mb_per_s": None, "records_per_s": None, "verified": False, "detail": None}
    if m["status"] != 0:
        res["detail"] = f"exit {m['status']}"
        return res
    if m["tool"] == "lmq-perf":
        out = last_json_line(text)
        if out is None:
            res["detail"] = "no result printed"
            return res
        res["verified"] = bool(out.get("verified"))
        if m["kind"] == "consume":
            res["records_per_s"] = out["consume_records_per_s"]
            res["mb_per_s"] = out["consume_mb_per_s"]
            res["counts"] = {"stored": out["expected"], "consumed": out["consumed"]}
            res["bytes"] = out["consume_bytes"]
        else:
            res["records_per_s"] = out["produce_records_per_s"]
            res["mb_per_s"] = out["produce_mb_per_s"]
            res["counts"] = {k: out[k] for k in ("sent", "acked", "stored", "consumed")}
            res["bytes"] = out["produce_bytes"] + out["consume_bytes"]
            res["e2e_us"] = out["e2e_latency_us"]
            res["produce_us"] = out["produce_latency_us"]
            res["behind_schedule_ms_max"] = out["behind_schedule_ms_max"]
    elif m["tool"] == "ProducerPerformance":
        last = [line for line in text.splitlines() if "99.9th" in line]
        g = re.match(r"(\d+) records sent, ([0-9.]+) records/sec", last[-1]) if last else None
        if g:
            sent, rps = int(g.group(1)), float(g.group(2))
            stored = stored_total(m)
            res["records_per_s"] = rps
            res["mb_per_s"] = rps * record_size / 1e6
            res["counts"] = {"expected": m["expected"], "sent": sent, "stored": stored}
            res["verified"] = sent == m["expected"] and stored == m["expected"]
            res["bytes"] = sent * record_size
    elif m["tool"] == "rdkafka-perf":
        out = last_json_line(text)
        if out is None:
            res["detail"] = "no result printed"
            return res
        stored = stored_total(m)
        res["records_per_s"] = out["produce_records_per_s"]
        res["mb_per_s"] = out["produce_mb_per_s"]
        res["counts"] = {"expected": m["expected"], "acked": out["delivered"], "stored": stored}
        res["verified"] = out["delivered"] == m["expected"] and stored == m["expected"]
        res["bytes"] = out["delivered"] * record_size
    elif m["tool"] == "ConsumerPerformance":
        lines = text.strip().splitlines()
        idx = next((i for i, line in enumerate(lines) if line.startswith("start.time")), None)
        if idx is not None and idx + 1 < len(lines):
            head = [h.strip() for h in lines[idx].split(",")]
            vals = [v.strip() for v in lines[idx + 1].split(",")]
            row = dict(zip(head, vals))
            consumed = int(row["data.consumed.in.nMsg"])
            rps = float(row["fetch.nMsg.sec"])
            res["records_per_s"] = rps
            res["mb_per_s"] = rps * record_size / 1e6
            res["counts"] = {"stored": m["expected"], "consumed": consumed}
            res["verified"] = consumed == m["expected"]
            res["bytes"] = consumed * record_size
    return res


def key(m):
    return (m["kind"], m["durability"], m["tool"], m["partitions"], m.get("linger_ms"),
            m.get("codec"), m.get("load_pct"))


def best_pairs(measures):
    """Per key, per broker: of repeated passes (consume), the fastest one that counted right."""
    passes = {}
    for m in measures:
        passes.setdefault(key(m), {}).setdefault(m["broker"], []).append(m)
    return {k: {b: max(ms, key=lambda m: (bool(m.get("verified")), m.get("mb_per_s") or 0))
                for b, ms in brokers.items()}
            for k, brokers in passes.items()}


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def ratio(l, k):
    return l / k if l is not None and k not in (None, 0) else None


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def notes(*ms):
    out = []
    for m in ms:
        if m is None:
            continue
        who = "Kafka" if m["broker"] == "kafka" else "LMQ"
        if m.get("detail"):
            out.append(f"{who} run failed ({m['detail']})")
        elif not m.get("verified"):
            out.append(f"{who}: COUNTS DIFFER {m.get('counts')}")
        if m.get("client_bound"):
            out.append(f"client-bound on {who} ({m['client_util'] * 100:.0f}% CPU)")
        if m.get("rate_kept") is False:
            out.append(f"{who} fell short of the rate ({m['records_per_s']:,.0f}/s)")
    return "; ".join(out)


def order(item):
    kind, dur, tool, part, linger, codec, pct = item[0]
    return (ORDER[kind], dur, codec or "", TOOLS[tool], part, linger or 0, pct or 0)


def peak_rss(text):
    """Peak MiB (anon+shmem, file, VmRSS) of a sampler file: `VmRSS: kB RssAnon: kB ...` lines."""
    peak = {"anon": 0, "file": 0, "vmrss": 0}
    for line in text.splitlines():
        f = dict(zip(line.split()[::2], map(int, line.split()[1::2])))
        if "RssAnon:" not in f:
            continue
        peak["anon"] = max(peak["anon"], f["RssAnon:"] + f.get("RssShmem:", 0))
        peak["file"] = max(peak["file"], f.get("RssFile:", 0))
        peak["vmrss"] = max(peak["vmrss"], f.get("VmRSS:", 0))
    return {k: v / 1024 for k, v in peak.items()}


class Table:
    """The markdown table, its rows as JSON, and the ratios the headline line averages."""

    def __init__(self):
        self.lines = ["| measure | dur. | part. | linger | tool | Apache Kafka | LMQ | LMQ ÷ Kafka | notes |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        self.headline = {"produce": [], "consume": [], "p99": []}
        self.flat = []

    def add(self, measure, k, l, absk, absl, r, m_k, m_l, part, linger, tool, dur,
            headline_key=None):
        self.lines.append(f"| {measure} | {dur} | {part} | {linger} | {tool} | {absk} | {absl} | {fmt(r, 2)} | {notes(m_k, m_l)} |")
        self.flat.append({"measure": measure, "durability": dur, "partitions": part,
                          "linger_ms": linger, "tool": tool, "kafka": k, "lmq": l, "ratio": r,
                          "notes": notes(m_k, m_l)})
        if headline_key and r is not None:
            self.headline[headline_key].append(r)


def add_runs(table, pairs):
    """Throughput and latency rows, one per measurement key."""
    for (kind, dur, tool, part, linger, codec, pct), pair in sorted(pairs.items(), key=order):
        k, l = pair.get("kafka"), pair.get("lmq")

        def kv(m, f):
            return m.get(f) if m else None

        if kind in ("produce", "consume"):
            name = f"{kind} MB/s (records/s)" + (f", {codec}" if codec not in (None, "none") else "")
            absk = f"{fmt(kv(k, 'mb_per_s'))} ({fmt(kv(k, 'records_per_s'), 0)})" if k else "n/a"
            absl = f"{fmt(kv(l, 'mb_per_s'))} ({fmt(kv(l, 'records_per_s'), 0)})" if l else "n/a"
            r = ratio(kv(l, "mb_per_s"), kv(k, "mb_per_s"))
            hk = kind if dur == "a" and codec in (None, "none") else None
            table.add(name, kv(k, "mb_per_s"), kv(l, "mb_per_s"), absk, absl, r, k, l, part,
                      linger if linger is not None else "", tool, dur, hk)
        else:
            rate = (k or l)["target_rate"]
            for which, label in (("e2e_us", "end-to-end"), ("produce_us", "produce")):
                def lat(m):
                    h = kv(m, which)
                    return None if not h or not h["count"] else (h["p50"] / 1e3, h["p99"] / 1e3, h["p999"] / 1e3)
                lk, ll = lat(k), lat(l)
                absk = "/".join(fmt(x, 2) for x in lk) if lk else "n/a"
                absl = "/".join(fmt(x, 2) for x in ll) if ll else "n/a"
                r = ratio(ll[1] if ll else None, lk[1] if lk else None)
                hk = "p99" if which == "e2e_us" and pct == 50 and dur == "a" else None
                table.add(f"{label} latency p50/p99/p99.9 ms at {pct}% ({rate:,} rec/s); ratio of p99",
                          lk[1] if lk else None, ll[1] if ll else None, absk, absl, r, k, l, part,
                          linger, tool, dur, hk)


def add_rss(table, rk, rl):
    rss_ratio = ratio(rl["anon"], rk["anon"])
    table.lines.append(f"| peak RSS under load, MiB (anon+shmem; file-mapped apart) | a+b | | | | {rk['anon']:.0f} ({rk['file']:.0f} file) | {rl['anon']:.0f} ({rl['file']:.0f} file) | {fmt(rss_ratio, 3)} | sampled each second |")
    table.flat.append({"measure": "peak RSS MiB", "kafka": rk, "lmq": rl, "ratio": rss_ratio})
    return rss_ratio


def add_cpu(table, measures):
    for dur in ("a", "b"):
        def cpu(broker):
            ms = [m for m in measures if m["broker"] == broker and m["durability"] == dur and m.get("bytes")]
            gb = sum(m["bytes"] for m in ms) / 1e9
            return sum(m["broker_cpu_s"] for m in ms) / gb if gb else None
        ck, cl = cpu("kafka"), cpu("lmq")
        r = ratio(cl, ck)
        table.lines.append(f"| broker CPU-seconds per GB moved (produced + consumed) | {dur} | | | all | {fmt(ck, 2)} | {fmt(cl, 2)} | {fmt(r, 2)} | |")
        table.flat.append({"measure": "broker CPU s/GB", "durability": dur, "kafka": ck, "lmq": cl, "ratio": r})


def add_startups(table, starts, fills):
    """Start-up rows, one per data-dir state; the ratio of the empty one."""
    start_ratio = None
    for data in dict.fromkeys(r.get("data", "empty") for r in starts):
        def pick(broker):
            return next((r for r in starts if r["broker"] == broker and r.get("data", "empty") == data), None)
        k, l = pick("kafka"), pick("lmq")
        sk, sl = (k or {}).get("ms"), (l or {}).get("ms")
        r = ratio(sl, sk)
        if data == "empty":
            start_ratio = r
            label = "empty data dir"
        else:
            def gib(row):
                return f"{row['log_bytes'] / 2**30:.2f}" if row and row.get("log_bytes") else "?"
            label = f"data dir with {data} of log (Kafka {gib(k)} GiB, LMQ {gib(l)} GiB on disk), clean restart"
        note = ""
        if data != "empty":
            bad = [b for b in ("kafka", "lmq")
                   if not (fills.get(b) and isinstance(fills[b].get("stored"), dict)
                           and fills[b]["stored"].get("log_end_total") == fills[b]["expected"])]
            note = "fill verified on both" if not bad else "fill NOT verified on " + ", ".join(bad)
        table.lines.append(f"| start-up ms, exec to first Metadata answer, {label} | | | | | {fmt(sk, 0)} | {fmt(sl, 1)} | {fmt(r, 4)} | {note} |")
        table.flat.append({"measure": "start-up ms", "data": data, "kafka": sk, "lmq": sl, "ratio": r})
    return start_ratio


def cleaner_section(rows):
    """LMQ's log cleaner (no Kafka counterpart): markdown lines and their JSON, or ([], None).

    cleaner_throughput rows: the clean_throughput example's JSON line (one pass over a
    compacted log). cleaner_latency rows: lmq-perf produce runs on a broker with the cleaner
    off or on while another topic is compacted; the ratio is the geometric mean of produce
    p99 with the cleaner ÷ the same without it."""
    throughput = [r for r in rows if r["kind"] == "cleaner_throughput"]
    runs = [r for r in rows if r["kind"] == "cleaner_latency"]
    if not throughput and not runs:
        return [], None
    lines = ["LMQ's log cleaner (no Kafka counterpart):", "",
             "| measure | LMQ | notes |", "| --- | --- | --- |"]
    doc = {"throughput": None, "runs": [], "p99_ratio": None}
    for r in throughput:
        out = last_json_line(read(r["out"])) if r["status"] == 0 else None
        if out is None:
            lines.append(f"| cleaner throughput | n/a | run failed (exit {r['status']}) |")
            continue
        doc["throughput"] = out
        lines.append(f"| cleaner throughput, one pass over a {out['log_bytes'] / 1e6:,.0f} MB compacted log "
                     f"({out['keys']:,} keys, 1 KiB values), MB/s of log | {fmt(out['mb_per_s'])} | "
                     f"{out['bytes_read'] / 1e6:,.0f} MB read, {out['bytes_written'] / 1e6:,.1f} MB written, "
                     f"{out['seconds']:.2f} s{'; more passes needed' if out['more_passes'] else ''} |")
        lines.append(f"| cleaner peak RSS MB (the process: the pass and its offset map) | "
                     f"{fmt(out['peak_rss_mb_after'])} | {fmt(out['peak_rss_mb_before'])} MB before the pass; "
                     f"offset map {fmt(out['offset_map_mb'])} MB ([cleaner] dedupe_buffer_bytes) |")
    p99 = {"off": [], "on": []}
    for r in runs:
        out = last_json_line(read(r["out"])) if r["status"] == 0 else None
        h = out.get("produce_latency_us") if out else None
        run = {"cleaner": r["cleaner"], "round": r["round"], "passes": r.get("passes"),
               "cleaner_read_bytes": r.get("cleaner_read_bytes"),
               "produce_p99_ms": h["p99"] / 1e3 if h and h["count"] else None,
               "verified": bool(out and out.get("verified")),
               "records_per_s": out.get("produce_records_per_s") if out else None}
        doc["runs"].append(run)
        if run["produce_p99_ms"] is not None:
            p99[r["cleaner"]].append(run["produce_p99_ms"])
        note = [] if run["verified"] else ["COUNTS DIFFER" if out else f"run failed (exit {r['status']})"]
        if out and run["records_per_s"] < RATE_KEPT_SHARE * r["target_rate"]:
            note.append(f"fell short of the rate ({run['records_per_s']:,.0f}/s)")
        if r.get("writer_status", 0) != 0:
            note.append(f"the compacted topic's writer failed (exit {r['writer_status']})")
        if r["cleaner"] == "on" and r.get("io_max"):
            note.append(f"[cleaner] io_bytes_per_second_max = {r['io_max']:,}")
        if r["cleaner"] == "on":
            note.append(f"{r.get('passes')} cleaner passes, {(r.get('cleaner_read_bytes') or 0) / 1e6:,.0f} MB read by them during the run")
            if isinstance(r.get("log_locked_ms_max"), (int, float)):
                note.append(f"the longest plan or commit held the compacted log's lock {r['log_locked_ms_max']} ms")
        lines.append(f"| produce p50/p99/p99.9 ms, cleaner {r['cleaner']}, round {r['round']}: {r['partitions']} partitions at "
                     f"{r['target_rate']:,} rec/s while {r['writer_rate']:,} rec/s go to a compacted topic | "
                     + ("/".join(fmt(h[q] / 1e3, 2) for q in ("p50", "p99", "p999")) if h and h["count"] else "n/a")
                     + f" | {'; '.join(note)} |")
    doc["p99_ratio"] = ratio(geomean(p99["on"]), geomean(p99["off"]))
    if runs:
        lines.append(f"| produce p99 with the cleaner ÷ without it (geometric means of the rounds; target <= 1.2) | "
                     f"{fmt(doc['p99_ratio'], 2)} | |")
    return lines + [""], doc


def preamble(meta, end, c, measures):
    verified = [m for m in measures if m.get("verified")]
    bound = [m for m in measures if m.get("client_bound")]
    lines = [
        f"Run of {meta['started']} ({meta['mode']}), command `{meta['command']}`, LMQ {meta['lmq_commit']}, Apache Kafka {meta['kafka_version']}.",
        f"Machine: {meta['cpus']} cores ({meta['cpu_model']}), kernel {meta['kernel']}; broker on core {meta['broker_cpus']}, client on core {meta['client_cpus']}; "
        f"load average before {meta['load_before']}, after {end.get('load_after', '?')}.",
        f"Ceilings: loopback TCP {fmt(c['loopback_mb_per_s'], 0)} MB/s ({c['loopback_tool']}); disk sequential write "
        f"{fmt(c['disk_fdatasync_mb_per_s'], 0)} MB/s (1 MiB writes + fdatasync), {fmt(c['disk_buffered_mb_per_s'], 0)} MB/s buffered "
        f"(16 KiB, no sync), {fmt(c['disk_dsync_16k_mb_per_s'], 0)} MB/s (16 KiB writes, O_DSYNC).",
        "Workload: 1 KiB incompressible records (lmq-perf and rdkafka-perf: random bytes; ProducerPerformance: random base64 lines), "
        "no compression, RF=1, acks=1, batch 16 KiB, "
        f"{meta['seconds']} s per measurement. Durability (a): no fsync on either broker; (b): fsync per append before "
        "the answer (Kafka topic flush.messages=1, i.e. log.flush.interval.messages=1; LMQ [log] flush = \"every-batch\").",
        "Latency runs: lmq-perf, open loop at 25/50/80% of Kafka's lmq-perf maximum for the same settings, timed from "
        "each record's due instant (no coordinated omission), warm-up excluded. Consume: a full topic written by "
        "ProducerPerformance, read from the page cache, better of two passes (ConsumerPerformance: fetch rate, group "
        "join excluded). Each broker got an unmeasured warm-up load after its start (the JVM's JIT).",
        f"Counts: {len(verified)} of {len(measures)} runs verified (stored = acknowledged = consumed); "
        f"{len(bound)} flagged client-bound (client used >= 90% of its core: the figure is the client's ceiling, not the broker's).",
        "",
    ]
    # A --cleaner-only run has no comparison: its workload is in the cleaner section.
    return lines if measures else lines[:3] + [""]


def build(run, record_size):
    """(markdown, JSON document, final line) of the run in directory RUN."""
    with open(f"{run}/measurements.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    meta = next(r for r in rows if r["kind"] == "meta")
    end = next((r for r in rows if r["kind"] == "end"), {})
    ceilings = next(r for r in rows if r["kind"] == "ceilings")

    measures = [r for r in rows if r["kind"] in ("produce", "consume", "latency")]
    for m in measures:
        m.update(parse(m, read(m["out"]), record_size))
        util = m.get("client_util")
        m["client_bound"] = isinstance(util, (int, float)) and util >= CLIENT_BOUND_UTIL
        if m["kind"] == "latency" and m["records_per_s"] is not None:
            m["rate_kept"] = m["records_per_s"] >= RATE_KEPT_SHARE * m["target_rate"]

    table = Table()
    starts = [r for r in rows if r["kind"] == "startup"]
    rss_ratio = start_ratio = None
    if measures:  # none in a --cleaner-only run
        add_runs(table, best_pairs(measures))
        rk, rl = peak_rss(read(f"{run}/rss-kafka.txt")), peak_rss(read(f"{run}/rss-lmq.txt"))
        rss_ratio = add_rss(table, rk, rl)
        add_cpu(table, measures)
        fills = {r["broker"]: r for r in rows if r["kind"] == "fill"}
        start_ratio = add_startups(table, starts, fills)
    else:
        table.lines = []
    cleaner_lines, cleaner = cleaner_section(rows)

    summary = {"produce": geomean(table.headline["produce"]),
               "consume": geomean(table.headline["consume"]),
               "p99": geomean(table.headline["p99"]), "rss": rss_ratio, "start": start_ratio}
    final = " ".join(f"{k} {('n/a' if v is None else f'{v:.2f}')}" for k, v in summary.items())
    md = "\n".join(preamble(meta, end, ceilings, measures) + table.lines + [""] + cleaner_lines
                    + [f"`{final}`", ""])
    document = {"meta": meta, "end": end, "ceilings": ceilings, "startup": starts,
                "rows": table.flat, "measurements": measures, "cleaner": cleaner,
                "summary": summary, "final_line": final}
    return md, document, final


def main(argv):
    if len(argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    run, dest, record_size = argv[1], argv[2], int(argv[3])
    md, document, final = build(run, record_size)
    with open(f"{dest}.json", "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1, default=str)
    with open(f"{dest}.md", "w", encoding="utf-8") as handle:
        handle.write(md)
    print(md)
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
