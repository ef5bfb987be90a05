#!/usr/bin/env bash
# test_cli.sh - end-to-end checks of the `kiln` command line: help and version, build,
# inspect, run and bench on built-in models, reproducible plans, and error handling.
# Needs only bash and coreutils; run as KILN=path/to/kiln bash tests/cli/test_cli.sh.
set -euo pipefail

KILN=${KILN:?set KILN to the kiln executable}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

passed=0
failed=0
rc=0

ok() {
    passed=$((passed + 1))
    echo "ok   $1"
}

bad() {
    failed=$((failed + 1))
    echo "FAIL $1 (exit $rc)"
    sed -e 's/^/     stdout: /' "$T/out" | head -n 20
    sed -e 's/^/     stderr: /' "$T/err" | head -n 20
}

# Runs a command, keeping its exit code in $rc and its output in $T/out and $T/err.
run() {
    set +e
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    set -e
}

# expect NAME CONDITION: one check, passed when the bash condition holds.
expect() {
    if eval "$2"; then ok "$1"; else bad "$1"; fi
}

# expect_fail NAME CODE COMMAND...: the command must exit with CODE, print exactly one
# line on stderr and nothing on stdout.
expect_fail() {
    local name=$1 code=$2
    shift 2
    run "$@"
    expect "$name" "[ $rc -eq $code ] && [ ! -s '$T/out' ] && [ \$(wc -l <'$T/err') -eq 1 ]"
}

