# FactBridge — quick start: `make demo`, then `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SHARED ?= ../shared/data
export OMP_NUM_THREADS ?= 2

.PHONY: install demo test lint bench eval eval-images bench-images eval-linkrisk bench-linkrisk eval-checkworthiness bench-checkworthiness train-checkworthiness clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/factbridge demo --serve

test: install
	$(BIN)/pytest -q -ra

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy src
	$(BIN)/mypy --strict src/factbridge/pipeline src/factbridge/workflow

bench: install
	$(BIN)/factbridge bench match --claims $(SHARED)/claim_retrieval/clef2022_2a_en/vclaims.jsonl \
		--queries $(SHARED)/claim_retrieval/clef2022_2a_en/CT2022-Task2A-EN-Dev-Test_Queries.tsv

eval: install
	$(BIN)/factbridge eval claim-retrieval --claims $(SHARED)/claim_retrieval/clef2022_2a_en/vclaims.jsonl \
		--queries $(SHARED)/claim_retrieval/clef2022_2a_en/CT2022-Task2A-EN-Dev-Test_Queries.tsv \
		--qrels $(SHARED)/claim_retrieval/clef2022_2a_en/CT2022-Task2A-EN-Dev-Test_QRELs.tsv

# images: the shipped screenshot set (tests/fixtures/images), report split; OCR needs Debian's tesseract-ocr
eval-images: install
	$(BIN)/factbridge eval images --split report

bench-images: install
	nice $(BIN)/factbridge bench images --workers 2

eval-linkrisk: install
	$(BIN)/factbridge eval linkrisk --data $(SHARED)/urls/urlhaus_filter --benign-from $(SHARED)

bench-linkrisk: install
	$(BIN)/factbridge bench linkrisk --data $(SHARED)/urls/urlhaus_filter --benign-from $(SHARED) --workers 2

# e5 vectors of the dev sets come from the committed test cache (no re-embedding).
eval-checkworthiness: install
	FACTBRIDGE_EMBED_CACHE_SEED=tests/fixtures/embeddings $(BIN)/factbridge eval checkworthiness --cached-only --data $(SHARED)/checkworthiness \
		--fixture tests/fixtures/checkworthiness_posts.jsonl --fixture tests/fixtures/checkworthiness_multilingual.jsonl

# Rebuilds the shipped model (fixed seed). Training vectors missing from the
# embedding cache are computed once (about 37k texts, 15-25 min on 2 cores).
train-checkworthiness: install
	FACTBRIDGE_EMBED_CACHE_SEED=tests/fixtures/embeddings $(BIN)/factbridge train checkworthiness --data $(SHARED)/checkworthiness \
		--fixture tests/fixtures/checkworthiness_posts.jsonl --fixture tests/fixtures/checkworthiness_multilingual.jsonl

bench-checkworthiness: install
	FACTBRIDGE_EMBED_CACHE_SEED=tests/fixtures/embeddings $(BIN)/factbridge bench checkworthiness --data $(SHARED)/checkworthiness --posts 2000

clean:
	rm -rf $(VENV) .factbridge .pytest_cache .mypy_cache .ruff_cache
