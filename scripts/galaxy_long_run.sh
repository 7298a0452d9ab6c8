#!/usr/bin/env bash
# The longer galaxy_vae run (not part of the test suite): GalSim stamps -> train -> compare with
# the bivariate-normal galaxy model on held-out stamps, the seed's 97.2% comparison.
#
#   bash scripts/galaxy_long_run.sh [OUT_DIR] [N_STAMPS] [EPOCHS] [PROCESSES] [POPULATION] [AUGMENT]
#
# Defaults: runs/galaxy_long, 48,000 stamps (the last 10% held out), 62 epochs, 2 generator
# processes, the "prominent" population (`modelzoo data galaxy --help`), dihedral augmentation:
# about 4.6 hours on 2 CPU cores. Results: OUT_DIR/eval/metrics.json, OUT_DIR/eval/log_probs.npz
# and the figures.
#
# Measured on 2 CPU cores (fractions of the 1,200 held-out stamps on which the VAE's log p(x)
# beats the maximum-likelihood bivariate-normal model; the seed reports 97.2% on SDSS):
#
#   population  stamps  aug.  beta_nll  epochs  log p(x)          all    ellip.  lentic.  spiral  irreg.  isolated
#   default     12,000  no    0.5       16      IWAE-64           61.1%  36.7%   37.3%    73.2%   93.5%   50.6%
#   prominent   12,000  no    0.5       20      IWAE-128          87.3%  74.0%   72.8%    95.9%   100%    67.6%
#   prominent   12,000  no    0.25      24      IWAE-128          90.4%
#   prominent   12,000  no    0.25      24      IWAE-128, ref.30  91.5%  82.9%   80.5%    97.6%   100%    73.1%
#   prominent   12,000  no    0         24      IWAE-128, ref.30  90.9%  81.7%   79.3%    97.4%   100%    72.2%
#   prominent   48,000  yes   0.25      9       IWAE-128, ref.100 93.7%  85.0%   89.2%    97.5%   100%    77.8%
#   prominent   48,000  yes   0.25      18      + prior, Laplace  96.4%  90.9%   93.8%    98.9%   100%    82.2%
#   prominent   48,000  yes   0.25      24      + prior, Laplace  96.7%  90.9%   94.3%    99.3%   100%    82.2%
#   prominent   48,000  yes   0.25      40      + prior refits    97.1%  92.0%   95.5%    99.3%   100%    83.3%
#   prominent   48,000  yes   0.25      44      + prior refits    97.1%  92.0%   95.5%    99.3%   100%    83.3%
#   prominent   48,000  yes   0.25      56      + 4th cycle       97.17% 92.3%   95.5%    99.3%   100%    83.3%
#   prominent   48,000  yes   0.25      62      + 5th cycle       97.25% 92.0%   96.0%    99.5%   100%    83.3%
#   prominent   48,000  yes   0.25      62      + noise floor     98.67% 95.8%   97.7%    100%    100%    88.9%
#   fresh file, 1,200 stamps (seed 9001) 62      + noise floor     98.08% 93.4%   98.4%    99.8%   100%    89.7%
#   fresh file, 1,200 stamps (seed 9001) 62      + 5th cycle       96.83% 90.7%   97.4%    98.9%   100%    83.1%
#
# (+ noise floor: this script's defaults. The same 62-epoch model, its log p(x) conditioned on
# the file's noise map as the baseline's is (data.eval_noise_floor: auto): each pixel's variance
# is the larger of the decoder's and the pixel's known noise variance. The decoder learns one
# smooth variance map per galaxy and undershoots the measured noise on some pixels. On the
# held-out stamps the floor adds 35 nats per stamp on average (median 28; 24 on the 33 stamps
# lost without it), flips 17 and loses no winner: 16 lost, the nearest 4.3 nats short. The
# "fresh file" rows are 1,200 stamps generated after every choice was made: 98.08% with the
# floor (23 lost, binomial error +-0.4%; the nearest loser 1.4 nats short, the nearest winner
# 1.3 ahead), 96.83% without (38 lost: short of 97.2%). On the 300 stamps of the shipped entry's
# evaluation set (seed 4242): 97.33% with the floor, 96.7% without; all 1,500 fresh stamps with
# the floor: 97.93%, 31 lost. The rows without "noise floor" used the decoder's variance alone:
# --set data.eval_noise_floor=false.)
#
# (+ 5th cycle: this script's training schedule, without the noise floor: 33 of 1,200 stamps
# lost, what 97.2% allows, by the thinnest of margins: two losers are 0.0 and 0.5 nats short,
# two winners 1.6 and 2.5 nats ahead, and the estimate moves ~0.2 nats with its seed. 36 epochs with the
# standard-normal prior (1e-4 to 29, then 3e-5), then 8 at 3e-5 against the 32-component mixture
# prior refitted to the training posteriors before each epoch (the 40- and 44-epoch rows), then
# two short cycles, 1e-4 then 3e-5 (44-49 and 50-55: the 56-epoch row; 56-58 and 59-61), the
# prior still refitted before every epoch. Validation -ELBO: 7,208 (24 epochs) -> 7,152 (36) ->
# 7,130 (40, under the mixture: it saves ~20 nats of KL per stamp) -> 7,129 (44; 3e-5 epochs
# alone lose the same 35 stamps) -> 7,111 (56) -> 7,107 (62). Each cycle pays less on the
# losers than on average: 44 -> 56 +15.7 nats of log p(x) per stamp, +2.7 on the 35 losers
# (one flips); 56 -> 62 +3.3 and +0.2 (two flip, one winner is lost). The 1,200 stamps chose
# these schedules: on the 300 fresh stamps of the shipped entry's recipe the same comparison
# gives 96.7% (10 lost, none within 3 nats). 1,024 instead of 128 importance samples raise
# log p(x) of the 56 lowest-margin stamps of the 24-epoch model by 0.6 nats and flip none. The
# measured runs were one run resumed with extended schedules, the model given its
# then-unfitted prior at epoch 36; until the first refit the ELBO with a prior equals the
# fixed prior's to ~1e-5 nats, so this script's single run takes the same steps up to
# rounding.)
#
# (+ prior, Laplace: 40 of 1,200 stamps lost at 24 epochs; 97.2% allows 33. Nine more epochs at 3e-4 then 1e-4 (and six more for the last row), a 32-component
# mixture prior fitted to the training posteriors, and log p(x) sampled from the encoder mixed
# with a full-covariance Laplace approximation at the refined posterior mean. On the 9-epoch
# model and its 30 worst stamps, the prior alone gained 28 nats and the Laplace proposal 20.)
#
# (ref.N: N steps of per-stamp posterior refinement; the older rows' 30 steps were 0.05 posterior
# widths each, today's start at 0.3 and decay to 0. beta_nll 0 reaches the best mean log p(x), 143 nats above 0.25,
# but on the bright galaxies that win anyway; 0.25 wins on the most stamps.)
# On 12,000 stamps the validation loss stalled 500 nats above the training loss; with 48,000
# augmented stamps it ends below it (7,394 vs 7,406 nats). On the 110 stamps of the 24-epoch
# model with the lowest margin, refinement of 60 steps at the current step size instead of 30
# at the old one raised the VAE's wins from 6 to 24.
# Times (this script's defaults): stamps 6.5 min (2 processes, 123 stamps/s), training ~4.1 h
# (epochs of 205-265 s undisturbed, prior refits 22-66 s), prior fit 1 min, comparison 25 min
# (mostly refinement). The losses are faint, compact ellipticals and lenticulars with few
# neighbours: smooth profiles that the parametric model fits to within the noise at its best fit (no Occam
# cost), while the VAE's log p(x) pays ~100 nats for the information in z and its decoder is
# less precise than 7 fitted parameters on such profiles.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/galaxy_long}
N=${2:-48000}
EPOCHS=${3:-62}
PROCS=${4:-2}
POPULATION=${5:-prominent}
AUGMENT=${6:-dihedral}
PY=${PYTHON:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
mkdir -p "$OUT"

if [ ! -f "$OUT/stamps.h5" ]; then
  "$PY" -m modelzoo.cli data galaxy --output "$OUT/stamps.h5" --count "$N" --seed 0 \
    --processes "$PROCS" --population "$POPULATION"
fi
# Five learning-rate cycles: 1e-3 at batch 32, dropped x0.3 at 5 and x0.1 at 7; 3e-4 from 9,
# 1e-4 from 15; 3e-4 from 18, 1e-4 from 21, 3e-5 from 30; 1e-4 from 44, 3e-5 from 50; 1e-4 from
# 56, 3e-5 from 59 (decay epochs scale with EPOCHS / 62). beta_nll 0.25 (instead of the builder's 0.5) gives the faint, smooth galaxies,
# where the VAE loses, more of the gradient. Each stamp is seen in a random one of its 8
# orientations (data.augment): on 10,800 stamps without it the validation loss stalled 500 nats
# above the training loss. The model's prior p(z) is a 32-component Gaussian mixture: N(0, I)
# (and the ELBO the same as with the fixed prior) until epoch 36, refitted to the training
# stamps' posterior draws before each of the last 26 epochs (they train against it) and once more
# after training (finalize.json in the run folder).
"$PY" -m modelzoo.cli train galaxy_vae --data "$OUT/stamps.h5" --output "$OUT/run" \
  --epochs "$EPOCHS" --verbose 2 --set data.augment="$AUGMENT" \
  --model-config latent_dim=32 --model-config beta_nll=0.25 --model-config prior_components=32 \
  --set optimizer.learning_rate=1.0e-3 \
  --set "lr_schedule.decay_epochs=[$((EPOCHS * 5 / 62)),$((EPOCHS * 7 / 62)),$((EPOCHS * 9 / 62)),$((EPOCHS * 15 / 62)),$((EPOCHS * 18 / 62)),$((EPOCHS * 21 / 62)),$((EPOCHS * 30 / 62)),$((EPOCHS * 44 / 62)),$((EPOCHS * 50 / 62)),$((EPOCHS * 56 / 62)),$((EPOCHS * 59 / 62))]" \
  --set "lr_schedule.decay_factors=[0.3,0.1,0.3,0.1,0.3,0.1,0.03,0.1,0.03,0.1,0.03]" \
  --set data.prior_refit_from=$((EPOCHS * 36 / 62)) \
  --set data.eval_max_stamps=1200 --set data.eval_samples=128
# log p(x) with 128 importance samples from the encoder's posterior mixed with a Laplace
# approximation at a per-stamp refined posterior mean (100 ELBO steps per stamp: the encoder
# leaves a large amortisation gap on the faint galaxies, and 30 steps close only part of it),
# conditioned on the file's noise map like the baseline's (data.eval_noise_floor: auto).
"$PY" -m modelzoo.cli evaluate --run "$OUT/run" --data "$OUT/stamps.h5" --split val \
  --output "$OUT/eval" --set data.eval_refine_steps=100
