"""`ais-wds ls` and `ais-wds cat` against the live cluster, run as a user would (a subprocess)."""

import os
import subprocess
import sys

import pytest

from ais_wds import Listing, write_bytes


def ais_wds_cli(*args, endpoint, check=True):
    proc = subprocess.run([sys.executable, "-m", "ais_wds.cli", *args], capture_output=True,
                          env={**os.environ, "AIS_ENDPOINT": endpoint}, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


@pytest.fixture(scope="module")
def files(client, module_bucket):
    payloads = {f"data/f{i}.bin": os.urandom(1000 * (i + 1)) for i in range(3)}
    for name, data in payloads.items():
        write_bytes(f"ais://{module_bucket}/{name}", data, client)
    return module_bucket, payloads


def test_ls_prints_names_sizes_and_totals(files, ais_endpoint):
    bucket, payloads = files
    out = ais_wds_cli("ls", f"ais://{bucket}/data/", endpoint=ais_endpoint).stdout.decode().splitlines()
    assert out[:3] == [f"{len(d):>14}  ais://{bucket}/{n}" for n, d in payloads.items()]
    assert out[3] == "3 objects, 6000 bytes (5.9 KiB)"


def test_ls_save_writes_a_listing_that_loads_back(files, ais_endpoint, tmp_path):
    bucket, payloads = files
    path = tmp_path / "l.msgpack"
    ais_wds_cli("ls", "-q", "--save", str(path), f"ais://{bucket}/data/", endpoint=ais_endpoint)
    assert Listing.load(path).urls == [f"ais://{bucket}/{n}" for n in payloads]


def test_cat_streams_an_object_and_a_range_to_stdout(files, ais_endpoint):
    bucket, payloads = files
    data = payloads["data/f2.bin"]
    assert ais_wds_cli("cat", f"ais://{bucket}/data/f2.bin", endpoint=ais_endpoint).stdout == data
    assert ais_wds_cli("cat", "--range", "10-20", f"ais://{bucket}/data/f2.bin",
                       endpoint=ais_endpoint).stdout == data[10:20]


def test_errors_exit_2_with_a_message_naming_the_url(files, ais_endpoint):
    bucket, _ = files
    proc = ais_wds_cli("cat", f"ais://{bucket}/data/missing", endpoint=ais_endpoint, check=False)
    assert proc.returncode == 2
    assert f"ais://{bucket}/data/missing" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    proc = ais_wds_cli("ls", f"ais://{bucket}/nothing/", endpoint=ais_endpoint, check=False)
    assert proc.returncode == 2 and "matched no object" in proc.stderr.decode()


@pytest.mark.parametrize("cmd", [[], ["ls"], ["cat"]])
def test_every_command_has_help(cmd):
    proc = subprocess.run([sys.executable, "-m", "ais_wds.cli", *cmd, "--help"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and b"usage: ais-wds" in proc.stdout
