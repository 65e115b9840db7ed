import os
import pickle

import pytest

from ais_wds import Client, ClientConfig, ConfigError


def test_endpoint_comes_from_argument_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("AIS_ENDPOINT", raising=False)
    assert Client().endpoint == "http://localhost:8080"
    monkeypatch.setenv("AIS_ENDPOINT", "http://10.0.0.1:51080/")
    assert Client().endpoint == "http://10.0.0.1:51080"
    assert Client("https://ais.example:443").endpoint == "https://ais.example:443"


def test_settings_come_from_environment(monkeypatch):
    monkeypatch.setenv("AIS_AUTHN_TOKEN", "sekrit-token")
    monkeypatch.setenv("AIS_MAX_CONN_POOL", "33")
    monkeypatch.setenv("AIS_READ_TIMEOUT", "7.5")
    monkeypatch.setenv("AIS_SKIP_VERIFY_CRT", "true")
    monkeypatch.setenv("AIS_WDS_RETRY_SECONDS", "12")
    c = ClientConfig.resolve("http://h:1")
    assert (c.token, c.max_pool_size, c.read_timeout, c.skip_verify, c.retry_seconds) == (
        "sekrit-token", 33, 7.5, True, 12.0)
    assert ClientConfig.resolve("http://h:1", token="arg").token == "arg"


def test_token_never_appears_in_repr_or_pickle_free_text(monkeypatch):
    monkeypatch.delenv("AIS_AUTHN_TOKEN", raising=False)
    c = Client("http://h:1", token="very-secret-token")
    assert "very-secret-token" not in repr(c)
    assert "very-secret-token" not in repr(c.config)
    assert c.config.token == "very-secret-token"
    for blob in (pickle.dumps(c), pickle.dumps(c.config)):  # a plain pickle (a file, a cache): no token
        assert b"very-secret-token" not in blob and b"secret-token" not in blob
    assert pickle.loads(pickle.dumps(c)).config.token is None
    assert pickle.loads(pickle.dumps(c.config)).token is None


@pytest.mark.parametrize("kw", [{"max_pool_size": -1}, {"read_timeout": -2.0}, {"retry_seconds": -1}])
def test_invalid_settings_raise_configerror(kw):
    with pytest.raises(ConfigError):
        Client("http://h:1", **kw)


def test_endpoint_without_scheme_is_rejected_with_a_hint():
    with pytest.raises(ConfigError, match="http://"):
        Client("localhost:8080")


def test_client_pickles_only_its_config_and_rebuilds_the_sdk_client(monkeypatch):
    c = Client("http://127.0.0.1:9", token="t0k")
    sdk_before = c.sdk
    monkeypatch.delenv("AIS_AUTHN_TOKEN", raising=False)
    c2 = pickle.loads(pickle.dumps(c))
    assert c2.config.token is None  # a plain pickle leaves the token out (tests/test_auth.py)
    from multiprocessing import context

    context.set_spawning_popen(object())  # as when a worker process is being started
    try:
        blob = pickle.dumps(c)
        c2 = pickle.loads(blob)
    finally:
        context.set_spawning_popen(None)
    assert b"aistore" not in blob and b"urllib3" not in blob  # the SDK client was built (above): not pickled
    assert c2 == c and c2.config.token == "t0k"
    assert c2._connections.peek() is None  # nothing of the parent's connections travels
    # rebuilt from the config: a new SDK client for the same endpoint with the same token
    rebuilt = c2.sdk
    assert rebuilt is not sdk_before
    assert rebuilt._request_client.base_url == sdk_before._request_client.base_url == "http://127.0.0.1:9/v1"
    assert rebuilt._request_client.token == "t0k"


def test_sdk_client_is_rebuilt_after_fork():
    c = Client("http://127.0.0.1:9")
    parent_sdk = id(c.sdk)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        fresh = c._connections.peek() is None  # dropped by the at-fork hook, before any use
        os.write(w, b"1" if fresh and id(c.sdk) != parent_sdk else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
