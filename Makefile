# Every target sets up .venv itself (idempotent: redone only when the pins change).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

VENV_FS2 := .venv-fairseq2
VENV_DOCS := .venv-docs
STAMP_DOCS := $(VENV_DOCS)/.installed
STAMP_FS2 := $(VENV_FS2)/.installed

.PHONY: setup demo pretrained pretrained-real test test-slow test-gpu test-interop bench docs clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "cssl needs Python 3.11+, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cssl demo --out $(DEMO_DIR)

# The shipped tiny pretrained checkpoint (configs/pretrain/tiny-30h.yaml): the 30 h corpus (about
# 6-14 min), the 40,000-update schedule, then the half-precision release into cssl/assets/. The
# training state is kept in checkpoints/tiny-30h/ (the committed one holds update 40,000, so the
# release is rebuilt in seconds; delete it to train from scratch: about 5 h on one thread of a core
# with AVX512_BF16, 0.3-0.37 s per update, about 1 s per update on 2 cores without bf16). The run
# resumes where it stopped (resume=auto), so the hours can be spent in sittings.
pretrained: $(STAMP)
	test -f runs/corpus-30h/corpus.json || $(BIN)/cssl data synth runs/corpus-30h --hours 30 --seed 1 --speakers 200
	mkdir -p runs/pretrain-30h
	test -f runs/pretrain-30h/last.pt || test ! -f checkpoints/tiny-30h/last.pt || cp checkpoints/tiny-30h/last.pt runs/pretrain-30h/
	$(BIN)/cssl pretrain configs/pretrain/tiny-30h.yaml threads=1
	mkdir -p checkpoints/tiny-30h && cp runs/pretrain-30h/last.pt checkpoints/tiny-30h/last.pt
	$(BIN)/cssl release runs/pretrain-30h/last.pt cssl/assets/tiny-pretrained.pt

# The shipped real-speech checkpoint (cssl/assets/tiny-real-pretrained.pt and its model card): needs the
# development recordings in ../shared/data (Mini LibriSpeech, Speech Commands half A, FSDD). The pool of
# every non-test speaker, the validation alignments, then configs/pretrain/tiny-real-continue.yaml (the
# shipped synthetic checkpoint continued for 6,000 updates, about 1.5 h on one thread; resumes where it
# stopped) and the release, which records the speakers heard.
pretrained-real: $(STAMP)
	$(BIN)/python benchmarks/real_corpora.py
	$(BIN)/cssl pretrain configs/pretrain/tiny-real-continue.yaml threads=1
	$(BIN)/cssl release runs/pretrain-real-continue/last.pt cssl/assets/tiny-real-pretrained.pt

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not gpu and not interop"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-slow: pytest collected no tests" >&2; fi; exit $$rc

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m "gpu"

# fairseq2 0.8.1 pins torch 2.9.1, so it gets its own environment (about 7 GB, 2-3 min with a
# warm network), in which tests/interop/fairseq2_peer.py builds and loads models; the tests
# compare them with cssl's. fairseq2 needs the system's libsndfile (Debian: libsndfile1).
$(STAMP_FS2): requirements-fairseq2.lock
	@ldconfig -p | grep -q libsndfile.so || { echo "make test-interop: fairseq2 needs libsndfile; install it (Debian/Ubuntu: apt-get install libsndfile1)" >&2; exit 1; }
	test -x $(VENV_FS2)/bin/python || $(PYTHON) -m venv $(VENV_FS2)
	$(VENV_FS2)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-fairseq2.lock
	touch $(STAMP_FS2)

test-interop: $(STAMP) $(STAMP_FS2)
	CSSL_FAIRSEQ2_PYTHON=$(VENV_FS2)/bin/python $(BIN)/python -m pytest -q -m "interop"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-interop: pytest collected no tests" >&2; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "transformers==5.24.0" "pocketsphinx==5.1.1"
	$(BIN)/python benchmarks/run_all.py --out runs/bench/summary.md

# The documentation site (MkDocs + Material + mkdocstrings) in its own environment; --strict makes a
# broken link, a missing page or an API reference that does not resolve an error.
$(STAMP_DOCS): requirements-docs.lock
	test -x $(VENV_DOCS)/bin/python || $(PYTHON) -m venv $(VENV_DOCS)
	$(VENV_DOCS)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-docs.lock
	touch $(STAMP_DOCS)

docs: $(STAMP_DOCS)
	$(VENV_DOCS)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(VENV_FS2) $(VENV_DOCS) site build *.egg-info
