# ebpf_capture - PGXS build.
#
#   make && make install     build the BPF object, embed it (bpftool skeleton),
#                            build and install the extension
#   make unit                GoogleTest unit tests of the PostgreSQL-free core
#   make fuzz-smoke          a short libFuzzer run of the frame decoder
#   make installcheck        pg_regress against a running, preloaded server
#   make format              clang-format every source file

EXTENSION = ebpf_capture
MODULE_big = ebpf_capture
DATA = sql/ebpf_capture--0.1.sql sql/ebpf_capture--0.1--0.2.sql

include sources.mk
CORE_OBJS = $(patsubst %,extension/core/%.o,$(CORE_NAMES))
CAPTURE_OBJS = $(patsubst %,extension/capture/%.o,$(CAPTURE_PLAIN_NAMES) $(CAPTURE_SYSTEM_NAMES))
KUBE_OBJS = $(patsubst %,extension/kube/%.o,$(KUBE_PLAIN_NAMES) $(KUBE_CURL_NAMES))
EXPORT_OBJS = $(patsubst %,extension/export/%.o,$(EXPORT_PLAIN_NAMES) $(EXPORT_CURL_NAMES))
PG_OBJS = $(patsubst %,extension/pg/%.o,$(PG_NAMES))
OBJS = $(CORE_OBJS) $(CAPTURE_OBJS) $(KUBE_OBJS) $(EXPORT_OBJS) $(PG_OBJS)

BUILD = build
BPF_OBJ = $(BUILD)/capture.bpf.o
BPF_SKEL = $(BUILD)/capture.skel.h
BPF_SRCS = bpf/capture.bpf.c bpf/capture_abi.h bpf/frame_parse.h bpf/flow_account.h \
	bpf/l7_classify.h

# PostgreSQL's headers are not ours: -isystem keeps their warnings out of -Werror.
PG_CPPFLAGS = -I$(CURDIR)/extension -I$(CURDIR)/bpf -I$(CURDIR)/$(BUILD) \
	-isystem $(shell $(PG_CONFIG) --includedir-server)
# Warnings are errors in our code when WERROR=1 (CI and tests/run.sh set it);
# a user building with a newer compiler gets warnings, not a failed build.
# -MMD -MP: each object depends on the headers it includes (build/deps).
WERROR ?= 0
PG_CXXFLAGS = -std=c++17 -Wall -Wextra -Wno-missing-field-initializers \
	-Wno-register -fno-omit-frame-pointer -MMD -MP
ifeq ($(WERROR),1)
PG_CXXFLAGS += -Werror
endif
SHLIB_LINK = -lbpf -lelf -lz -lcurl -lstdc++
EXTRA_CLEAN = $(BUILD) results regression.diffs regression.out $(OBJS:.o=.d)

REGRESS = api errors storage writes service_map
REGRESS_OPTS = --inputdir=tests/regress --outputdir=$(BUILD)/regress

# Debian's PostgreSQL builds JIT bitcode with clang in C++14 mode; we are C++17
# and have nothing worth inlining into JIT code.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

BPF_CLANG ?= clang
BPF_CFLAGS = -O2 -g -target bpf -mcpu=v3 -Wall $(if $(filter 1,$(WERROR)),-Werror) \
	-I/usr/include/$(shell gcc -dumpmachine)

$(BPF_OBJ): $(BPF_SRCS)
	@mkdir -p $(BUILD)
	$(BPF_CLANG) $(BPF_CFLAGS) -c bpf/capture.bpf.c -o $@

$(BPF_SKEL): $(BPF_OBJ)
	bpftool gen skeleton $< name capture_bpf > $@.tmp
	mv $@.tmp $@

# The skeleton embeds the BPF object: nothing is loaded from a path at run time.
extension/capture/packet_capture.o: $(BPF_SKEL)
# Every object waits for the skeleton on a clean build; afterwards the
# compiler's dependency files say which headers each one includes.
$(OBJS): | $(BPF_SKEL)
-include $(OBJS:.o=.d)
# An object without its dependency file (built by an older Makefile) depends
# on every header, so that it cannot be left stale.
$(foreach o,$(OBJS),$(if $(wildcard $(o:.o=.d)),,$(eval $(o): $(wildcard extension/*/*.h) $(BPF_SRCS))))

# A shared library links with undefined symbols (PostgreSQL's come from the
# server at load time), so a missing definition of our own would only show up
# as a failed LOAD. Refuse to build such a library.
all: check-symbols
.PHONY: check-symbols
check-symbols: $(shlib)
	@undefined="$$(nm -D --undefined-only $(shlib) | c++filt | grep -E 'ebpfc::|capture_bpf' || true)"; \
	if [ -n "$$undefined" ]; then echo "undefined symbols of ours in $(shlib):"; echo "$$undefined"; exit 1; fi

.PHONY: unit fuzz-smoke format filter-check
unit:
	$(MAKE) -C tests/unit run

# The socket filter in this kernel, through BPF_PROG_TEST_RUN (needs root).
filter-check: $(BPF_SKEL)
	$(MAKE) -C tests/filter run

fuzz-smoke:
	$(MAKE) -C tests/fuzz smoke

format:
	clang-format -i extension/*/*.cpp extension/*/*.h tests/unit/*.cpp tests/fuzz/*.cpp \
		tests/filter/*.cpp tests/filter/*.h bench/*.cpp

# What the socket filter costs per frame in this kernel, measured with
# BPF_PROG_TEST_RUN (bench/filter_bench.cpp; needs root).
FILTER_BENCH_ARGS ?= 20000 5
.PHONY: filter-bench
filter-bench: $(BPF_SKEL)
	$(CXX) -std=c++17 -O2 -Wall -Wextra -Werror -Ibpf -I$(BUILD) -Itests/unit -Itests/filter \
		bench/filter_bench.cpp -o $(BUILD)/filter_bench -lbpf -lelf -lz -lpthread
	$(BUILD)/filter_bench $(FILTER_BENCH_ARGS)
