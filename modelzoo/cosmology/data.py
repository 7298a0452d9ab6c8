"""``modelzoo data cosmology``: convergence maps (the default), or ``modelzoo data cosmology
cosmoflow``: CosmoFlow volumes. Also the case's generator for the pretrained recipes
(:func:`generate`, ``kind="maps"`` or ``"cosmoflow"``)."""

from __future__ import annotations

import argparse
import os

from modelzoo.cosmology import cosmoflow_generator, generator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    generator.add_arguments(parser)
    kinds = parser.add_subparsers(dest="cosmology_kind", metavar="{cosmoflow}")
    volumes = kinds.add_parser("cosmoflow", help="3-D dark-matter volumes for cosmoflow "
                               "(TFRecords in the MLPerf HPC layout and HDF5)")
    cosmoflow_generator.add_arguments(volumes)


def run(args: argparse.Namespace) -> None:
    if getattr(args, "cosmology_kind", None) == "cosmoflow":
        cosmoflow_generator.run(args)
    else:
        generator.run(args)


def generate(path: str | os.PathLike, *, kind: str = "maps", **arguments):
    """Maps (:func:`~modelzoo.cosmology.generator.generate_mass_maps`) or volumes
    (:func:`~modelzoo.cosmology.cosmoflow_generator.generate_volumes`) at ``path``."""
    if kind == "cosmoflow":
        return cosmoflow_generator.generate_volumes(path, **arguments)
    return generator.generate_mass_maps(path, **arguments)
