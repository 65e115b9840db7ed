"""wids (the real package from PyPI) reads the descriptors that `ais-wds pack` and `ais-wds index` write,
fetching every shard through ais_wds's reader into its cache: in this process, in forked and spawned
DataLoader workers, under wids' ShardedSampler, and for cloud buckets routed through AIS.

No external fetcher may run: inside :func:`no_external_commands` (and in the spawn script) ``os.system``
and ``os.popen`` raise, and so does ``subprocess.Popen`` of ``curl``, ``gsutil``, ``aws``, ``ais`` and the
like, in this process and in the workers forked (or spawned) meanwhile, so any of them started by wids
would fail the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import textwrap
import uuid
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import ais_wds
from ais_wds import Client, ObjectNotFoundError, read_bytes, write_bytes
from ais_wds.cli import main as cli_main
from ais_wds.streaming.wids import WidsFetcher, is_registered, register_wids

REPO = Path(__file__).resolve().parents[2]
Digests = Dict[str, Dict[str, str]]  # sample key -> {extension: sha256 of the member's bytes}


@pytest.fixture(scope="module")
def wids():
    return pytest.importorskip("wids", reason="wids is in the dev extra")


FETCHERS = ("curl", "gsutil", "gcloud", "aws", "az", "ais")  # what wids (or webdataset) would shell out to


@contextlib.contextmanager
def no_external_commands() -> Iterator[None]:
    """While inside (and in workers forked meanwhile), ``os.system`` and ``os.popen`` raise (wids runs
    its command handlers with ``os.system``), and so does ``subprocess.Popen`` of any of :data:`FETCHERS`
    (other programs pass: importing torch runs ``ldconfig``)."""
    saved = (os.system, os.popen, subprocess.Popen)

    def refuse(*args, **kwargs):
        raise AssertionError(f"an external command was started: {args[:1]!r}")

    class Popen(subprocess.Popen):
        def __init__(self, args, *rest, **kwargs):
            program = args if isinstance(args, str) else args[0]
            if os.path.basename(str(program).split()[0]) in FETCHERS:
                refuse(args)
            super().__init__(args, *rest, **kwargs)

    os.system = os.popen = refuse  # type: ignore[assignment]
    subprocess.Popen = Popen  # type: ignore[misc]
    try:
        yield
    finally:
        os.system, os.popen, subprocess.Popen = saved  # type: ignore[misc]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_sample(sample: dict) -> dict:
    """wids transformation: the sample's member digests, and whether ais_wds fetched for this process."""
    return {"key": sample["__key__"], "index": int(sample["__index__"]), "shard": sample["__shard__"],
            "members": {k[1:]: _sha(v.read()) for k, v in sample.items() if not k.startswith("__")},
            "ours": is_registered("ais"), "pid": os.getpid()}


def _by_key(rows: List[dict]) -> Digests:
    out: Digests = {}
    for row in rows:
        assert row["key"] not in out, f"sample {row['key']} twice"
        out[row["key"]] = row["members"]
    return out


def _cli(*args: str) -> str:
    """Run `ais-wds ARGS` in this process; its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(list(args)) == 0
    return out.getvalue()


def _descriptor_url(cli_output: str) -> str:
    return next(line.split(": ", 1)[1] for line in cli_output.splitlines() if line.startswith("wids descriptor: "))


def _tar(members: List[tuple]) -> bytes:
    """A tar written by Python's tarfile (not by ais_wds)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(body), 1_700_000_000
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@pytest.fixture(scope="module")
def packed(client, module_bucket):
    """50 samples (bin of 0 B to 40 KiB + cls, some with a txt) as loose objects, packed by `ais-wds pack`."""
    rng = random.Random(23)
    expected: Digests = {}
    for i in range(50):
        members = {"bin": rng.randbytes(rng.choice([0, 1, 511, 512, 513, rng.randrange(40 << 10)])),
                   "cls": str(i % 7).encode()}
        if i % 3 == 0:
            members["txt"] = f"sample {i}".encode()
        for ext, body in members.items():
            write_bytes(f"ais://{module_bucket}/src/p{i:03d}.{ext}", body, client)
        expected[f"p{i:03d}"] = {ext: _sha(body) for ext, body in members.items()}
    out = _cli("pack", f"ais://{module_bucket}/src/", f"ais://{module_bucket}/packed/train-%06d.tar",
               "--samples-per-shard", "12", "--strip-prefix", "--no-progress")
    return _descriptor_url(out), expected


