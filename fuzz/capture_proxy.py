#!/usr/bin/env python3
"""Records the Kafka request frames real clients send and the broker's answers, to seed the
fuzzers (scripts/fuzz.sh --capture drives it).

  capture_proxy.py proxy --listen 127.0.0.1:P --upstream 127.0.0.1:B --out RAW_DIR
      A TCP proxy: every client connection is forwarded to the broker at B; each
      client->broker frame is written, its 4-byte length prefix stripped, to RAW_DIR as
      <sequence>_<client id>_<api>_v<version>.bin. Each broker->client frame is written as
      <sequence>_<client id>_<api>_v<version>.response: the request's API key and version
      (big-endian i16 each, what the client expects; the `response` fuzz target's input
      layout) followed by the frame without its length prefix. Start the broker with --advertised-listener 127.0.0.1:P so that clients
      reconnect through the proxy after their bootstrap Metadata. Prints 'listening' once
      ready; stops on SIGTERM or SIGINT.

  capture_proxy.py select RAW_DIR OUT_DIR --versions wire/src/versions.rs [--per-kind N]
      Copies a representative subset: frames of APIs and versions LMQ decodes (the table in
      versions.rs), at most N per (api, version, client), where the client is the full
      client id for Produce (one per codec when each codec's producer has its own id) and
      the id's first '-'-separated word otherwise. With --responses: the same for the
      .response files (the `response` target's seeds).

  capture_proxy.py batches DATA_DIR BATCH_DIR LOG_DIR [--batch-bytes-max B] [--log-bytes-max L]
      From a broker data dir (partition directories <topic>-<n> of .log segments, whole
      record batches back to back): the first batch of each (topic, codec, idempotent or
      not) up to B bytes into BATCH_DIR, and the first segment of up to three partitions of
      at most L bytes (the ones with the most distinct batch kinds) into LOG_DIR.

Standard library only.
"""

import argparse
import asyncio
import itertools
import os
import re
import shutil
import signal
import sys

# Kafka API keys (the protocol's numbering), for file names and the versions.rs table.
API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 4: "LeaderAndIsr",
    5: "StopReplica", 6: "UpdateMetadata", 7: "ControlledShutdown", 8: "OffsetCommit",
    9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
    13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
    17: "SaslHandshake", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
    21: "DeleteRecords", 22: "InitProducerId", 23: "OffsetForLeaderEpoch",
    24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn", 26: "EndTxn", 27: "WriteTxnMarkers",
    28: "TxnOffsetCommit", 29: "DescribeAcls", 30: "CreateAcls", 31: "DeleteAcls",
    32: "DescribeConfigs", 33: "AlterConfigs", 34: "AlterReplicaLogDirs",
    35: "DescribeLogDirs", 36: "SaslAuthenticate", 37: "CreatePartitions",
    38: "CreateDelegationToken", 39: "RenewDelegationToken", 40: "ExpireDelegationToken",
    41: "DescribeDelegationToken", 42: "DeleteGroups", 43: "ElectLeaders",
    44: "IncrementalAlterConfigs", 45: "AlterPartitionReassignments",
    46: "ListPartitionReassignments", 47: "OffsetDelete", 48: "DescribeClientQuotas",
    49: "AlterClientQuotas", 50: "DescribeUserScramCredentials",
    51: "AlterUserScramCredentials", 60: "DescribeCluster", 61: "DescribeProducers",
    65: "DescribeTransactions", 66: "ListTransactions", 68: "ConsumerGroupHeartbeat",
    69: "ConsumerGroupDescribe", 71: "GetTelemetrySubscriptions", 72: "PushTelemetry",
}
API_KEYS = {name: key for key, name in API_NAMES.items()}
# The oldest Produce the codec (kafka-protocol) decodes; older ones are refused as unsupported.
PRODUCE_DECODABLE_MIN = 3
FRAME_BYTES_MAX = 100 * 1024 * 1024


def parse_frame_header(body):
    """(api_key, api_version, client_id) of a request frame body; client_id '' when absent."""
    if len(body) < 8:
        return None, None, ""
    api_key = int.from_bytes(body[0:2], "big", signed=True)
    api_version = int.from_bytes(body[2:4], "big", signed=True)
    client_id = ""
    # Request header v1 and v2 both carry a nullable non-compact string after the
    # correlation id (only ControlledShutdown v0 uses header v0, which has none).
    if len(body) >= 10:
        length = int.from_bytes(body[8:10], "big", signed=True)
        if 0 <= length <= len(body) - 10:
            client_id = body[10 : 10 + length].decode("utf-8", "replace")
    return api_key, api_version, client_id


