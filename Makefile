# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv when it is
# missing and install the project into it.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xadbench-installed

.PHONY: demo test bench

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned to the build this project is tested with (on the dev machines it comes
	# from local disk); pyproject.toml only sets lower bounds, so nothing pulls another torch.
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xadbench run --methods fcdd,grad,ae --dataset synthetic --no-pretrained --out runs/demo

test: $(STAMP)
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) bench/pixel_auc.py
	$(PY) bench/fcdd_train.py