@pytest.fixture(scope="module")
def foreign(client, module_bucket):
    """3 shards written by Python's tarfile (37 samples), indexed by `ais-wds index`."""
    rng = random.Random(5)
    expected: Digests = {}
    for s, n in enumerate([15, 9, 13]):
        members = []
        for j in range(n):
            key = f"f{s}-{j:03d}"
            body = {"jpg": rng.randbytes(rng.randrange(1, 30_000)), "json": json.dumps({"j": j}).encode()}
            members += [(f"{key}.{ext}", data) for ext, data in body.items()]
            expected[key] = {ext: _sha(data) for ext, data in body.items()}
        write_bytes(f"ais://{module_bucket}/foreign/train-{s:06d}.tar", _tar(members), client)
    out = _cli("index", f"ais://{module_bucket}/foreign/train-")
    return _descriptor_url(out), expected


@pytest.fixture(params=["pack", "index"])
def descriptor(request, packed, foreign):
    return packed if request.param == "pack" else foreign


# -- the descriptor ------------------------------------------------------------------------------------------


def test_descriptors_say_that_their_shards_need_ais_wds(client, packed, foreign):
    for url, expected in (packed, foreign):
        doc = json.loads(read_bytes(url, client))
        assert doc["__kind__"] == "wids-shard-index-v1" and doc["wids_version"] == 1
        assert doc["requires"] == "ais_wds" and "import ais_wds" in doc["note"]
        assert all(e["url"].startswith("ais://") for e in doc["shardlist"])
        assert sum(e["nsamples"] for e in doc["shardlist"]) == len(expected)


# -- in this process -----------------------------------------------------------------------------------------


def test_shard_list_dataset_from_an_ais_descriptor_returns_every_sample_with_its_bytes(wids, descriptor, tmp_path):
    url, expected = descriptor
    with no_external_commands():
        ds = wids.ShardListDataset(url, cache_dir=str(tmp_path), transformations=[digest_sample])
        rows = [ds[i] for i in range(len(ds))]
    assert len(ds) == len(expected)
    assert _by_key(rows) == expected
    assert isinstance(wids.wids_dl.default_cmds["ais"], WidsFetcher)
    shards = sorted({row["shard"] for row in rows})
    assert sorted(os.listdir(tmp_path)) == sorted(u.rsplit("/", 1)[1] for u in shards)  # no .part left over


def test_a_local_copy_of_the_descriptor_works_too(wids, client, packed, tmp_path):
    url, expected = packed
    local = tmp_path / "train.wids.json"
    local.write_bytes(read_bytes(url, client))
    with no_external_commands():
        ds = wids.ShardListDataset(str(local), cache_dir=str(tmp_path / "cache"), transformations=[digest_sample])
        assert _by_key([ds[i] for i in range(len(ds))]) == expected


# -- DataLoader workers --------------------------------------------------------------------------------------


