#!/usr/bin/env bash
# test_cli.sh - end-to-end checks of the `kiln` command line: help and version, build,
# inspect, run and bench on built-in models, reproducible plans, dynamic shapes
# (optimization profiles; run and bench at shapes in a profile; several contexts), and
# error handling.
# Needs only bash and coreutils; run as KILN=path/to/kiln bash tests/cli/test_cli.sh.
set -euo pipefail

KILN=${KILN:?set KILN to the kiln executable}
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
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

run "$KILN" build lenet --no-timing -o "$T/lenet1.plan"
run "$KILN" build lenet --no-timing -o "$T/lenet2.plan"
expect "building twice without tactic timing gives byte-identical plans" \
    "[ $rc -eq 0 ] && cmp -s '$T/lenet1.plan' '$T/lenet2.plan'"
run "$KILN" build resblock --timing-cache "$T/tc" -o "$T/tc1.plan"
run "$KILN" build resblock --timing-cache "$T/tc" -o "$T/tc2.plan"
expect "two builds with one timing cache give byte-identical plans" \
    "[ $rc -eq 0 ] && cmp -s '$T/tc1.plan' '$T/tc2.plan' && head -1 '$T/tc' | grep -qx 'kiln-timing-cache 1'"
run "$KILN" build resblock --no-timing -o "$T/nt.plan"
expect "build --no-timing" "[ $rc -eq 0 ] && [ -s '$T/nt.plan' ]"
run "$KILN" build resblock --timing-cache /nonexistent-dir/tc -o "$T/x.plan"
expect "an unwritable timing cache fails the build, naming it" \
    "[ $rc -ne 0 ] && grep -q '/nonexistent-dir/tc' '$T/err'"

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
# The plain plan runs the GEMM kernels, the blocked one the blocked reference kernels: the
# same sums in other orders, so within rounding (relative L2 of the float32 payloads).
close_npy() {
    paste <(od -An -v -f -j 128 -w4 "$1") <(od -An -v -f -j 128 -w4 "$2") |
        awk '{ d = $1 - $2; e += d * d; w += $2 * $2; n++ }
             END { exit !(n > 0 && e <= 1e-10 * w) }'
}
expect "the blocked plan gives the plain plan's output (within 1e-5 relative L2)" \
    "[ $rc -eq 0 ] && close_npy '$T/res_plain/pool.npy' '$T/res_8c/pool.npy'"
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
DIGITS="$ROOT/models/digits/digits.onnx"
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

# ---- dynamic shapes: optimization profiles ----

run "$KILN" build --help
expect "build --help explains the ranges and --profile" \
    "grep -q -- '--min-shapes NAME:DIMS' '$T/out' && grep -q -- '--opt-shapes' '$T/out' \
     && grep -q -- '--max-shapes' '$T/out' && grep -q -- '--profile ' '$T/out' \
     && ! grep -q 'come with dynamic shapes' '$T/out'"
run "$KILN" bench --help
expect "bench --help explains --contexts, --batch, --shapes" \
    "grep -q -- '--contexts C' '$T/out' && grep -q -- '--batch N' '$T/out' \
     && grep -q -- '--shapes NAME:DIMS' '$T/out' && grep -q inferences_per_s '$T/out'"

RANGE="--min-shapes data:1x1x28x28 --opt-shapes data:4x1x28x28 --max-shapes data:8x1x28x28"
# shellcheck disable=SC2086
run "$KILN" build lenet $RANGE -o "$T/dyn.plan"
expect "build a batch range 1..8 (opt 4) prints the profile" \
    "[ $rc -eq 0 ] && [ -s '$T/dyn.plan' ] && [ ! -s '$T/out' ] && grep -q 'profiles     1' '$T/err' \
     && grep -Eq '^ +0 +data +1x1x28x28 +4x1x28x28 +8x1x28x28$' '$T/err'"

# shellcheck disable=SC2086
run "$KILN" build lenet --profile $RANGE --profile --min-shapes data:9x1x28x28 \
    --opt-shapes data:12x1x28x28 --max-shapes=data:16x1x28x28 -o "$T/dyn2.plan"
expect "build two profiles (--profile between them; a leading one starts profile 0)" \
    "[ $rc -eq 0 ] && grep -q 'profiles     2' '$T/err' \
     && grep -Eq '^ +0 +data +1x1x28x28 +4x1x28x28 +8x1x28x28$' '$T/err' \
     && grep -Eq '^ +1 +data +9x1x28x28 +12x1x28x28 +16x1x28x28$' '$T/err'"

