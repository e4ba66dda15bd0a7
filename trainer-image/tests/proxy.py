"""A TCP proxy on loopback that cuts connections mid-response, in front of the real S3 server.

Runs as its own process (`python proxy.py UPSTREAM_URL CUT_AFTER COUNT_FILE`): in the test process
its sockets would be inherited by the loader's forked workers and keep dead connections open.
Every connection whose response passes CUT_AFTER bytes is reset right there (RST, as a dropped
connection looks to the client); COUNT_FILE holds the number of cuts so far.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse


class CuttingProxy:
    """Test-side handle: starts the proxy process, exposes its url and cut count."""

    def __init__(self, upstream_url: str, cut_after: int, count_file: str):
        self.count_file = count_file
        self.proc = subprocess.Popen(
            [sys.executable, __file__, upstream_url, str(cut_after), count_file], stdout=subprocess.PIPE, text=True
        )
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    @property
    def cuts(self) -> int:
        try:
            with open(self.count_file) as f:
                return int(f.read() or 0)
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _serve(upstream_url: str, cut_after: int, count_file: str) -> None:
    u = urlparse(upstream_url)
    upstream = (u.hostname, u.port or 80)
    lock, cuts = threading.Lock(), [0]
    server = socket.create_server(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)

    def pipe(src: socket.socket, dst: socket.socket, response: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                if response and sent + len(data) > cut_after:
                    dst.sendall(data[: cut_after - sent])
                    for s in (src, dst):  # linger 0: close sends RST
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    with lock:
                        cuts[0] += 1
                        with open(count_file + ".tmp", "w") as f:
                            f.write(str(cuts[0]))
                        os.replace(count_file + ".tmp", count_file)
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    while True:
        client, _ = server.accept()
        try:
            up = socket.create_connection(upstream, timeout=10)
            up.settimeout(None)
        except OSError:
            client.close()
            time.sleep(0.1)
            continue
        threading.Thread(target=pipe, args=(client, up, False), daemon=True).start()
        threading.Thread(target=pipe, args=(up, client, True), daemon=True).start()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
