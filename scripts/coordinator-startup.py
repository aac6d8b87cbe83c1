#!/usr/bin/env python3
"""Time from `lmq serve` on a fresh data dir to its first successful FindCoordinator.

Usage: scripts/coordinator-startup.py LMQ_BINARY [RUNS] [EXTRA CONFIG TOML LINES...]
Prints one line per run (milliseconds to the listener accepting, to the first
FindCoordinator answered without error) and the medians. Nothing but the standard library:
FindCoordinator v1 is spoken by hand.
"""
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_coordinator(port, group):
    # Request header v1: api key 10, version 1, correlation id, client id; body: key, key type.
    client = b"timer"
    body = struct.pack(">hhih", 10, 1, 1, len(client)) + client
    key = group.encode()
    body += struct.pack(">h", len(key)) + key + struct.pack(">b", 0)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", recv_exact(sock, 4))[0]
        answer = recv_exact(sock, size)
    # correlation id (4), throttle time (4), error code (2)
    return struct.unpack(">h", answer[8:10])[0]


def recv_exact(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def run_once(binary, extra):
    data_dir = tempfile.mkdtemp(prefix="lmq-startup-")
    port = free_port()
    config = os.path.join(data_dir, "lmq.toml")
    with open(config, "w") as out:
        out.write("\n".join(extra) + "\n")
    start = time.monotonic()
    process = subprocess.Popen(
        [binary, "serve", "--data-dir", os.path.join(data_dir, "data"),
         "--listen", f"127.0.0.1:{port}", "--admin-listen", "off", "--config", config],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listening = None
    try:
        while True:
            if time.monotonic() - start > 60:
                raise TimeoutError("no coordinator within 60 s")
            try:
                error = find_coordinator(port, "timing-group")
            except OSError:
                time.sleep(0.005)
                continue
            if listening is None:
                listening = time.monotonic() - start
            if error == 0:
                return listening * 1000, (time.monotonic() - start) * 1000
            time.sleep(0.005)
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def main():
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    extra = sys.argv[3:]
    results = [run_once(binary, extra) for _ in range(runs)]
    for listening, found in results:
        print(f"listening {listening:8.1f} ms   first coordinator {found:8.1f} ms")
    print(f"median: listening {statistics.median(r[0] for r in results):.1f} ms, "
          f"first coordinator {statistics.median(r[1] for r in results):.1f} ms")


if __name__ == "__main__":
    main()
