# kiln - the README's commands. `make demo` and `make test` install what they need
# (Debian packages through apt-get, Python packages into a virtualenv in the build tree).

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
VENV       ?= $(BUILD)/venv
BENCH_VENV ?= $(BUILD)/bench-venv
BENCH_ARGS ?=
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
MAKEFLAGS  += --no-print-directory

.PHONY: docs all deps build asan tsan venv test test-unit test-python test-asan test-tsan demo bench format format-check install clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build $(BUILD) -j$(JOBS)

# AddressSanitizer + UndefinedBehaviorSanitizer, optimized so whole-network tests stay quick.
asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j$(JOBS)

# ThreadSanitizer: the library and the unit tests (many contexts of one engine on many threads).
tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE_THREAD=ON \
	      -DKILN_BUILD_TOOLS=OFF -DKILN_BUILD_EXAMPLES=OFF $(CMAKE_ARGS)
	cmake --build $(TSAN_BUILD) -j$(JOBS) --target test_dynamic test_runtime

$(VENV)/.installed: tests/python/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
	touch $@

venv: deps $(VENV)/.installed

test-unit: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

# Generated test models (ONNX node cases, whole networks) are cached once for both builds.
export KILN_MODEL_CACHE ?= $(abspath $(BUILD))/onnx-models
export KILN_NODE_CACHE  ?= $(abspath $(BUILD))/onnx-node-tests

test-python: build venv
	KILN_LIB=$(abspath $(BUILD))/libkiln.so $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/python

# The Python suite against the sanitizer build too: python itself is not instrumented, so
# the sanitizer runtimes are preloaded (leak checking off: the interpreter's own
# allocations would be reported).
test-asan: asan venv
	ctest --test-dir $(ASAN_BUILD) --output-on-failure -j$(JOBS)
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
	KILN_LIB=$(abspath $(ASAN_BUILD))/libkiln.so $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/python

# The tests that run contexts on several threads, under ThreadSanitizer.
test-tsan: tsan
	TSAN_OPTIONS=halt_on_error=1 ctest --test-dir $(TSAN_BUILD) --output-on-failure -R 'test_dynamic|test_runtime'

# Every test: unit and CLI tests (Release), the numpy-oracle op tests, the unit and CLI
# tests again under ASan+UBSan, and the threaded tests under TSan.
test: test-unit test-python test-asan test-tsan

demo: build
	@echo "== build the trained digit classifier (ONNX, scripts/train_digits.py) into a plan"
	$(BUILD)/kiln build models/digits/digits.onnx --shapes pixels:450x64 -o $(BUILD)/digits.plan
	@echo "== inspect the plan"
	$(BUILD)/kiln inspect $(BUILD)/digits.plan
	@echo "== benchmark it"
	$(BUILD)/kiln bench $(BUILD)/digits.plan --iterations 50
	@echo "== the C API sample: define, build, save, load, bind by name, run"
	$(BUILD)/example_mnist_api $(BUILD)/mnist.plan
	@echo "== classify the 450 held-out digits with kiln; the accuracy must match training's"
	$(BUILD)/example_classify_digits models/digits/digits.onnx
	@echo "== TensorRT's sampleMNIST in kiln: the Caffe LeNet of scripts/train_lenet_caffe.py, built, serialized, reloaded, on real digits"
	$(BUILD)/example_caffe_mnist models/lenet/lenet_deploy.prototxt models/lenet/lenet.caffemodel

# kiln against ONNX Runtime on the test networks (bench/bench.py; not part of `make test`):
# a table on stdout, bench-results.json and .png in $(BUILD)/bench. Options through
# BENCH_ARGS, e.g. make bench BENCH_ARGS="--models resnet50 --runs 20" (--help lists them).
$(BENCH_VENV)/.installed: bench/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt
	touch $@

bench: build $(BENCH_VENV)/.installed
	KILN_LIB=$(abspath $(BUILD))/libkiln.so $(BENCH_VENV)/bin/python bench/bench.py \
	    --out $(BUILD)/bench $(BENCH_ARGS)

# docs/operators.md: ONNX coverage with node-test results, then kiln's op table.
docs: build venv
	-KILN_LIB=$(abspath $(BUILD))/libkiln.so $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/python/test_onnx_node.py >/dev/null
	$(VENV)/bin/python scripts/gen_operators.py $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
