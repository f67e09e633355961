# transformer-lit: `make book` builds the book, `make test` runs every test.
# Both create .venv with the pinned toolchain first (only Python 3.11 and pip are needed).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
QUICK_OUT := _build/quick

.PHONY: book test lab export clean-nbs check-sync nbval quick-book pytest site-test benchmark lock clean help \
        translations check-translations notebooks-zh

help:
	@echo "make book   - set up .venv, export, execute every notebook (full settings), build _build/html"
	@echo "make test   - set up .venv, then: package/notebook sync, nbval, quick book build (-W), tests/"
	@echo "make lab    - set up .venv and open JupyterLab on nbs/"
	@echo "make export - write transformer_lit/ from the notebooks;  make clean-nbs - strip outputs/metadata"
	@echo "make translations - after editing English text: refresh locales/zh_CN (new/changed messages to translate)"
	@echo "make notebooks-zh - write nbs_zh/: the chapter notebooks with Chinese markdown, to open in JupyterLab"

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# One install from the lock file (torch==2.13.0: pip picks the CPU build where one is offered locally).
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

export: $(STAMP)
	$(BIN)/nbdev-export

clean-nbs: $(STAMP)
	$(BIN)/jupyter nbconvert --clear-output --inplace --log-level=WARN nbs/*.ipynb
	$(BIN)/nbdev-clean

# tools/book_cache.py first drops the cached outputs of every notebook whose imported modules, data or
# mode changed since the last build (jupyter-cache alone keys a notebook on its own code cells only).
# The Chinese site is the same build with the catalogs of locales/zh_CN: it reuses the English build's
# executed notebooks (same code cells, same jupyter-cache) and lands in _build/html/zh_CN/.
book: $(STAMP) export
	$(BIN)/python tools/book_cache.py
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(BIN)/python tools/i18n.py config > .zh_config.yml
	$(BIN)/jupyter-book build . -W -n --keep-going --config .zh_config.yml --path-output _build/zh_CN
	rm -rf _build/html/zh_CN && cp -r _build/zh_CN/_build/html _build/html/zh_CN
	@echo ""
	@echo "Book built. Open: file://$(CURDIR)/_build/html/index.html (中文版: _build/html/zh_CN/index.html)"

# After editing English text: extract the messages again and merge them into locales/zh_CN (a changed
# message turns fuzzy, a new one is added empty); then translate what `check-translations` lists.
translations: $(STAMP)
	$(BIN)/python tools/i18n.py update

notebooks-zh: $(STAMP)
	$(BIN)/python tools/i18n.py notebooks nbs_zh

# ---- tests -------------------------------------------------------------------------------
check-sync: $(STAMP)
	$(BIN)/python tools/check_sync.py

check-translations: $(STAMP)
	$(BIN)/python tools/i18n.py check

# Two notebooks at a time (pytest-xdist; `loadscope` keeps each notebook's cells in order on one worker),
# one thread each: the two cores both work and do not fight over threads.
nbval: $(STAMP)
	TRANSFORMER_LIT_QUICK=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
	    -n 2 --dist loadscope nbs/

# The quick book checks that every page builds with -W and renders in a browser. It does not execute
# the notebooks again (nbval just did, and executing twice would double the test time): the executed
# book, with its figures and the cells that assert published results, is `make book`, which CI runs.
# The two languages build side by side (one process each, so the two cores are both used); the Chinese
# build's log is printed if it fails.
quick-book: $(STAMP)
	sed 's/^  execute_notebooks: cache/  execute_notebooks: "off"/' _config.yml > .quick_config.yml
	grep -q 'execute_notebooks: "off"' .quick_config.yml
	$(BIN)/python tools/i18n.py config --quick > .zh_config.yml
	mkdir -p $(QUICK_OUT)
	$(BIN)/jupyter-book build . -W -n --keep-going --config .zh_config.yml --path-output $(QUICK_OUT)/zh_CN \
	    > $(QUICK_OUT)/zh_CN.log 2>&1 & zh=$$!; \
	$(BIN)/jupyter-book build . -W -n --keep-going --config .quick_config.yml --path-output $(QUICK_OUT); en=$$?; \
	wait $$zh; z=$$?; tail -3 $(QUICK_OUT)/zh_CN.log; \
	[ $$z -eq 0 ] || { echo "== the Chinese build failed:"; grep -E "WARNING|ERROR" $(QUICK_OUT)/zh_CN.log | head -50; }; \
	[ $$en -eq 0 ] && [ $$z -eq 0 ]
	rm -rf $(QUICK_OUT)/_build/html/zh_CN && cp -r $(QUICK_OUT)/zh_CN/_build/html $(QUICK_OUT)/_build/html/zh_CN

# Two test files at a time (the browser test beside the rest), one thread each.
pytest: $(STAMP)
	TRANSFORMER_LIT_QUICK=1 OMP_NUM_THREADS=1 TRANSFORMER_LIT_SITE=$(QUICK_OUT)/_build/html $(BIN)/python -m pytest \
	    -p no:cacheprovider -n 2 --dist loadfile tests/

test: check-sync check-translations nbval quick-book pytest
	@echo "All tests passed."

# The browser test against the full book (run by .ci/run after `make book`).
site-test: $(STAMP)
	TRANSFORMER_LIT_SITE_EXECUTED=1 TRANSFORMER_LIT_SITE=_build/html $(BIN)/python -m pytest -p no:cacheprovider tests/test_site.py

# jupyterlab-myst (in the lock) renders the notebooks' MyST markdown ({cite:p}, {doc}, {term}, directives)
# in the lab as in the book; the check fails early if the extension is missing from the environment.
# JupyterLab refuses to run as root without --allow-root; containers often run as root, so root gets it.
lab: $(STAMP)
	$(BIN)/jupyter labextension list 2>&1 | grep -q jupyterlab-myst || { echo "error: jupyterlab-myst is not installed in $(VENV)"; exit 1; }
	$(BIN)/jupyter lab --notebook-dir=nbs $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

benchmark: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# Regenerate requirements.lock from the current .venv (after changing pyproject ranges). Local version
# labels such as torch's "+cpu" are dropped: they exist on some mirrors but not on the public index.
lock: $(STAMP)
	@{ echo "# Exact, tested versions of everything the Makefile installs."; \
	   echo "# Tested on Linux x86_64 with CPython 3.11 (pip only). pyproject.toml keeps ranges;"; \
	   echo "# regenerate this file with 'make lock' after changing them."; \
	   echo "# torch==2.13.0 is the public release (with a local CPU wheel, pip takes that one)."; \
	   $(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^transformer.lit' | sed -E 's/^([^=]+==[^+]+)\+[A-Za-z0-9.]+$$/\1/'; \
	 } > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock

clean:
	rm -rf _build
