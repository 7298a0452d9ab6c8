"""Speech decoding from human ECoG: fully connected networks classify 57 consonant-vowel
syllables from high-gamma activity of ventral sensorimotor cortex (seed: "Decoding speech from
human neural recordings"; Livezey, Bouchard & Chang, PLoS Comput Biol 15(9): e1007091, 2019,
arXiv:1803.09807).

Folder: ``models.py`` (``ecog_mlp``, ``ecog_logreg``), ``phonetics.py`` (syllables and their
articulatory features), ``reader.py`` (the published ``X``/``y`` layout), ``generator.py``
(synthetic vSMC high-gamma, ``modelzoo data ecog``), ``task.py`` (training and the paper's
evaluation: accuracies, confusions, the dendrogram), ``crossval.py`` (10-fold cross-validation
through the training path), ``recipes/``. Imports nothing heavy.
"""

from modelzoo.registry import Case, ModelSpec

_CITATION = (
    "Livezey, Bouchard & Chang, Deep learning as a tool for neural data analysis: speech "
    "classification and cross-frequency coupling in human sensorimotor cortex, PLoS Comput Biol "
    "15(9): e1007091 (2019), doi:10.1371/journal.pcbi.1007091, arXiv:1803.09807"
)
_LAYOUT = (
    "HDF5: X (N, channels, samples) or (N, channels, 1, samples) high-gamma amplitude "
    "(85 x 258 for subject 1), y (N,) syllable labels 0-56 (3 * consonant + vowel), optional "
    "y_consonant, y_vowel"
)
_PUBLISHED = (
    "Subject 1 (EC2), 10-fold cross-validation: deep network 55.1 +/- 2.3% syllable accuracy, "
    "logistic regression 44.6 +/- 3.2%, chance 1.8% (1/57); consonant 59.0% vs 51.2%, vowel "
    "85.9% vs 78.7%. Mean over 4 subjects 33.7% vs 28.0%."
)
_COMMON = dict(domain="neuroscience", problem="classification",
               inputs="(85, 258) high-gamma amplitude: electrodes x samples (200 Hz, -0.5 to "
               "+0.79 s around the consonant-vowel transition); both sizes configurable",
               outputs="softmax over 57 consonant-vowel syllables",
               citation=_CITATION, data_layout=_LAYOUT, published=_PUBLISHED)

# Search ranges of the paper's random search (BouchardLab/pylearn2, scripts/ecog/shared/
# config.json), as builder keywords and recipe keys. Dropout is the paper's include
# probability 0.1-1 as a rate; the learning rate is for Adam (the paper searched 1e-3-1e-1 for
# SGD with momentum), see the card.
_TRAINING_SPACE = {
    "model.input_dropout": {"type": "float", "low": 0.0, "high": 0.9},
    "model.weight_decay": {"type": "float", "low": 1e-7, "high": 1.0, "log": True},
    "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "train.batch_size": {"type": "int", "low": 100, "high": 512},
}
MLP_SPACE = {
    "model.hidden_layers": {"type": "int", "low": 1, "high": 3},
    "model.units_1": {"type": "int", "low": 57, "high": 1000},
    "model.units_2": {"type": "int", "low": 57, "high": 500, "when": "model.hidden_layers >= 2"},
    "model.units_3": {"type": "int", "low": 57, "high": 250, "when": "model.hidden_layers >= 3"},
    "model.activation": {"type": "categorical", "choices": ["tanh", "relu", "sigmoid"]},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.9},
    **_TRAINING_SPACE,
}

CASE = Case(
    name="ecog",
    title="Decoding speech (consonant-vowel syllables) from human ECoG",
    package=__name__,
    models=(
        ModelSpec(
            name="ecog_mlp",
            builder="modelzoo.ecog.models:ecog_mlp",
            summary="Fully connected network (0-3 tanh/ReLU/sigmoid layers) on high-gamma ECoG: "
            "57 syllables.",
            recipe="ecog_mlp.yaml",
            sample={"data": {"n_trials": 40, "seed": 7},
                    "config": {"units_1": 8},
                    "recipe": {"train.batch_size": 8}},
            search_space=MLP_SPACE,
            **_COMMON,
        ),
        ModelSpec(
            name="ecog_logreg",
            builder="modelzoo.ecog.models:ecog_logreg",
            summary="The paper's baseline: multinomial logistic regression on high-gamma ECoG.",
            recipe="ecog_logreg.yaml",
            sample={"data": {"n_trials": 40, "seed": 7}, "config": {},
                    "recipe": {"train.batch_size": 8}},
            search_space=dict(_TRAINING_SPACE),
            **_COMMON,
        ),
    ),
    tasks={"ecog_classification": "modelzoo.ecog.task:ECoGClassification"},
    data_command="modelzoo.ecog.generator",
    generator="modelzoo.ecog.generator:generate_ecog",
    card=(
        "Input: high-gamma (70-150 Hz) amplitude of each electrode, standardised per feature "
        "with the training rows' mean and variance (stored in the weights; the paper centres "
        "only). Splits: trials permuted with seed 20141210 and cut into 10 folds, 0.8 / 0.1 / "
        "0.1 train / validation / test per fold, as published (classes are not levelled per "
        "split). Optimiser: Adam (the paper: SGD with momentum, searched). Synthetic data: "
        "`modelzoo data ecog` simulates a vSMC electrode grid with somatotopic articulator "
        "patches (larynx, lips, jaw, tongue, larynx, dorsal to ventral; Bouchard et al., Nature "
        "2013): consonants by major articulator, place and manner, vowels by tongue, jaw and "
        "lips, with timing jitter, gain variability and smooth noise. Hyperparameter search: "
        "`modelzoo tune ecog_mlp --data FILE --trials N --workers W` over the published ranges."
    ),
)