# pair.onnx (scripts/gen_cli_models.py): inputs a, b [batch, seq, 8] with dim_params.
PAIR="$ROOT/tests/cli/data/pair.onnx"
run "$KILN" build "$PAIR" --min-shapes a:1x1x8,b:1x1x8 --opt-shapes a:2x4x8 --opt-shapes b:2x4x8 \
    --max-shapes a:4x16x8,b:4x16x8 -o "$T/pair.plan"
expect "build ONNX dim_params as ranges from comma-separated and repeated lists" \
    "[ $rc -eq 0 ] && grep -Eq '^ +0 +a +1x1x8 +2x4x8 +4x16x8$' '$T/err' \
     && grep -Eq '^ +0 +b +1x1x8 +2x4x8 +4x16x8$' '$T/err'"

run "$KILN" build "$PAIR" --shapes a:2x3x8,b:2x3x8 -o "$T/pair-fixed.plan"
expect "build --shapes takes a comma-separated list and stays a fixed shape" \
    "[ $rc -eq 0 ] && ! grep -q profiles '$T/err'"
run "$KILN" inspect "$T/pair-fixed.plan"
expect "... inspect shows both fixed inputs and no profiles" \
    "[ $rc -eq 0 ] && grep -Eq '^  a +f32 +2x3x8$' '$T/out' && grep -Eq '^  b +f32 +2x3x8$' '$T/out' \
     && grep -Eq '^  y +f32 +2x3x3$' '$T/out' && ! grep -q profiles '$T/out'"

run "$KILN" build "$DIGITS" --min-shapes pixels:1x64 --opt-shapes pixels:64x64 \
    --max-shapes pixels:450x64 -o "$T/digits-dyn.plan"
expect "build the digits ONNX model with a batch range" \
    "[ $rc -eq 0 ] && grep -Eq '^ +0 +pixels +1x64 +64x64 +450x64$' '$T/err'"

LENET_CAFFE="$ROOT/models/lenet/lenet_deploy.prototxt"
LENET_WEIGHTS="$ROOT/models/lenet/lenet.caffemodel"
run "$KILN" build "$LENET_CAFFE" --weights "$LENET_WEIGHTS" --max-batch 4 -o "$T/caffe4.plan"
expect "build a Caffe model with --max-batch 4 (a fixed batch)" "[ $rc -eq 0 ] && [ -s '$T/caffe4.plan' ]"
run "$KILN" inspect "$T/caffe4.plan"
expect "... inspect shows batch 4 and no profiles" \
    "[ $rc -eq 0 ] && grep -Eq '^  data +f32 +4x1x28x28$' '$T/out' && ! grep -q profiles '$T/out'"

expect_fail "build: an input in --min-shapes and --opt-shapes but not --max-shapes" 2 \
    "$KILN" build lenet --min-shapes data:1x1x28x28 --opt-shapes data:4x1x28x28 -o "$T/x.plan"
expect "... names the input and the missing option" \
    "grep -q \"input 'data'\" '$T/err' && grep -q 'not in --max-shapes' '$T/err'"
expect_fail "build: an input only in --max-shapes" 2 \
    "$KILN" build lenet --max-shapes data:8x1x28x28 -o "$T/x.plan"
expect "... names the missing --min-shapes" "grep -q 'not in --min-shapes' '$T/err'"
expect_fail "build: an input missing from the second profile's --opt-shapes" 2 \
    "$KILN" build lenet $RANGE --profile --min-shapes data:9x1x28x28 --max-shapes data:16x1x28x28 \
    -o "$T/x.plan"
expect "... names the profile" "grep -q 'profile 1:' '$T/err' && grep -q 'not in --opt-shapes' '$T/err'"
expect_fail "build: min > max" 2 "$KILN" build lenet --min-shapes data:8x1x28x28 \
    --opt-shapes data:4x1x28x28 --max-shapes data:2x1x28x28 -o "$T/x.plan"
expect "... says which dimension and what order is needed" \
    "grep -q 'dimension 0 needs min <= opt <= max, got 8, 4, 2' '$T/err' && grep -q \"'data'\" '$T/err'"
expect_fail "build: ranges of different ranks" 2 "$KILN" build lenet --min-shapes data:1x1x28x28 \
    --opt-shapes data:4x1x28x28 --max-shapes data:8x784 -o "$T/x.plan"