def test_two_forked_dataloader_workers_fetch_through_ais_wds(wids, descriptor, tmp_path):
    from torch.utils.data import DataLoader

    url, expected = descriptor
    with no_external_commands():
        ds = wids.ShardListDataset(url, cache_dir=str(tmp_path), transformations=[digest_sample])
        rows = list(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork"))
    assert _by_key(rows) == expected
    assert len({row["pid"] for row in rows}) == 2 and all(row["ours"] for row in rows)


SPAWN_SCRIPT = '''
import hashlib, json, os, subprocess, sys

import ais_wds  # wids is not imported here: a spawned worker imports it while unpickling the dataset


def refuse(*args, **kwargs):
    raise AssertionError(f"an external command was started: {args[:1]!r}")


class Popen(subprocess.Popen):
    def __init__(self, args, *rest, **kwargs):
        program = args if isinstance(args, str) else args[0]
        if os.path.basename(str(program).split()[0]) in ("curl", "gsutil", "gcloud", "aws", "az", "ais"):
            refuse(args)
        super().__init__(args, *rest, **kwargs)


# in the main process and in every spawned worker (each runs this part of the script first)
os.system = os.popen = refuse
subprocess.Popen = Popen


def digest_sample(sample):
    from ais_wds.streaming.wids import is_registered
    return {"key": sample["__key__"], "pid": os.getpid(), "ours": is_registered("ais"),
            "members": {k[1:]: hashlib.sha256(v.read()).hexdigest() for k, v in sample.items()
                        if not k.startswith("__")}}


if __name__ == "__main__":
    import wids
    from torch.utils.data import DataLoader

    ds = wids.ShardListDataset(sys.argv[1], cache_dir=sys.argv[2], transformations=[digest_sample])
    rows = list(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn"))
    print(json.dumps({"rows": rows, "main": os.getpid()}))
'''


def test_two_spawned_dataloader_workers_register_the_fetcher_when_they_import_wids(wids, packed, tmp_path):
    url, expected = packed
    script = tmp_path / "train.py"
    script.write_text(SPAWN_SCRIPT)
    out = subprocess.run([sys.executable, str(script), url, str(tmp_path / "cache")], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rows = result["rows"]
    assert _by_key(rows) == expected
    pids = {row["pid"] for row in rows}
    assert len(pids) == 2 and result["main"] not in pids and all(row["ours"] for row in rows)


def test_sharded_sampler_visits_each_shard_once_and_every_sample_once(wids, foreign, tmp_path):
    from torch.utils.data import DataLoader

    url, expected = foreign
    with no_external_commands():
        ds = wids.ShardListDataset(url, cache_dir=str(tmp_path), transformations=[digest_sample])
        sampler = wids.ShardedSampler(ds)
        rows = list(DataLoader(ds, batch_size=None, sampler=sampler, num_workers=2, multiprocessing_context="fork"))
    assert _by_key(rows) == expected
    runs = [shard for i, shard in enumerate(r["shard"] for r in rows) if i == 0 or rows[i - 1]["shard"] != shard]
    assert len(runs) == len(set(runs)) == 3  # each shard's samples come in one run
    assert sorted(r["index"] for r in rows) == list(range(len(expected)))


# -- errors --------------------------------------------------------------------------------------------------


def test_a_shard_missing_in_ais_is_an_object_not_found_error_naming_it(wids, client, module_bucket, packed, tmp_path):
    url, _ = packed
    doc = json.loads(read_bytes(url, client))
    missing = f"ais://{module_bucket}/packed/train-999999.tar"
    doc["shardlist"].insert(0, {"url": missing, "nsamples": 4, "filesize": 10240})
    local = tmp_path / "broken.wids.json"
    local.write_text(json.dumps(doc))
    cache = tmp_path / "cache"
    ds = wids.ShardListDataset(str(local), cache_dir=str(cache), transformations=[digest_sample])
    left = lambda: sorted(name for name in os.listdir(cache) if name.startswith("train-999999"))  # noqa: E731
    with no_external_commands():
        with pytest.raises(ObjectNotFoundError, match="train-999999.tar") as err:
            ds[0]
        assert err.value.url == missing
        assert left() == []  # nothing half-written
        assert ds[4]["key"]  # the next shard is fine
        with pytest.raises(ObjectNotFoundError, match="train-999999.tar"):
            list(_fork_loader(ds))
        # a worker stopped by the loader mid-copy may leave its temporary file (and wids its lock file), never
        # a file under the shard's cache name; the next copy of the shard removes the temporary file
        assert "train-999999.tar" not in left()
        with pytest.raises(ObjectNotFoundError, match="train-999999.tar"):
            ds[1]
        assert left() in ([], ["train-999999.tar.lock"])


def _fork_loader(ds):
    from torch.utils.data import DataLoader

    return DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")


def test_a_missing_descriptor_is_an_object_not_found_error_naming_it(wids, module_bucket, tmp_path):
    url = f"ais://{module_bucket}/nowhere/train.wids.json"
    with no_external_commands(), pytest.raises(ObjectNotFoundError, match="nowhere/train.wids.json"):
        wids.ShardListDataset(url, cache_dir=str(tmp_path))


# -- registration and routing --------------------------------------------------------------------------------


def _run(code: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180,
                         env={**{k: v for k, v in os.environ.items() if k not in ("AIS_WDS_ROUTE", "USE_AIS_FOR")},
                              "PYTHONPATH": str(REPO), **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


TABLE = """
import json
from wids.wids_dl import default_cmds
print(json.dumps({k: type(v).__name__ for k, v in default_cmds.items() if k in ("ais", "gs", "gcp", "s3", "az")}))
"""


def test_importing_ais_wds_imports_neither_wids_nor_torch():
    assert _run("import sys, ais_wds\nprint(sorted(m for m in ('wids', 'torch') if m in sys.modules))") == "[]"


@pytest.mark.parametrize("first, second", [("ais_wds", "wids"), ("wids", "ais_wds")])
def test_the_fetcher_is_registered_whichever_is_imported_first(wids, first, second):
    table = json.loads(_run(f"import {first}\nimport {second}\n" + TABLE))
    assert table == {"ais": "WidsFetcher", "gs": "str", "s3": "str"}  # clouds stay wids' own


def test_cloud_schemes_go_through_ais_only_when_routed(wids):
    table = json.loads(_run("import ais_wds, wids\n" + TABLE, AIS_WDS_ROUTE="gs:az"))
    assert table == {"ais": "WidsFetcher", "gs": "WidsFetcher", "gcp": "WidsFetcher", "az": "WidsFetcher",
                     "s3": "str"}
    assert json.loads(_run("import ais_wds, wids\n" + TABLE, AIS_WDS_WIDS="off")) == {"gs": "str", "s3": "str"}


def test_routing_off_again_gives_wids_its_own_handler_back(wids):
    own = wids.wids_dl.default_cmds["gs"]
    try:
        register_wids(schemes=["gs"])
        assert is_registered("gs") and is_registered("gcp")
    finally:
        register_wids()
    assert wids.wids_dl.default_cmds["gs"] is own and "gcp" not in wids.wids_dl.default_cmds
    assert is_registered("ais")


def test_ais_wds_register_registers_the_wids_fetcher_too(wids):
    try:
        ais_wds.register(schemes=["s3"])
        assert is_registered("s3") and is_registered("aws")
    finally:
        from webdataset.gopen import gopen_schemes

        for scheme in ("s3", "aws"):
            gopen_schemes.pop(scheme, None)
        register_wids()
    assert not is_registered("s3")


FAKE_WIDS = {
    "__init__.py": "__version__ = '0.9.0'\nfrom . import wids_dl\n",
    "wids_dl.py": textwrap.dedent("""
        HANDLERS = {"file": None, "gs": None, "s3": None}
        def download_file_no_log(remote, local, handlers=None):
            raise NotImplementedError
        download_file = download_and_open = download_file_no_log
    """),
}


def test_a_wids_with_another_handler_table_fails_loudly_naming_its_version(tmp_path):
    for name, text in FAKE_WIDS.items():
        (tmp_path / "wids").mkdir(exist_ok=True)
        (tmp_path / "wids" / name).write_text(text)
    code = """
        import ais_wds
        for attempt in range(2):
            try:
                import wids
            except ais_wds.ConfigError as e:
                print(e)
            else:
                print("imported")
    """
    out = _run(code, PYTHONPATH=f"{tmp_path}:{REPO}").splitlines()
    assert len(out) == 2 and all("wids 0.9.0" in line and "default_cmds" in line for line in out), out
    assert _run(code, PYTHONPATH=f"{tmp_path}:{REPO}", AIS_WDS_WIDS="off").splitlines() == ["imported"] * 2


# -- cloud buckets through AIS -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["s3", "gs", "az"])
def test_a_cloud_descriptor_from_ais_wds_index_is_read_through_ais_when_routed(wids, clouds_cluster, scheme,
                                                                                  tmp_path):
    client = Client(clouds_cluster.endpoint, retry_seconds=60)
    name = f"wids-{scheme}-{uuid.uuid4().hex[:8]}"
    clouds_cluster.run("cloud-bucket", f"{scheme}://{name}")
    rng = random.Random(scheme)
    expected: Digests = {}
    for s in range(2):
        members = []
        for j in range(6):
            key = f"c{s}-{j:02d}"
            body = {"bin": rng.randbytes(rng.randrange(1, 20_000)), "cls": str(j).encode()}
            members += [(f"{key}.{ext}", data) for ext, data in body.items()]
            expected[key] = {ext: _sha(data) for ext, data in body.items()}
        write_bytes(f"{scheme}://{name}/shards/train-{s:06d}.tar", _tar(members), client)
    url = _descriptor_url(_cli("--endpoint", clouds_cluster.endpoint, "index", f"{scheme}://{name}/shards/train-"))
    assert url == f"{scheme}://{name}/shards/train.wids.json"
    assert f"AIS_WDS_ROUTE={scheme}" in json.loads(read_bytes(url, client))["note"]
    client.bucket(f"{scheme}://{name}").evict(keep_md=True)  # AIS fetches the shards from the emulator
    try:
        register_wids(client, schemes=[scheme])
        with no_external_commands():
            ds = wids.ShardListDataset(url, cache_dir=str(tmp_path), transformations=[digest_sample])
            assert _by_key([ds[i] for i in range(len(ds))]) == expected
    finally:
        register_wids()
    assert not is_registered(scheme)
