"""``PackOptions``: one settings object, one name per setting; the names of before still work, warned (pure)."""

from __future__ import annotations

import warnings

import pytest

import ais_wds.pack
from ais_wds.errors import ConfigError
from ais_wds.pack import PackOptions, pack
from ais_wds.pack.options import PLAN_FIELDS, resolve
from ais_wds.pack.plan import KeyRule, SourceObject, make_plan


def test_sizes_and_key_specs_are_parsed_into_the_one_field_each():
    given = PackOptions(shard_size="64MiB", key_rule="stem", exts=[".JPG", "cls", " "], part=[1, 3])
    assert given == PackOptions(shard_size=64 << 20, key_rule=KeyRule("stem"), exts=("jpg", "cls"), part=(1, 3))
    assert given.shard_size == 67108864 and given.key_rule.spec == "stem"
    assert PackOptions(key_rule="wds") == PackOptions()


@pytest.mark.parametrize("bad,match", [
    ({"engine": "gpu"}, r"engine must be one of \('auto', 'client', 'cluster'\), got 'gpu'"),
    ({"missing_extension": "sometimes"}, "missing_extension must be one of"),
    ({"shard_size": "lots"}, "not a size: 'lots'"),
    ({"samples_per_shard": 0}, "must be positive"),
    ({"key_rule": "(a)(b)"}, "must have exactly one group, it has 2"),
])
def test_invalid_values_are_refused_when_the_options_are_made(bad, match):
    with pytest.raises(ConfigError, match=match):
        PackOptions(**bad)


def test_plan_fields_ignore_how_a_run_writes_and_see_what_decides_the_plan():
    base = PackOptions(shard_size="1MiB", shuffle_seed=4)
    run_only = PackOptions(shard_size="1MiB", shuffle_seed=4, workers=2, resume=True, part=(1, 2), engine="client",
                           index="ais://x/i.msgpack", dry_run=True, overwrite=True, parallel_shards=3)
    assert run_only.plan_fields() == base.plan_fields() == (1 << 20, None, KeyRule(), (), "warn", 4, 0)
    assert PackOptions(shard_size="1MiB", shuffle_seed=5).plan_fields() != base.plan_fields()
    assert len(PLAN_FIELDS) == 7


def test_overrides_are_fields_and_an_unknown_name_is_a_config_error():
    assert resolve(PackOptions(workers=2), {"resume": True}) == PackOptions(workers=2, resume=True)
    assert resolve(None, {}) == PackOptions()
    with pytest.raises(ConfigError, match="unexpected keyword argument 'shards'") as err:
        resolve(None, {"shards": 3})
    assert "fields of PackOptions" in str(err.value)


@pytest.mark.parametrize("old,new,value", [("key", "key_rule", "stem"), ("shuffle", "shuffle_seed", 7)])
def test_the_keyword_names_of_before_still_work_with_a_deprecation_warning(old, new, value):
    with pytest.warns(DeprecationWarning, match=f"pack\\({old}=...\\) is deprecated; use {new}="):
        got = resolve(None, {old: value})
    assert got == PackOptions(**{new: value})
    with pytest.raises(ConfigError, match=f"{old} and {new} name the same setting"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        resolve(None, {old: value, new: value})


def test_settings_is_the_old_name_of_options():
    with pytest.warns(DeprecationWarning, match="pack\\(settings=...\\) is deprecated; use options="):
        assert resolve(None, {"settings": PackOptions(workers=3), "resume": True}) == PackOptions(workers=3,
                                                                                                 resume=True)


def test_pack_settings_is_pack_options_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="PackSettings is PackOptions now"):
        assert ais_wds.pack.PackSettings is PackOptions
    from ais_wds.pack import run

    with pytest.warns(DeprecationWarning):
        assert run.PackSettings is PackOptions


def test_a_plan_made_with_other_planning_options_is_refused_before_any_io():
    plan = make_plan([SourceObject("ais://src/a.jpg", "a.jpg", 3)], "ais://dst/t-%d.tar", PackOptions(shuffle_seed=1))
    endpoint = "http://127.0.0.1:9"  # nothing listens there: any request would fail
    with pytest.raises(ConfigError, match="the given plan was made with other planning settings"):
        pack("ais://src/", "ais://dst/t-%d.tar", endpoint, plan=plan, shuffle_seed=2)
    report = pack("ais://src/", "ais://dst/t-%d.tar", endpoint, plan=plan, shuffle_seed=1, workers=2, dry_run=True)
    assert report.dry_run and report.plan is plan and report.written == [] and report.engine == "client"
