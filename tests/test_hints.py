"""Every hint works when pasted: the suggestion an error or warning makes is run, as the user
would run it, and must do what it says. A successful command prints no stray TensorFlow error
line."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from modelzoo import cli


def _run(capsys, argv: list[str]) -> tuple[int, list[str]]:
    code = cli.main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_the_climate_detector_grid_hint_works_when_pasted(tmp_path, capsys):
    images = tmp_path / "images.h5"
    assert cli.main(["data", "climate", "images", "--output", str(images), "--images",
                     "4"]) == 0  # the generator's default grid, 96 x 144
    capsys.readouterr()
    code, err = _run(capsys, ["evaluate", "climate_detector", "--weights", "default", "--data",
                              str(images)])
    assert code == 2
    assert err[0].startswith("modelzoo: warning: ")  # another grid than the entry's data
    assert "--height 64" in err[0] and "--width 96" in err[0]
    hint = re.search(r"\(e\.g\. (--set \S+)\)$", err[-1])
    assert hint, err[-1]
    code, err = _run(capsys, ["evaluate", "climate_detector", "--weights", "default", "--data",
                              str(images), *shlex.split(hint.group(1))])
    assert code == 0, err
    # the data command the warning names writes images like the entry's: no warning, no hint
    code, err = _run(capsys, ["evaluate", "climate_detector", "--weights", "default", "--data",
                              str(images)])
    matching = re.search(r"Matching data: modelzoo (data .*?) \(or ", err[0])
    argv = shlex.split(matching.group(1).replace("FILE", str(tmp_path / "like.h5")))
    assert cli.main(argv + ["--images", "4"]) == 0
    capsys.readouterr()
    code, err = _run(capsys, ["evaluate", "climate_detector", "--weights", "default", "--data",
                              str(tmp_path / "like.h5")])
    assert code == 0 and not any("warning" in line for line in err), err


@pytest.mark.slow  # three data sets of 128 x 128 maps, three evaluations
def test_data_unlike_a_shipped_entrys_is_named_with_the_flags_that_match(tmp_path, capsys):
    maps = tmp_path / "maps.h5"
    assert cli.main(["data", "cosmology", "--output", str(maps), "--maps-per-class", "8"]) == 0
    capsys.readouterr()
    code, err = _run(capsys, ["evaluate", "cosmo_dcae", "--weights", "default", "--data",
                              str(maps)])
    assert code == 0
    warning = err[0]
    assert warning.startswith(f"modelzoo: warning: {maps} was made with shape_noise=true, "
                              "smoothing_arcmin=2.34; cosmo_dcae.synthetic_v1 was trained")
    command = re.search(r"Matching data: modelzoo (data .*?) \(or modelzoo (data .*)\)$",
                        warning)
    flags, from_entry = (shlex.split(c.replace("FILE", str(tmp_path / f"{n}.h5")))
                         for n, c in zip(("flags", "entry"), command.groups()))
    assert "--no-shape-noise" in flags and "--smoothing-arcmin" in flags
    for name, argv in (("flags", flags), ("entry", from_entry)):
        assert cli.main(argv + (["--maps-per-class", "8"] if name == "flags" else [])) == 0
        capsys.readouterr()
        code, err = _run(capsys, ["evaluate", "cosmo_dcae", "--weights", "default", "--data",
                                  str(tmp_path / f"{name}.h5")])
        assert code == 0 and not any("warning" in line for line in err), err


def test_from_entry_refuses_what_it_cannot_do_in_one_line(tmp_path, capsys):
    code, err = _run(capsys, ["data", "--from-entry", "cosmo_dcae", "--output",
                              str(tmp_path / "x.h5")])
    assert code == 2 and err == ["modelzoo: error: 'cosmo_dcae' is a model, not a manifest "
                                 "entry; its entries: cosmo_dcae.synthetic_v1 (all entries: "
                                 "modelzoo pretrained list)"]
    code, err = _run(capsys, ["data"])
    assert code == 2 and err[-1].endswith("data needs a CASE (modelzoo data --help) or "
                                          "--from-entry ENTRY")


@pytest.mark.slow
def test_a_successful_climate_detector_run_prints_no_tensorflow_error_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    images = tmp_path / "images.h5"
    base = [sys.executable, "-m", "modelzoo.cli"]
    subprocess.run(base + ["data", "climate", "images", "--output", str(images), "--images",
                           "4"], env=env, check=True, capture_output=True)
    result = subprocess.run(
        base + ["train", "climate_detector", "--data", str(images), "--epochs", "1",
                "--batch-size", "2", "--output", str(tmp_path / "run"), "--set",
                "data.grid_cell=8", "--model-config", "filters=[16,32,64]", "--verbose", "0"],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines[-1].startswith("trained climate_detector: epochs 0->1"), lines
    assert not [line for line in lines if re.match(r"[EF]\d{4} ", line)], lines


def test_one_flag_name_means_one_thing_across_data_commands():
    import argparse
    import importlib

    from modelzoo import registry

    seen: dict[str, tuple] = {}
    for name, case in registry.cases().items():
        if not case.data_command:
            continue
        parser = argparse.ArgumentParser()
        importlib.import_module(case.data_command).add_arguments(parser)
        parsers = [(name, parser)]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
        for where, p in parsers:
            for action in p._actions:
                for flag in action.option_strings:
                    kind = (type(action).__name__, getattr(action.type, "__name__", None))
                    if flag in ("-h", "--help"):
                        continue
                    first = seen.setdefault(flag, (kind, where))
                    assert first[0] == kind, f"{flag}: {first[1]} {first[0]} but {where} {kind}"
