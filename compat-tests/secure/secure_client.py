"""The confluent-kafka (librdkafka) client of compat-tests/secure-matrix.sh: with the client
settings of a secured listener, a producer (acks=all) sends 3 records to partition 0 of TOPIC
and a consumer (assigned, no group) reads them back from the beginning.

usage: secure_client.py PROPERTIES TOPIC [KEY=VALUE...] -- librdkafka settings from a
properties file (bootstrap.servers among them), then the overrides; prints one line: 'OK 3 records', 'REFUSED <KafkaError name>: <message>' (the error
the client reported, e.g. _AUTHENTICATION for a refused login) or 'FAIL <reason>'.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

COUNT = 3


class Refused(Exception):
    def __init__(self, error):
        super().__init__(error.str())
        self.error = error


def run(topic, settings):
    errors = []

    def on_error(error):
        # librdkafka reports a refused login through the error callback (and marks it fatal
        # for the instance): stop at the first such error instead of retrying until timeout.
        errors.append(error)

    def check_errors():
        for error in errors:
            if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED):
                raise Refused(error)

    run_id = str(time.time_ns())
    sent = [f"secure-{run_id}-{i}" for i in range(COUNT)]
    producer = Producer({**settings, "acks": "all", "error_cb": on_error, "message.timeout.ms": 30000})
    reports = []
    for value in sent:
        producer.produce(topic, value.encode(), partition=0, on_delivery=lambda err, msg: reports.append(err))
    deadline = time.monotonic() + 35
    while len(reports) < COUNT and time.monotonic() < deadline:
        producer.poll(0.2)
        check_errors()
    check_errors()
    failed = [err for err in reports if err is not None]
    if failed:
        raise Refused(failed[0])
    if len(reports) < COUNT:
        return f"FAIL {len(reports)} of {COUNT} deliveries reported"
    consumer = Consumer({**settings, "group.id": f"{topic}-reader-{run_id}", "enable.auto.commit": False,
                         "error_cb": on_error})
    try:
        consumer.assign([TopicPartition(topic, 0, -2)])  # -2: OFFSET_BEGINNING
        read = []
        deadline = time.monotonic() + 30
        while not set(sent) <= set(read) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            check_errors()
            if message is None:
                continue
            if message.error():
                raise Refused(message.error())
            read.append(message.value().decode())
    finally:
        consumer.close()
    if not set(sent) <= set(read):
        return f"FAIL read {read}, expected to include {sent}"
    return f"OK {COUNT} records"


def properties(path):
    """A Java-style properties file's key=value lines (no continuation lines)."""
    settings = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if line and not line.startswith(("#", "!")):
                key, value = line.split("=", 1)
                settings[key.strip()] = value.strip()
    return settings


def main():
    settings = properties(sys.argv[1])
    topic = sys.argv[2]
    settings.update(arg.split("=", 1) for arg in sys.argv[3:])
    try:
        line = run(topic, settings)
    except Refused as refused:
        line = f"REFUSED {refused.error.name()}: {refused.error.str()}"
    except KafkaException as error:
        line = f"REFUSED {error.args[0].name()}: {error.args[0].str()}"
    except Exception as error:  # noqa: BLE001 - any other failure is the check's reason
        line = f"FAIL {type(error).__name__}: {error}"
    print(line.replace("\n", " "), flush=True)


if __name__ == "__main__":
    main()
