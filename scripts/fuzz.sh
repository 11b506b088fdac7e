#!/usr/bin/env bash
# Fuzzes every parser of outside bytes (FuzzTesting/, libFuzzer with AddressSanitizer) for SECONDS each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET…]      default: 20 s for every target (CI); e.g. scripts/fuzz.sh 600 keyFile
#
# Corpora grow in FuzzTesting/.build/corpus/TARGET (seeded from ../shared/fixtures and this build's writers). An input
# that crashes, hangs or leaks is copied to FuzzTesting/regressions/TARGET/: commit it, and the test suite replays it
# on every run from then on. Exits non-zero if any target found one.
set -euo pipefail
cd "$(dirname "$0")/../FuzzTesting"
seconds=${1:-20}
shift || true
toolchain=$(dirname "$(readlink -f "$(command -v swiftc)")")/..
driver=$(ls "$toolchain"/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a | head -n 1)

# libFuzzer's own main is left out (fuzzer_no_main): SwiftPM gives the executable its entry point, which starts the
# driver. Coverage: edges, comparisons (so the fuzzer learns magic numbers and lengths), inline counters.
echo "== building the fuzz targets (release, AddressSanitizer, libFuzzer coverage)"
swift build -c release -Xswiftc -sanitize=address \
    -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table \
    -Xlinker "$driver" -Xlinker -lstdc++ 2>&1 | grep -vE "warning: Cannot export local symbol" | tail -n 3
binary=.build/release/SigmaFuzz

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(keyFile keyStream frames safetensors config bpe wordPiece credentials)
fi
fixtures=$(cd ../.. && pwd)/shared/fixtures
failed=0
for target in "${targets[@]}"; do
    corpus=.build/corpus/$target
    mkdir -p "$corpus" crashes
    log=.build/fuzz-$target.log
    status=0
    SIGMA_FUZZ_TARGET=$target SIGMA_FUZZ_SEEDS=$corpus SIGMA_FIXTURES=$fixtures \
        "$binary" "$corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="crashes/$target-" >"$log" 2>&1 || status=$?
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")
    added=$(sed -nE 's/^stat::new_units_added: *([0-9]+)/\1/p' "$log")
    size=$(ls "$corpus" | wc -l)
    if [ "$status" -ne 0 ]; then
        failed=1
        mkdir -p "regressions/$target"
        for artifact in crashes/"$target"-*; do
            [ -e "$artifact" ] && mv "$artifact" "regressions/$target/"
        done
        echo "fuzz $target: FAILED after ${runs:-?} runs (exit $status); input kept in FuzzTesting/regressions/$target/"
        grep -E "ERROR|SUMMARY|Fatal|panic" "$log" | head -n 5 || true
    else
        echo "fuzz $target: ${runs:-0} runs in ${seconds} s, ${added:-0} new inputs, corpus $size, no crash"
    fi
done
exit $failed
