"""Daya Bay: a denoising convolutional autoencoder whose code separates antineutrino (IBD)
pairs from accidental background without labels, and the supervised CNN reference (seed:
"Clustering Daya Bay data with denoising autoencoders"; Racah et al., ICMLA 2016,
arXiv:1601.07621).

Folder: ``models.py`` (builders, ``encode``), ``reader.py`` (the dayabay-learn layout as one
labelled stream), ``generator.py`` (a cylindrical 8 x 24 PMT detector, ``modelzoo data
dayabay``), ``analysis.py`` (masked-pixel filling, probe accuracies, silhouette, t-SNE),
``task.py`` (training and the comparisons), ``recipes/``.
"""

from modelzoo.registry import Case, ModelSpec

_CITATION = (
    "Racah, Ko, Sadowski, Bhimji, Tull, Oh, Baldi, Prabhat, Revealing Fundamental Physics from "
    "the Daya Bay Neutrino Experiment using Deep Neural Networks, ICMLA 2016, arXiv:1601.07621; "
    "Kohn, Racah, Tull, Bhimji in Prabhat, A look at deep learning for science, O'Reilly 2017; "
    "Vincent et al., Extracting and Composing Robust Features with Denoising Autoencoders, "
    "ICML 2008"
)
_LAYOUT = (
    "HDF5 (dayabay-learn): ibd_pair_data and accidentals_bg_data (optionally muon_data, "
    "flasher_data), rows of >= 768 floats = 4 x 8 x 24 maps (prompt charge, prompt time, "
    "delayed charge, delayed time), then metadata; or (N, 4, 8, 24)"
)

CASE = Case(
    name="dayabay",
    title="Daya Bay: learned features of antineutrino events and their background",
    package=__name__,
    models=(
        ModelSpec(
            name="dayabay_dae",
            builder="modelzoo.dayabay.models:dayabay_dae",
            summary="Denoising convolutional autoencoder of 8x24 PMT maps with a 16-d code.",
            domain="particle physics",
            problem="representation learning",
            inputs="(8, 24, 4) PMT maps: prompt charge, prompt time, delayed charge, delayed "
                   "time (log charge, time in 10 ns about the trigger's median)",
            outputs="reconstruction (8, 24, 4); `encode()` gives the 16-d code",
            citation=_CITATION,
            data_layout=_LAYOUT,
            recipe="dayabay_dae.yaml",
            sample={"data": {"n_ibd": 8, "n_accidental": 8, "n_muon": 4, "n_flasher": 4,
                             "seed": 7},
                    "config": {"filters": 4, "code_size": 4},
                    "recipe": {"train.batch_size": 4}},
            published=(
                "Seed article (Figures 13-14): one third of the pixels zeroed, a 16-d encoding "
                "whose t-SNE separates IBD signal from accidental background, trained on real "
                "data without labels; no separation number was published."
            ),
            search_space={
                "model.code_size": {"type": "int", "low": 4, "high": 32},
                "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3,
                                            "log": True},
            },
        ),
        ModelSpec(
            name="dayabay_cnn",
            builder="modelzoo.dayabay.models:dayabay_cnn",
            summary="Supervised CNN classifying Daya Bay PMT-map pairs into event classes.",
            domain="particle physics",
            problem="classification",
            inputs="(8, 24, 4) PMT maps, as dayabay_dae",
            outputs="softmax over (ibd, accidental, muon, flasher)",
            citation=_CITATION,
            data_layout=_LAYOUT,
            recipe="dayabay_cnn.yaml",
            sample={"data": {"n_ibd": 8, "n_accidental": 8, "n_muon": 4, "n_flasher": 4,
                             "seed": 7},
                    "config": {"filters": 4, "dense_units": 8},
                    "recipe": {"train.batch_size": 4}},
            published=(
                "Racah et al. 2016: a CNN classifies Daya Bay triggers (muon, IBD prompt, IBD "
                "delayed, flasher, other) with greater than 97% accuracy."
            ),
            search_space={
                "model.filters": {"type": "categorical", "choices": [16, 32, 64]},
                "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3,
                                            "log": True},
            },
        ),
    ),
    tasks={
        "dayabay_denoising": "modelzoo.dayabay.task:DayaBayDenoising",
        "dayabay_classification": "modelzoo.dayabay.task:DayaBayClassification",
    },
    data_command="modelzoo.dayabay.generator",
    generator="modelzoo.dayabay.generator:generate_dayabay",
    card=(
        "Synthetic data: `modelzoo data dayabay` simulates one antineutrino detector, a "
        "scintillator cylinder seen by 8 rings x 24 columns of PMTs: point-like light with "
        "inverse-square and angular acceptance, Poisson photostatistics, PMT time smearing; IBD "
        "pairs (positron, then an 8 MeV Gd capture ~28 us later a few cm away) against "
        "accidental pairs (two uncorrelated singles), plus muon and flasher pairs. The paper's "
        "CNN classified single triggers into five classes; the zoo's classifies the pair maps "
        "of the dayabay-learn layout into the classes a file holds."
    ),
)
