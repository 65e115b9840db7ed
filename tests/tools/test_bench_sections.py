"""The benchmark's section registry (tools/ais_wds_bench/sections/) and its command line, without a cluster.

A section is one module found by name; these tests pin the order and names that `scripts/bench --sections`
takes, the contract every section module keeps, and that a failing section never stops the run.
"""

from __future__ import annotations

import types

import pytest

from ais_wds_bench import cli, report, sections

ORDER = ["stream", "small_objects", "random_access", "pack", "startup", "resume", "scale", "pack_engines", "loader"]


def test_sections_are_found_by_name_in_heading_order():
    names = sections.names()
    assert [n for n in names if n in ORDER] == ORDER  # later sections may follow
    numbers = [sections.header(n)[0] for n in names]
    assert numbers[:len(ORDER)] == list(range(1, len(ORDER) + 1)) and numbers == sorted(set(numbers))


def test_every_section_has_a_title_and_a_run_function():
    for module in sections.modules():
        name = module.__name__.rsplit(".", 1)[1]
        assert isinstance(module.TITLE, str) and module.TITLE, name
        assert callable(getattr(module, "run_stream" if name == "stream" else "run")), name


def test_the_goal_table_lists_every_goal_even_when_no_section_ran():
    got = report.goals({})
    assert len(got) >= 8
    assert all(g["measured"] is None and g["met"] is None for g in got)
    assert any(g["goal"].startswith("loader:") for g in got) and any(g["goal"].startswith("packing:") for g in got)


def test_a_section_that_raises_becomes_an_error_row(monkeypatch):
    def boom(client, scale):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sections, "load", lambda name: (types.SimpleNamespace(run=boom), None))
    got = sections.run_section("pack", client=None, scale=0.1, log=lambda _m: None)
    assert got["status"] == "error" and got["reason"] == "RuntimeError: disk full"
    assert "tools/ais_wds_bench/sections/pack.py:run()" in got["source"] and "disk full" in got["traceback"]


def test_a_section_that_fails_to_import_becomes_an_error_row(monkeypatch):
    monkeypatch.setattr(sections, "load", lambda name: (None, "Traceback ...\nImportError: no torch"))
    got = sections.run_section("loader", client=None, scale=0.1, log=lambda _m: None)
    assert got == {"status": "error", "reason": "import failed", "traceback": "Traceback ...\nImportError: no torch",
                   "source": sections.source("loader")}


def test_quick_sets_the_small_defaults_and_every_section_by_default():
    args = cli.parse_args(["--quick"])
    assert (args.scale, args.section_scale, args.shards, args.rounds) == (0.25, 0.1, 2, 2)
    assert args.sections == sections.names() and args.sizes == [1024, 100 * 1024, 1024 * 1024]
    args = cli.parse_args(["--quick", "--scale", "0.02", "--sections", "stream,pack", "--plots", "none"])
    assert (args.scale, args.section_scale, args.sections, args.plots) == (0.02, 0.02, ["stream", "pack"], "none")


def test_an_unknown_section_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--sections", "stream,strem"])
    assert "unknown section(s): strem" in capsys.readouterr().err