def safe(text):
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "none"


def frame_file_name(sequence, body):
    api_key, api_version, client_id = parse_frame_header(body)
    api = API_NAMES.get(api_key, f"api{api_key}") if api_key is not None else "short"
    version = f"v{api_version}" if api_version is not None else "v"
    return f"{sequence:06d}_{safe(client_id)}_{api}_{version}.bin"


async def run_proxy(listen, upstream, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    sequence = itertools.count(1)
    upstream_host, upstream_port = upstream

    async def pump_raw(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def pump_frames(reader, writer, record):
        try:
            while True:
                prefix = await reader.readexactly(4)
                length = int.from_bytes(prefix, "big", signed=True)
                if length < 0 or length > FRAME_BYTES_MAX:
                    # Not Kafka framing: stop recording, keep forwarding.
                    writer.write(prefix)
                    await pump_raw(reader, writer)
                    return
                body = await reader.readexactly(length)
                record(body)
                writer.write(prefix + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def write(name, data):
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)

    async def on_client(client_reader, client_writer):
        try:
            broker_reader, broker_writer = await asyncio.open_connection(
                upstream_host, upstream_port
            )
        except OSError as error:
            print(f"capture_proxy: cannot reach the broker: {error}", file=sys.stderr)
            client_writer.close()
            return
        # correlation id -> (api key, version, client id) of the requests not yet answered
        # on this connection (acks=0 produces never are).
        waiting = {}

        def record_request(body):
            api_key, api_version, client_id = parse_frame_header(body)
            if api_key is not None:
                correlation_id = int.from_bytes(body[4:8], "big", signed=True)
                waiting[correlation_id] = (api_key, api_version, client_id)
            write(frame_file_name(next(sequence), body), body)

        def record_response(body):
            if len(body) < 4:
                return
            request = waiting.pop(int.from_bytes(body[0:4], "big", signed=True), None)
            if request is None:
                return
            api_key, api_version, client_id = request
            api = API_NAMES.get(api_key, f"api{api_key}")
            name = f"{next(sequence):06d}_{safe(client_id)}_{api}_v{api_version}.response"
            selector = api_key.to_bytes(2, "big", signed=True)
            selector += api_version.to_bytes(2, "big", signed=True)
            write(name, selector + body)

        await asyncio.gather(
            pump_frames(client_reader, broker_writer, record_request),
            pump_frames(broker_reader, client_writer, record_response),
        )

    server = await asyncio.start_server(on_client, listen[0], listen[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("listening", flush=True)
    async with server:
        await stop.wait()


def supported_versions(versions_rs):
    """{api_key: (min, max)} from the SUPPORTED_APIS table of wire/src/versions.rs."""
    table = {}
    with open(versions_rs, encoding="utf-8") as f:
        for name, low, high in re.findall(r"api\(ApiKey::(\w+),\s*(\d+),\s*(\d+)\)", f.read()):
            if name in API_KEYS:
                table[API_KEYS[name]] = (int(low), int(high))
    if not table:
        sys.exit(f"capture_proxy: no SUPPORTED_APIS entries found in {versions_rs}")
    return table


def select(raw_dir, out_dir, versions_rs, per_kind, responses):
    table = supported_versions(versions_rs)
    kept = {}
    skipped = 0
    suffix = ".response" if responses else ".bin"
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(raw_dir)):
        if not name.endswith(suffix):
            continue
        with open(os.path.join(raw_dir, name), "rb") as f:
            body = f.read()
        api_key, api_version, client_id = parse_frame_header(body)
        if responses:
            # The selector has the request's key and version; the client id is in the name.
            client_id = name.split("_")[1]
        low, high = table.get(api_key, (1, 0))
        if api_key == API_KEYS["Produce"]:
            low = max(low, PRODUCE_DECODABLE_MIN)
        if api_version is None or not low <= api_version <= high:
            skipped += 1
            continue
        client = client_id if api_key == API_KEYS["Produce"] else client_id.split("-")[0]
        kind = (api_key, api_version, client)
        if kept.get(kind, 0) >= per_kind:
            continue
        kept[kind] = kept.get(kind, 0) + 1
        # The sequence number goes: the seed's name says what it is, not when it came.
        seed = name.split("_", 1)[1]
        if kept[kind] > 1:
            seed = f"{seed[: -len(suffix)]}_{kept[kind]}{suffix}"
        shutil.copyfile(os.path.join(raw_dir, name), os.path.join(out_dir, seed))
    print(
        f"capture_proxy: kept {sum(kept.values())} {suffix} frames of {len(kept)} kinds "
        f"({skipped} of APIs or versions LMQ does not decode skipped)"
    )


CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
BATCH_LENGTH_PREFIX_BYTES = 12
BATCH_HEADER_BYTES = 61


def split_batches(data):
    """[(position, batch bytes)] of whole batches back to back; stops at a torn tail."""
    batches, position = [], 0
    while len(data) - position >= BATCH_HEADER_BYTES:
        length = int.from_bytes(data[position + 8 : position + 12], "big", signed=True)
        total = BATCH_LENGTH_PREFIX_BYTES + length
        if length < 0 or position + total > len(data):
            break
        batches.append((position, data[position : position + total]))
        position += total
    return batches


def batch_kind(batch):
    attributes = int.from_bytes(batch[21:23], "big", signed=True)
    producer_id = int.from_bytes(batch[43:51], "big", signed=True)
    codec = CODEC_NAMES.get(attributes & 0x07, f"codec{attributes & 0x07}")
    return codec + ("-idempotent" if producer_id >= 0 else "")


def batches(data_dir, batch_dir, log_dir, batch_bytes_max, log_bytes_max):
    os.makedirs(batch_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    logs = []
    kept = 0
    for partition in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, partition)
        if not os.path.isdir(path):
            continue
        segments = sorted(name for name in os.listdir(path) if name.endswith(".log"))
        if not segments:
            continue
        topic = partition.rpartition("-")[0]
        kinds = set()
        for segment in segments:
            with open(os.path.join(path, segment), "rb") as f:
                data = f.read()
            for _, batch in split_batches(data):
                kind = batch_kind(batch)
                if kind in kinds or len(batch) > batch_bytes_max:
                    continue
                kinds.add(kind)
                offset = int.from_bytes(batch[0:8], "big", signed=True)
                name = f"{safe(partition)}_{kind}_at{offset}.batch"
                if not any(f.startswith(f"{safe(topic)}-") and f"_{kind}_" in f
                           for f in os.listdir(batch_dir)):
                    with open(os.path.join(batch_dir, name), "wb") as f:
                        f.write(batch)
                    kept += 1
        first = os.path.join(path, segments[0])
        size = os.path.getsize(first)
        if 0 < size <= log_bytes_max:
            logs.append((-len(kinds), size, partition, first))
    for _, _, partition, first in sorted(logs)[:3]:
        shutil.copyfile(first, os.path.join(log_dir, f"{safe(partition)}.log"))
    print(f"capture_proxy: kept {kept} record batches and {min(len(logs), 3)} segments")


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    proxy = commands.add_parser("proxy", help="record the frames both ways")
    proxy.add_argument("--listen", type=address, required=True, help="HOST:PORT to accept on")
    proxy.add_argument("--upstream", type=address, required=True, help="the broker's HOST:PORT")
    proxy.add_argument("--out", required=True, help="directory for the frame files")
    pick = commands.add_parser("select", help="copy a representative subset of a capture")
    pick.add_argument("raw_dir")
    pick.add_argument("out_dir")
    pick.add_argument("--versions", required=True, help="wire/src/versions.rs")
    pick.add_argument("--per-kind", type=int, default=1)
    pick.add_argument("--responses", action="store_true", help="the .response files")
    split = commands.add_parser("batches", help="record batches and segments of a data dir")
    split.add_argument("data_dir")
    split.add_argument("batch_dir")
    split.add_argument("log_dir")
    split.add_argument("--batch-bytes-max", type=int, default=8192)
    split.add_argument("--log-bytes-max", type=int, default=32768)
    args = parser.parse_args()
    if args.command == "proxy":
        asyncio.run(run_proxy(args.listen, args.upstream, args.out))
    elif args.command == "select":
        select(args.raw_dir, args.out_dir, args.versions, args.per_kind, args.responses)
    else:
        batches(
            args.data_dir, args.batch_dir, args.log_dir, args.batch_bytes_max, args.log_bytes_max
        )


if __name__ == "__main__":
    main()
