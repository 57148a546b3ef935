# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv when it is
# missing; the demos install the core package only (what `xadbench run` and its report need), the
# tests add the test, anomalib and ray extras (separate stamps: a demo never waits for them).
VENV := .venv
PY := $(VENV)/bin/python
CORE_STAMP := $(VENV)/.xadbench-core-installed
STAMP := $(VENV)/.xadbench-installed

.PHONY: demo demo-quick test test-fast bench browser latex
# The HTML report's browser test needs headless Chromium (Debian package `chromium`); the LaTeX
# tables' compile test needs pdflatex with booktabs and siunitx (texlive-latex-recommended,
# texlive-science).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CORE_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned to the build this project is tested with (on the dev machines it comes
	# from local disk); pyproject.toml only sets lower bounds, so nothing pulls another torch.
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e .
	touch $(CORE_STAMP)

# The anomalib and ray extras too, so that their tests run rather than skip; their resolver plan
# keeps the torch installed above.
$(STAMP): $(CORE_STAMP)
	$(PY) -m pip install -q -e ".[test,anomalib,ray]"
	touch $(STAMP)

# The demo: on one texture of the built-in data (wood: defects anywhere, so a centred blob gains
# nothing), random-init FCDD, grad and the AE learn from three real defects per type
# (semi-supervised, k=3) beside the reference maps (centre, pixelstats) and the sanity checks; the
# paired bootstrap then says which pixel AUC differences are significant. About 6 minutes on an idle
# 2-core machine (README: Runtimes). It ends with the path of the HTML report.
demo: $(CORE_STAMP)
	$(VENV)/bin/xadbench run --methods fcdd,grad,ae --dataset synthetic --protocol semi-supervised --k 3 \
		--no-pretrained --classes wood --out runs/demo
	$(VENV)/bin/xadbench compare runs/demo --metric pixel_auc
	@echo "Open the report in a browser: $(CURDIR)/runs/demo/report.html"

# The two reference maps only: about a minute once installed (under 3 minutes from a fresh clone
# with the torch wheel cached).
demo-quick: $(CORE_STAMP)
	$(VENV)/bin/xadbench run --methods pixelstats,centre --dataset synthetic --out runs/demo-quick
	@echo "Open the report in a browser: $(CURDIR)/runs/demo-quick/report.html"

browser:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

latex:
	kpsewhich siunitx.sty >/dev/null 2>&1 || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q \
		--no-install-recommends texlive-latex-base texlive-latex-recommended texlive-science)
	command -v pdftoppm >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends poppler-utils)

# The suite with the default thread count, then again with one thread the checks whose floats
# depend on how the work is split across threads (batch invariance, same seed same output); the
# whole suite twice would not fit the 10-minute budget on 2 cores.
test: $(STAMP) browser latex
	$(VENV)/bin/pytest -q
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q tests/test_contract.py -k "batch_is_per_image or same_seed_same_output"

# Every test not marked slow (`@pytest.mark.slow`: the end-to-end runs, Ray, the HTML page's
# runs and the deep methods' training checks), for the edit-and-test loop; `make test` runs them
# all.
test-fast: $(STAMP) browser latex
	$(VENV)/bin/pytest -q -m "not slow"

# Every bench, niced (it measures ratios within one process, so it may share the machine), then
# one table of their ratios with the CPU model.
bench: $(STAMP)
	nice -n 10 $(PY) bench/run_all.py
