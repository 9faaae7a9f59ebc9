# tests/gtest.mk - what the GoogleTest suites (tests/unit, tests/filter) are
# built and run with: g++ unless the caller chose another compiler,
# AddressSanitizer and UBSan, GoogleTest from Debian's libgtest-dev, and a
# sanitizer report (a leak too) counted as a failure; and the targets they
# share (all, run, clean). Set ROOT, BUILD and BIN (the test binary) before
# including it; the suite adds the rule that links $(BIN).

# make's built-in default is g++ too; an explicit CXX wins.
ifeq ($(origin CXX),default)
CXX := g++
endif

MULTIARCH := $(shell $(CXX) -dumpmachine)
GTEST_LIBDIR ?= /usr/lib/$(MULTIARCH)
GTEST_LIBS := $(GTEST_LIBDIR)/libgtest_main.a $(GTEST_LIBDIR)/libgtest.a -pthread

SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=0:strict_string_checks=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

TEST_SRCS := $(wildcard test_*.cpp)
TEST_OBJS := $(patsubst %.cpp,$(BUILD)/%.o,$(TEST_SRCS))

.PHONY: all run clean
all: $(BIN)

run: $(BIN)
	$(BIN) --gtest_color=no

clean:
	rm -rf $(BUILD)
