"""A real S3 endpoint for the archive-in-object-storage tests: moto's standalone server on
127.0.0.1, spoken to over HTTP by pyarrow exactly as a bucket would be (never a mocked client)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow.fs as pafs

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"moto server did not listen on {port}")


@contextmanager
def moto_server(*, auth: bool = False) -> Iterator[str]:
    """`python -m moto.server` in its own process; its endpoint URL. auth=True checks every
    request's credentials against moto's IAM (none exist: every key is refused)."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0" if auth else "inf"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class Bucket:
    """One bucket on the endpoint, and the environment that reaches it."""

    endpoint: str
    name: str
    env: dict[str, str]

    @property
    def fs(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=self.env["AWS_ACCESS_KEY_ID"],
            secret_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region=REGION,
            endpoint_override=self.endpoint.split("://", 1)[1],
            scheme="http",
            allow_bucket_creation=True,
        )

    def keys(self, prefix: str) -> dict[str, int]:
        """Every object below prefix (relative name -> size)."""
        infos = self.fs.get_file_info(
            pafs.FileSelector(f"{self.name}/{prefix}", recursive=True, allow_not_found=True)
        )
        base = f"{self.name}/{prefix}/"
        return {
            i.path[len(base) :]: int(i.size or 0) for i in infos if i.type == pafs.FileType.File
        }


def new_bucket(endpoint: str) -> Bucket:
    name = f"dbtools-{uuid.uuid4().hex[:10]}"
    env = {
        "AWS_ACCESS_KEY_ID": "AKIATESTDBTOOLS",
        # Random per bucket: a test can look for it in every output.
        "AWS_SECRET_ACCESS_KEY": f"secret-{uuid.uuid4().hex}",
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": endpoint,
    }
    bucket = Bucket(endpoint, name, env)
    bucket.fs.create_dir(name)
    return bucket
