"""Scenario: confluent-kafka idempotent producer (enable.idempotence=True, acks=all) and an
assign() consumer reading every record back byte-identical at its reported offset.

usage: idempotent.py BOOTSTRAP TOPIC
Prints one line: PASS python-idempotent-roundtrip | FAIL python-idempotent-roundtrip: why
"""

import sys

from common import compare, make_records, produce, read_back, summarize

NAME = "python-idempotent-roundtrip"


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    records = make_records("py", 600, seed=2)
    config = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 50,
    }
    acks, errors = produce(config, topic, records)
    if errors:
        return f"producer: {summarize(errors)}"
    if len(acks) != len(records):
        return f"only {len(acks)}/{len(records)} delivery reports"
    partitions = sorted({p for p, _ in acks.values()})
    if len(partitions) < 2:
        return f"all records went to partitions {partitions}; expected the default partitioner to spread keys"
    until = {}
    for p, off in acks.values():
        until[p] = max(until.get(p, 0), off + 1)
    got, problems = read_back(bootstrap, topic, partitions, until)
    problems += compare(records, acks, got)
    return summarize(problems) if problems else None


if __name__ == "__main__":
    try:
        failure = main()
    except Exception as exc:  # a crash is a failure of the scenario, with its text
        failure = f"{type(exc).__name__}: {exc}"
    print(f"FAIL {NAME}: {failure}" if failure else f"PASS {NAME}", flush=True)
    sys.exit(1 if failure else 0)
