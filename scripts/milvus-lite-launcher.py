"""Runs the embedded Milvus Lite server for Loupe, and ties its life to Loupe's.

Started by Loupe as ``<venv>/bin/python milvus-lite-launcher.py --data-dir DIR --host HOST --port PORT``
with a pipe on stdin. The server runs in this process (the pid Loupe sees is the server's). When
Loupe goes away in any way, SIGKILL included, the kernel closes the pipe's other end: stdin reaches
end-of-file and the server shuts down as on Ctrl-C (in-flight calls drained, data closed). A change of
parent process is watched too, in case the pipe was inherited elsewhere. If the clean shutdown hangs,
the process exits hard after a grace period; Milvus Lite's write-ahead log keeps what was written.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

PARENT_POLL_SECONDS = 1.0
SHUTDOWN_GRACE_SECONDS = 10.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="milvus-lite-launcher")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args(argv)


def silence_output() -> None:
    """Loupe is gone, so are the pipes it read: further output would only raise BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass


_shutting_down = threading.Lock()


def shut_down(why: str) -> None:
    # Once only: a second SIGINT would interrupt the clean shutdown the first one started.
    if not _shutting_down.acquire(blocking=False):
        return
    silence_output()
    # The server's main loop ends on KeyboardInterrupt, which SIGINT raises in the main thread.
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(SHUTDOWN_GRACE_SECONDS)
    os._exit(1)


def watch_stdin() -> None:
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    shut_down("stdin closed")


def watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    shut_down("parent changed")


def main() -> int:
    args = parse_args(sys.argv[1:])
    parent = os.getppid()
    threading.Thread(target=watch_stdin, name="loupe-stdin-watch", daemon=True).start()
    threading.Thread(target=watch_parent, args=(parent,), name="loupe-parent-watch", daemon=True).start()

    from milvus_lite.adapter.grpc.server import run_server

    run_server(data_dir=args.data_dir, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