expect_fail "build: a --profile followed by no ranges" 2 "$KILN" build lenet $RANGE --profile -o "$T/x.plan"
expect_fail "build: --profile takes no value" 2 "$KILN" build lenet $RANGE --profile=1 -o "$T/x.plan"
expect_fail "build: more than 8 profiles" 2 "$KILN" build lenet $RANGE --profile $RANGE --profile \
    $RANGE --profile $RANGE --profile $RANGE --profile $RANGE --profile $RANGE --profile $RANGE \
    --profile $RANGE -o "$T/x.plan"
expect_fail "build: one input given --shapes and a range" 2 \
    "$KILN" build lenet --shapes data:2x1x28x28 $RANGE -o "$T/x.plan"
expect_fail "build: --batch with a range" 2 "$KILN" build lenet --batch 2 $RANGE -o "$T/x.plan"
expect_fail "build: an input named twice in one list" 2 \
    "$KILN" build "$PAIR" --min-shapes a:1x1x8,a:1x2x8 -o "$T/x.plan"
expect_fail "build: a malformed item in a list" 2 \
    "$KILN" build "$PAIR" --min-shapes a:1x1x8,b -o "$T/x.plan"
expect_fail "build: a range for a Caffe model" 2 "$KILN" build "$LENET_CAFFE" --weights \
    "$LENET_WEIGHTS" $RANGE -o "$T/x.plan"
expect_fail "build: a range for an input the model lacks" 1 "$KILN" build lenet $RANGE \
    --min-shapes image:1x3 --opt-shapes image:1x3 --max-shapes image:1x3 -o "$T/x.plan"
expect "... names it" "grep -q \"'image', which is not a network input\" '$T/err'"
expect_fail "build: ONNX inputs with dim_params, one without a range" 1 \
    "$KILN" build "$PAIR" --min-shapes a:1x1x8 --opt-shapes a:2x4x8 --max-shapes a:4x16x8 -o "$T/x.plan"
expect "... names the input and the options" \
    "grep -q \"input 'b' has a dynamic dimension 0\" '$T/err' && grep -q -- '--min-shapes' '$T/err'"

run "$KILN" inspect "$T/dyn2.plan"
expect "inspect a dynamic plan shows every profile's min, opt and max" \
    "[ $rc -eq 0 ] && grep -q '^profiles (2' '$T/out' \
     && grep -Eq '^  #  input +min +opt +max$' '$T/out' \
     && grep -Eq '^  0  data +1x1x28x28 +4x1x28x28 +8x1x28x28$' '$T/out' \
     && grep -Eq '^  1  data +9x1x28x28 +12x1x28x28 +16x1x28x28$' '$T/out' \
     && grep -Eq '^  data +f32 +16x1x28x28  \(dynamic; the largest\)$' '$T/out' && [ ! -s '$T/err' ]"
run "$KILN" inspect "$T/lenet.plan"
expect "inspect a static plan shows no profiles" "[ $rc -eq 0 ] && ! grep -q 'profiles' '$T/out'"

run "$KILN" inspect "$T/dyn2.plan" --json
expect "inspect --json of a dynamic plan has dynamic and profiles" \
    "[ $rc -eq 0 ] && [ \$(wc -l <'$T/out') -eq 1 ] && grep -q '\"dynamic\": true' '$T/out' \
     && grep -qF '\"profiles\": [{\"inputs\": [{\"name\": \"data\", \"min\": [1, 1, 28, 28], \"opt\": [4, 1, 28, 28], \"max\": [8, 1, 28, 28]}]}, {\"inputs\": [{\"name\": \"data\", \"min\": [9, 1, 28, 28], \"opt\": [12, 1, 28, 28], \"max\": [16, 1, 28, 28]}]}]' '$T/out'"
if command -v python3 >/dev/null 2>&1; then
    expect "... which parses, the inputs' shapes being the largest" \
        "python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d[\"dynamic\"] is True and len(d[\"profiles\"]) == 2