# write_npy FILE DESCR SHAPE COUNT [zeros]: a .npy file in version 1.0 written the way
# NumPy does (dict padded with spaces so that the data starts at a multiple of 64). The
# data is COUNT 4-byte values alternating 1.0f and 0 unless "zeros" is given.
write_npy() {
    local file=$1 descr=$2 shape=$3 count=$4 fill=${5:-}
    local dict="{'descr': '$descr', 'fortran_order': False, 'shape': $shape, }"
    local pad=$(((64 - (11 + ${#dict}) % 64) % 64))
    local hlen=$((${#dict} + pad + 1))
    {
        printf '\x93NUMPY\x01\x00'
        # The header length as two raw bytes: the inner printf writes the escapes.
        # shellcheck disable=SC2059
        printf "$(printf '\\x%02x\\x%02x' $((hlen & 255)) $((hlen >> 8)))"
        printf '%s%*s\n' "$dict" "$pad" ''
        if [ "$fill" = zeros ]; then
            head -c $((count * 4)) /dev/zero
        else
            local i
            for ((i = 0; i < count; i++)); do
                if ((i % 2)); then printf '\x00\x00\x00\x00'; else printf '\x00\x00\x80\x3f'; fi
            done
        fi
    } >"$file"
}

# Sum of the float32 values of a .npy file whose data starts at byte 128.
npy_sum() {
    od -An -v -t f4 -j 128 "$1" | awk '{ for (i = 1; i <= NF; i++) s += $i } END { printf "%.6f", s }'
}

# ---- version and help ----

run "$KILN" --version
expect "--version prints the version" \
    "[ $rc -eq 0 ] && grep -Eqx 'kiln [0-9]+\.[0-9]+\.[0-9]+' '$T/out' && [ ! -s '$T/err' ]"

run "$KILN" help
expect "help lists the commands" \
    "[ $rc -eq 0 ] && grep -q build '$T/out' && grep -q inspect '$T/out' && grep -q bench '$T/out'"

for cmd in build run inspect bench; do
    run "$KILN" "$cmd" --help
    expect "$cmd --help" "[ $rc -eq 0 ] && grep -q 'usage: kiln $cmd' '$T/out' && [ ! -s '$T/err' ]"
done

run "$KILN" help run
expect "help run shows run's help" "[ $rc -eq 0 ] && grep -q -- '--output-dir' '$T/out'"

run "$KILN" build --help
expect "build --help lists the built-in models and the seed" \
    "grep -q lenet '$T/out' && grep -q resblock '$T/out' && grep -q mlp '$T/out' \
     && grep -q seed '$T/out'"

# ---- build ----

run "$KILN" build lenet -o "$T/lenet.plan"
expect "build lenet writes a plan and a summary on stderr" \
    "[ $rc -eq 0 ] && [ -s '$T/lenet.plan' ] && [ ! -s '$T/out' ] && grep -q 'arena' '$T/err' \
     && grep -q 'weights' '$T/err' && grep -q 'layers' '$T/err'"

run "$KILN" build resblock -o "$T/resblock.plan" --threads 2
expect "build resblock" "[ $rc -eq 0 ] && [ -s '$T/resblock.plan' ] && [ ! -s '$T/out' ]"

run "$KILN" build mlp -o "$T/mlp.plan" --verbose
expect "build mlp --verbose" "[ $rc -eq 0 ] && [ -s '$T/mlp.plan' ] && [ ! -s '$T/out' ]"

run "$KILN" build lenet -o "$T/lenet2.plan"
expect "building twice gives byte-identical plans" \
    "[ $rc -eq 0 ] && cmp -s '$T/lenet.plan' '$T/lenet2.plan'"

run "$KILN" build lenet --batch 4 -o "$T/lenet4.plan"
expect "build --batch 4" "[ $rc -eq 0 ] && [ -s '$T/lenet4.plan' ]"

run "$KILN" build lenet --shapes data:2x1x28x28 -o "$T/lenet2b.plan"
expect "build --shapes fixes the batch" "[ $rc -eq 0 ] && [ -s '$T/lenet2b.plan' ]"

run "$KILN" build --list-passes
expect "build --list-passes" "[ $rc -eq 0 ] && [ -s '$T/out' ] && [ ! -s '$T/err' ]"

# ---- inspect ----

run "$KILN" inspect "$T/lenet.plan"
expect "inspect lenet shows the I/O, layers and memory" \
    "[ $rc -eq 0 ] && grep -q 'layers (' '$T/out' && grep -q 'Conv' '$T/out' \
     && grep -q 'Softmax' '$T/out' && grep -q '^  arena' '$T/out' && grep -q 'ratio' '$T/out' \
     && grep -Eq 'data +f32 +1x1x28x28' '$T/out' && grep -Eq 'prob +f32 +1x10' '$T/out' \
     && [ ! -s '$T/err' ]"

run "$KILN" inspect "$T/lenet4.plan"
expect "inspect shows the batch of --batch 4" "[ $rc -eq 0 ] && grep -Eq 'data +f32 +4x1x28x28' '$T/out'"

run "$KILN" inspect "$T/lenet2b.plan"
expect "inspect shows the batch of --shapes" "[ $rc -eq 0 ] && grep -Eq 'data +f32 +2x1x28x28' '$T/out'"

run "$KILN" inspect "$T/resblock.plan"
expect "inspect resblock shows the residual Add fused into the convolution" \
    "[ $rc -eq 0 ] && grep -q 'kiln.Conv' '$T/out' && grep -q '+ add' '$T/out' \
     && grep -Eq 'pool +f32 +1x16x1x1' '$T/out'"

run "$KILN" inspect "$T/resblock.plan" --json
expect "inspect --json prints one JSON object" \
    "[ $rc -eq 0 ] && [ \$(wc -l <'$T/out') -eq 1 ] && grep -q '^{.*}$' '$T/out' \
     && grep -q '\"layers\": \\[' '$T/out' && grep -q '\"fused_from\": \\[' '$T/out' \
     && grep -q '\"arena_bytes\": [0-9]' '$T/out' && grep -q '\"activation_bytes\": [0-9]' '$T/out' \
     && [ ! -s '$T/err' ]"
if command -v python3 >/dev/null 2>&1; then
    expect "... which parses, with every layer's fields" \
        "python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d[\"inputs\"][0] == {\"name\": \"data\", \"shape\": [1, 16, 32, 32], \"dtype\": \"f32\"}
assert d[\"outputs\"][0][\"name\"] == \"pool\" and d[\"weight_bytes\"] > 0
assert 0 < d[\"arena_bytes\"] and 0 < d[\"activation_bytes\"]
for l in d[\"layers\"]:
    assert set(l) >= {\"name\", \"op\", \"kernel\", \"precision\", \"fused_from\", \"inputs\", \"outputs\"}
    assert l[\"fused_from\"][0] == l[\"name\"]
    assert all(set(o) == {\"name\", \"shape\", \"dtype\"} for o in l[\"outputs\"])
' '$T/out'"
fi

run "$KILN" inspect lenet --dot "$T/lenet.dot"
expect "inspect --dot writes a Graphviz file and still prints the table" \
    "[ $rc -eq 0 ] && head -c 7 '$T/lenet.dot' | grep -qx digraph && grep -q -- '->' '$T/lenet.dot' \
     && grep -q 'Softmax' '$T/lenet.dot' && grep -q 'layers (' '$T/out' && [ ! -s '$T/err' ]"

expect_fail "inspect --dot into a missing folder" 1 "$KILN" inspect lenet --dot "$T/no/such/dir/x.dot"

# ---- run ----

write_npy "$T/digit.npy" '<f4' '(1, 1, 28, 28)' 784
run "$KILN" run "$T/lenet.plan" --input "data=$T/digit.npy" --output-dir "$T/res/nested"
expect "run lenet writes prob.npy (1x10 f32: 128 + 40 bytes)" \
    "[ $rc -eq 0 ] && [ \$(wc -c <'$T/res/nested/prob.npy') -eq 168 ] \
     && [ \"\$(head -c 6 '$T/res/nested/prob.npy' | tail -c 5)\" = NUMPY ] \
     && grep -Eq '^prob +1x10 +f32' '$T/out'"

expect "lenet's softmax output sums to 1" \
    "awk -v s=\$(npy_sum '$T/res/nested/prob.npy') 'BEGIN { exit !(s > 0.999 && s < 1.001) }'"

write_npy "$T/feat.npy" '<f4' '(1, 16, 32, 32)' 16384 zeros
run "$KILN" run "$T/resblock.plan" -i "data=$T/feat.npy" -d "$T/res2" --threads 1
expect "run resblock writes pool.npy (1x16x1x1 f32)" \
    "[ $rc -eq 0 ] && [ \$(wc -c <'$T/res2/pool.npy') -eq $((128 + 64)) ]"

# ---- blocked layouts (the CPU backend's test policy, through the environment) ----

run env KILN_CPU_LAYOUT=nchw8c "$KILN" build resblock -o "$T/resblock8c.plan" --threads 2
expect "KILN_CPU_LAYOUT=nchw8c builds resblock" "[ $rc -eq 0 ] && [ -s '$T/resblock8c.plan' ]"
run "$KILN" inspect "$T/resblock8c.plan"
expect "inspect shows the reorders, blocked kernels and blocked tensors of that plan" \
    "[ $rc -eq 0 ] && [ \$(grep -c 'kiln.Reorder' '$T/out') -eq 2 ] && grep -q 'ref_nchwc' '$T/out' \
     && grep -q 'data::nchw8c\[1x16x32x32 nchw8c\]' '$T/out'"
run "$KILN" inspect "$T/resblock8c.plan" --json
expect "... and their layouts in --json" "[ $rc -eq 0 ] && grep -q '\"layout\": \"nchw8c\"' '$T/out'"
run "$KILN" inspect "$T/resblock.plan"
expect "a plan built with the default policy has no blocked tensors" \
    "[ $rc -eq 0 ] && ! grep -q 'nchw' '$T/out' && ! grep -q 'kiln.Reorder' '$T/out'"
write_npy "$T/feat1.npy" '<f4' '(1, 16, 32, 32)' 16384
run "$KILN" run "$T/resblock.plan" -i "data=$T/feat1.npy" -d "$T/res_plain"
run "$KILN" run "$T/resblock8c.plan" -i "data=$T/feat1.npy" -d "$T/res_8c"
expect "the blocked plan gives the plain plan's output" \
    "[ $rc -eq 0 ] && cmp -s '$T/res_plain/pool.npy' '$T/res_8c/pool.npy'"
run env KILN_CPU_LAYOUT=nhwc "$KILN" build resblock -o "$T/bad.plan"
expect "an unknown KILN_CPU_LAYOUT fails the build, saying so" \
    "[ $rc -eq 1 ] && [ ! -e '$T/bad.plan' ] && grep -q 'KILN_CPU_LAYOUT is \"nhwc\"' '$T/err'"

# ---- bench ----

run "$KILN" bench "$T/lenet.plan" --warmup 1 --iterations 5 --json
expect "bench --json prints one JSON object" \
    "[ $rc -eq 0 ] && [ \$(wc -l <'$T/out') -eq 1 ] && grep -q '^{.*}$' '$T/out' \
     && grep -q '\"median_ms\": [0-9]' '$T/out' && grep -q '\"iterations\": 5' '$T/out' \
     && grep -q '\"throughput_per_s\"' '$T/out'"

run "$KILN" bench "$T/mlp.plan" -n 3 --warmup 0
expect "bench prints a latency table" \
    "[ $rc -eq 0 ] && grep -q 'median' '$T/out' && grep -q 'inferences/s' '$T/out'"

run "$KILN" bench lenet -n 2 --warmup 0 --json
expect "bench a built-in model by name" "[ $rc -eq 0 ] && grep -q '\"plan\": \"lenet\"' '$T/out'"

# ---- errors: one line on stderr, nothing on stdout, exit 2 for usage and 1 for failures ----

expect_fail "no command" 2 "$KILN"
expect_fail "unknown command" 2 "$KILN" frobnicate
expect_fail "unknown option" 2 "$KILN" build lenet -o "$T/x.plan" --frobnicate
expect_fail "unknown top-level option" 2 "$KILN" --frobnicate
expect_fail "option without its value" 2 "$KILN" build lenet -o
expect_fail "bad number" 2 "$KILN" bench "$T/lenet.plan" --iterations zero
expect_fail "build without -o" 2 "$KILN" build lenet
expect_fail "unknown model" 1 "$KILN" build nosuchnet -o "$T/x.plan"

printf 'not onnx' >"$T/model.onnx"
expect_fail "a file that is not ONNX" 1 "$KILN" build "$T/model.onnx" -o "$T/x.plan"
expect "... and the message says so" "grep -q 'not a valid ONNX model' '$T/err' && grep -q 'model.onnx' '$T/err'"

expect_fail "inspect a missing plan" 1 "$KILN" inspect "$T/nope.plan"
expect_fail "run a missing plan" 1 "$KILN" run "$T/nope.plan" --input "data=$T/digit.npy"
expect_fail "bench a missing plan" 1 "$KILN" bench "$T/nope.plan"

size=$(wc -c <"$T/lenet.plan")
head -c $((size / 2)) "$T/lenet.plan" >"$T/half.plan"
head -c 16 "$T/lenet.plan" >"$T/head.plan"
expect_fail "inspect a truncated plan" 1 "$KILN" inspect "$T/half.plan"
expect_fail "run a plan cut after its header" 1 "$KILN" run "$T/head.plan" --input "data=$T/digit.npy"

expect_fail "run without its input" 2 "$KILN" run "$T/lenet.plan" --output-dir "$T/res3"
expect "... names the missing input" "grep -q \"'data'\" '$T/err'"

expect_fail "run with an unknown input" 2 "$KILN" run "$T/lenet.plan" --input "image=$T/digit.npy"

write_npy "$T/big.npy" '<f4' '(1, 1, 32, 32)' 1024 zeros
expect_fail "run with the wrong input shape" 1 \
    "$KILN" run "$T/lenet.plan" --input "data=$T/big.npy" -d "$T/res4"
expect "... names expected and found shapes" \
    "grep -q '1x1x28x28' '$T/err' && grep -q '1x1x32x32' '$T/err'"

write_npy "$T/int.npy" '<i4' '(1, 1, 28, 28)' 784 zeros
expect_fail "run with the wrong input dtype" 1 "$KILN" run "$T/lenet.plan" --input "data=$T/int.npy"
expect "... names expected and found dtypes" "grep -q 'f32' '$T/err' && grep -q 'i32' '$T/err'"

write_npy "$T/big-endian.npy" '>f4' '(1, 1, 28, 28)' 784 zeros
expect_fail "run with a big-endian .npy" 1 "$KILN" run "$T/lenet.plan" --input "data=$T/big-endian.npy"

expect_fail "build with a bad --shapes" 2 "$KILN" build lenet --shapes data=1x1x28x28 -o "$T/x.plan"
expect_fail "build with --batch and --shapes" 2 \
    "$KILN" build lenet --batch 2 --shapes data:2x1x28x28 -o "$T/x.plan"

printf 'garbage, not a .npy file at all' >"$T/garbage.npy"
expect_fail "run with a malformed .npy" 1 "$KILN" run "$T/lenet.plan" --input "data=$T/garbage.npy"

head -c 200 "$T/digit.npy" >"$T/short.npy"
expect_fail "run with a truncated .npy" 1 "$KILN" run "$T/lenet.plan" --input "data=$T/short.npy"

# An ONNX model: the digit classifier shipped with the repository.
DIGITS="$(cd "$(dirname "$0")/../.." && pwd)/models/digits/digits.onnx"
run "$KILN" build "$DIGITS" --shapes pixels:450x64 -o "$T/digits.plan"
expect "build an ONNX model" "[ $rc -eq 0 ] && [ -s '$T/digits.plan' ] && [ ! -s '$T/out' ]"
run "$KILN" inspect "$T/digits.plan"
expect "... inspect shows its input and Gemm layers" \
    "[ $rc -eq 0 ] && grep -q 'pixels' '$T/out' && grep -q 'Gemm' '$T/out' && grep -q '450x64' '$T/out'"
expect_fail "inspect an ONNX model with a symbolic batch and no shape" 1 "$KILN" inspect "$DIGITS"
expect "... the message names the input and --shapes" "grep -q \"'pixels'\" '$T/err' && grep -q -- '--shapes' '$T/err'"

run "$KILN" inspect resblock
expect "inspect a model lists its layers before optimization, then the engine's" \
    "[ $rc -eq 0 ] && grep -q 'network layers before optimization (8)' '$T/out' \
     && grep -Eq ' bn2 +BatchNormalization' '$T/out' && grep -q 'layers (3)' '$T/out'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
