#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time and prints executions and crashes.
#
#   scripts/fuzz.sh                 # each target 60 s
#   scripts/fuzz.sh 300             # each target 300 s
#   scripts/fuzz.sh 60 return_to    # some targets only
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install --locked cargo-fuzz`). Not part
# of CI (too long); the targets call the entry points of src/fuzzing/ (compiled under the
# `--cfg fuzzing` that cargo fuzz sets), which the property tests of `cargo test` also run. Seeds come from `fuzzing::seeds()`;
# corpora grow in fuzz/corpus/<target>/, crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || { echo "cargo-fuzz is missing: cargo install --locked cargo-fuzz" >&2; exit 1; }

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "== seeds (fuzzing::seeds) into fuzz/corpus/"
FUZZ_SEEDS_DIR="$PWD/fuzz/corpus" cargo test --quiet --lib write_fuzz_seeds -- --ignored >/dev/null

echo "== building ${#targets[@]} targets"
cargo +nightly fuzz build

mkdir -p fuzz/logs
summary=()
failed=0
for t in "${targets[@]}"; do
    echo "== $t: ${seconds}s"
    log="fuzz/logs/$t.log"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    set +e
    cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -print_final_stats=1 \
        -rss_limit_mb=2048 -timeout=10 -max_len=16384 >"$log" 2>&1
    rc=$?
    set -e
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'exec/s: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    crashes=$((after - before))
    [ "$rc" -ne 0 ] && failed=1
    summary+=("$(printf '%-18s %12s %8s %7s %8s %4s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$crashes" "$rc")")
done

echo
printf '%-18s %12s %8s %7s %8s %4s\n' target executions exec/s cov crashes rc
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "a target failed: see fuzz/logs/ and fuzz/artifacts/" >&2
    exit 1
fi