assert d[\"profiles\"][1][\"inputs\"][0][\"max\"] == [16, 1, 28, 28]
assert d[\"inputs\"][0][\"shape\"] == [16, 1, 28, 28]
' '$T/out'"
fi
run "$KILN" inspect "$T/pair.plan" --json
expect "inspect --json lists both inputs of a profile" \
    "[ $rc -eq 0 ] && grep -qF '{\"name\": \"b\", \"min\": [1, 1, 8], \"opt\": [2, 4, 8], \"max\": [4, 16, 8]}' '$T/out'"
run "$KILN" inspect "$T/lenet.plan" --json
expect "inspect --json of a static plan: dynamic false, one profile of its shapes" \
    "[ $rc -eq 0 ] && grep -q '\"dynamic\": false' '$T/out' \
     && grep -qF '\"profiles\": [{\"inputs\": [{\"name\": \"data\", \"min\": [1, 1, 28, 28], \"opt\": [1, 1, 28, 28], \"max\": [1, 1, 28, 28]}]}]' '$T/out'"

write_npy "$T/digit3.npy" '<f4' '(3, 1, 28, 28)' $((3 * 784))
run "$KILN" run "$T/dyn.plan" --input "data=$T/digit3.npy" -d "$T/res-dyn"
expect "run a dynamic plan at batch 3: prob is 3x10 (128 + 120 bytes)" \
    "[ $rc -eq 0 ] && grep -Eq '^prob +3x10 +f32' '$T/out' \
     && [ \$(wc -c <'$T/res-dyn/prob.npy') -eq 248 ]"
expect "... and its 3 softmax rows sum to 3" \
    "awk -v s=\$(npy_sum '$T/res-dyn/prob.npy') 'BEGIN { exit !(s > 2.997 && s < 3.003) }'"
run "$KILN" run "$T/dyn.plan" --input "data=$T/digit.npy" -d "$T/res-dyn1"
expect "... and at batch 1, the same first row" \
    "[ $rc -eq 0 ] && cmp -s <(tail -c 40 '$T/res-dyn1/prob.npy') <(head -c 168 '$T/res-dyn/prob.npy' | tail -c 40)"

write_npy "$T/digit9.npy" '<f4' '(9, 1, 28, 28)' $((9 * 784)) zeros
expect_fail "run a dynamic plan at a batch outside its profile" 1 \
    "$KILN" run "$T/dyn.plan" --input "data=$T/digit9.npy" -d "$T/res-x"
expect "... names the input, the dimension and the range" \
    "grep -q \"input 'data': dimension 0 is 9; profile 0 allows 1..8\" '$T/err' \
     && grep -q 'digit9.npy' '$T/err'"
run "$KILN" run "$T/dyn2.plan" --profile 1 --input "data=$T/digit9.npy" -d "$T/res-p1"
expect "run --profile 1 takes batch 9" "[ $rc -eq 0 ] && grep -Eq '^prob +9x10 +f32' '$T/out'"
expect_fail "run --profile 1 refuses batch 3" 1 \
    "$KILN" run "$T/dyn2.plan" --profile 1 --input "data=$T/digit3.npy" -d "$T/res-x"
expect "... naming profile 1's range" "grep -q 'dimension 0 is 3; profile 1 allows 9..16' '$T/err'"
expect_fail "run --profile beyond the plan's profiles" 2 \
    "$KILN" run "$T/dyn2.plan" --profile 2 --input "data=$T/digit9.npy" -d "$T/res-x"
expect "... says how many there are" "grep -q '2 profiles' '$T/err'"

run "$KILN" run "$T/digits-dyn.plan" --input "pixels=$ROOT/models/digits/test_x.npy" -d "$T/res-digits"
expect "run the dynamic digits plan on all 450 held-out rows" \
    "[ $rc -eq 0 ] && grep -Eq '^probabilities +450x10 +f32' '$T/out'"

write_npy "$T/a25.npy" '<f4' '(2, 5, 8)' 80
write_npy "$T/b25.npy" '<f4' '(2, 5, 8)' 80 zeros
write_npy "$T/b26.npy" '<f4' '(2, 6, 8)' 96 zeros
run "$KILN" run "$T/pair.plan" -i "a=$T/a25.npy" -i "b=$T/b25.npy" -d "$T/res-pair"
expect "run a two-input dynamic plan: y follows the inputs' shape" \
    "[ $rc -eq 0 ] && grep -Eq '^y +2x5x3 +f32' '$T/out'"
expect_fail "run with two inputs in range that do not fit each other" 1 \
    "$KILN" run "$T/pair.plan" -i "a=$T/a25.npy" -i "b=$T/b26.npy" -d "$T/res-x"
expect "... the library's reason, with context" \
    "grep -q \"output 'y'\" '$T/err' && grep -q '2x5x8 and 2x6x8' '$T/err'"

run "$KILN" bench "$T/dyn.plan" --contexts 2 --batch 8 --threads 1 -n 3 --warmup 1
expect "bench --contexts 2 --batch 8 on a dynamic plan prints throughput and memory" \
    "[ $rc -eq 0 ] && grep -q '^contexts    2 ' '$T/out' && grep -q '^shapes      data 8x1x28x28 (profile 0; batch 8)' '$T/out' \
     && grep -q '6 in all' '$T/out' && grep -Eq '^throughput  [0-9.]+ runs/s, [0-9.]+ inferences/s$' '$T/out' \
     && grep -Eq '^memory      weights .* once \+ 2 x arena .* \(2 separate engines: ' '$T/out' \
     && [ ! -s '$T/err' ]"

run "$KILN" bench "$T/dyn.plan" -n 2 --warmup 0 --json
expect "bench --json of a dynamic plan runs at the opt shape by default" \
    "[ $rc -eq 0 ] && [ \$(wc -l <'$T/out') -eq 1 ] && grep -qF '\"shapes\": {\"data\": [4, 1, 28, 28]}' '$T/out' \
     && grep -q '\"batch\": 4,' '$T/out' && grep -q '\"contexts\": 1,' '$T/out' \
     && grep -q '\"inferences_per_s\": [0-9]' '$T/out' && grep -q '\"weight_bytes\": [1-9]' '$T/out' \
     && grep -q '\"arena_bytes_per_context\": [1-9]' '$T/out'"

run "$KILN" bench "$T/dyn.plan" -n 2 --warmup 1 --contexts 3 --threads 1 --json
num() { grep -o "\"$1\": [0-9.]*" "$T/out" | grep -o '[0-9.]*$'; }
expect "bench --json --contexts 3: runs, memory of shared weights vs 3 engines" \
    "[ $rc -eq 0 ] && grep -q '\"contexts\": 3,' '$T/out' && grep -q '\"runs\": 6,' '$T/out' \
     && [ \$(num memory_bytes) -eq \$((\$(num weight_bytes) + 3 * \$(num arena_bytes_per_context))) ] \
     && [ \$(num separate_engines_bytes) -eq \$((3 * (\$(num weight_bytes) + \$(num arena_bytes_per_context)))) ]"
if command -v python3 >/dev/null 2>&1; then
    expect "... which parses, with inferences = runs/s x batch" \
        "python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d[\"batch\"] == 4 and d[\"shapes\"] == {\"data\": [4, 1, 28, 28]}
assert abs(d[\"inferences_per_s\"] - 4 * d[\"throughput_per_s\"]) <= 1e-3 * d[\"inferences_per_s\"] + 0.01
assert d[\"wall_ms\"] > 0 and d[\"min_ms\"] <= d[\"median_ms\"] <= d[\"max_ms\"]
' '$T/out'"
fi

run "$KILN" bench "$T/dyn.plan" -n 2 --warmup 0 --shapes data:2x1x28x28 --json
expect "bench --shapes runs at that shape" \
    "[ $rc -eq 0 ] && grep -qF '\"shapes\": {\"data\": [2, 1, 28, 28]}' '$T/out' && grep -q '\"batch\": 2,' '$T/out'"
run "$KILN" bench "$T/dyn2.plan" -n 2 --warmup 0 --profile 1 --json
expect "bench --profile 1 runs at profile 1's opt shape" \
    "[ $rc -eq 0 ] && grep -qF '\"shapes\": {\"data\": [12, 1, 28, 28]}' '$T/out' && grep -q '\"profile\": 1,' '$T/out'"
run "$KILN" bench "$T/pair.plan" -n 2 --warmup 0 --batch 3
expect "bench --batch sets dimension 0 of every input" \
    "[ $rc -eq 0 ] && grep -q '^shapes      a 3x4x8, b 3x4x8 (profile 0; batch 3)' '$T/out'"

expect_fail "bench at a batch outside the profile" 1 "$KILN" bench "$T/dyn.plan" --batch 9 -n 1
expect "... names the input, the dimension and the range" \
    "grep -q \"input 'data': dimension 0 is 9; profile 0 allows 1..8\" '$T/err'"
expect_fail "bench a static plan at another batch" 1 "$KILN" bench "$T/lenet.plan" --batch 2 -n 1
expect "... says what it was built for" "grep -q 'built for 1' '$T/err'"
expect_fail "bench --contexts 0" 2 "$KILN" bench "$T/dyn.plan" --contexts 0
expect_fail "bench --batch with --shapes" 2 "$KILN" bench "$T/dyn.plan" --batch 2 --shapes data:2x1x28x28
expect_fail "bench --shapes for an input the plan lacks" 2 "$KILN" bench "$T/dyn.plan" --shapes image:1x3
expect_fail "bench --profile beyond the plan's profiles" 2 "$KILN" bench "$T/dyn.plan" --profile 1
expect_fail "bench with a malformed --shapes" 2 "$KILN" bench "$T/dyn.plan" --shapes data:2xx1

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
