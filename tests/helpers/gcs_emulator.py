"""A local Google Cloud Storage: ``gcp-storage-emulator`` (in memory, one bucket) on 127.0.0.1, and the
environment that points gcsfs (epath's ``gs://`` backend), google-cloud-storage (tensorboardX) and
tensorstore (Orbax's array writer) at it. Nothing leaves the machine.

Two gaps of the emulator are filled here, each a thing real GCS does:

* a media download carries ``x-goog-generation``: tensorstore reads an object's generation from it, and
  without it OCDBT's conditional manifest write fails ("Malformed StorageGeneration");
* ``objects.moveTo`` (gcsfs renames with it): without it gcsfs retries the 501 for seconds on every
  rename before falling back to copy and delete.

Run as ``python tests/helpers/gcs_emulator.py PORT``; tests use ``running()``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

BUCKET = "bucket"


def environment(port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    return {
        "STORAGE_EMULATOR_HOST": url,  # gcsfs and google-cloud-storage
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # tensorstore: a fixed token, no credential lookup
        "NO_GCE_CHECK": "True",  # google-auth: no probe of a GCE metadata server
    }


@contextlib.contextmanager
def running(port: int, log: Path) -> Iterator[dict[str, str]]:
    """The emulator as a subprocess while the block runs; yields its client environment."""
    with log.open("w") as sink:
        process = subprocess.Popen([sys.executable, __file__, str(port)], stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the GCS emulator did not start"
                time.sleep(0.1)
        yield environment(port)
    finally:
        process.terminate()
        process.wait(timeout=10)


def serve(port: int) -> None:
    from http import HTTPStatus

    from gcp_storage_emulator import settings
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    download = objects.download

    def download_with_generation(request, response, storage, *args, **kwargs):
        try:
            found = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
            response["x-goog-generation"] = found["generation"]
            response["x-goog-metageneration"] = found["metageneration"]
        except NotFound:
            pass
        return download(request, response, storage, *args, **kwargs)

    def move(request, response, storage, *args, **kwargs):
        bucket, source, target = (request.params[key] for key in ("bucket_name", "object_id", "dest_object_id"))
        try:
            moved = objects._copy(request.base_url, storage, bucket, source, bucket, target)
            objects._delete(storage, bucket, source)
            response.json(moved)
        except NotFound:
            response.status = HTTPStatus.NOT_FOUND

    objects.download = download_with_generation
    from gcp_storage_emulator import server  # after the patch: its route table holds the function

    move_route = (rf"^{settings.API_ENDPOINT}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)/moveTo/o/"
                  rf"(?P<dest_object_id>.*[^/]+)$", {"POST": move})
    server.HANDLERS = (move_route, *server.HANDLERS)
    server.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET).run()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
