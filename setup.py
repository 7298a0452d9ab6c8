"""Packaging for modelzoo: a Keras 3 model zoo for deep learning in science."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="modelzoo",
    version="0.1.0",
    description="Keras 3 model zoo for the LBNL deep-learning-for-science case studies",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The shipped weights (pretrained/) install as package data, modelzoo/_pretrained, so that
    # modelzoo.get(name, weights="default") works from a wheel as from a checkout.
    packages=find_packages(include=["modelzoo", "modelzoo.*"]) + ["modelzoo._pretrained"],
    package_dir={"modelzoo._pretrained": "pretrained"},
    package_data={"": ["recipes/*.yaml", "*.slha", "*.md"],
                  "modelzoo._pretrained": ["*.h5", "manifest.json"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "tensorflow-probability>=0.25,<0.26",
        "h5py>=3.10",
        "numpy>=1.26",
        "scipy>=1.11",
        "pyyaml>=6.0",
        "scikit-learn>=1.4",
        "matplotlib>=3.8",
        "threadpoolctl>=3.1",
        "pooch>=1.8",
    ],
    extras_require={
        # Field libraries of the synthetic data generators, CF-netCDF input, the search.
        "science": ["pythia8mc>=8.317", "galsim>=2.8", "pyccl>=3.3", "xarray>=2026.9",
                    "netCDF4>=1.7", "optuna>=5.0"],
        "horovod": ["horovod==0.28.1"],
        "dev": ["pytest>=8", "pytest-timeout", "ruff", "nbmake", "ipykernel", "nbformat"],
    },
    entry_points={"console_scripts": ["modelzoo=modelzoo.cli:main"]},
)
