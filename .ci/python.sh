#!/usr/bin/env bash
# The Python wheel (python/): build it with maturin, install it into a fresh venv with numpy and
# run its pytest suite against the `m2` command; cross-build the aarch64 wheel and import and
# run it under qemu-aarch64 with Debian's arm64 Python 3.11 (from the package archive, unpacked
# into a scratch root: nothing is installed on this machine).
#
#   bash .ci/python.sh            (CI calls it from .ci/run; needs python3 with venv, cargo,
#                                  and for step 3 aarch64-linux-gnu-gcc, qemu-aarch64, apt-get)
#
# Tool versions are pinned here; the wheel's Rust dependencies by python/Cargo.lock (--locked).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/m2-python.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
MATURIN=1.9.6
NUMPY=2.2.6
PYTEST=8.4.2
MYPY=1.18.2
SECONDS=0
say() { echo "--- [$(printf '%4d' "$SECONDS")s] $*"; }

say "python crate: cargo fmt --check"
cargo fmt --manifest-path python/Cargo.toml -- --check

say "build venv: maturin $MATURIN"
python3 -m venv "$WORK/build"
"$WORK/build/bin/pip" install -q --disable-pip-version-check "maturin==$MATURIN"

say "1. the x86_64 wheel (maturin build --release) and the m2 command to compare with"
# (the debug build: `cargo test --workspace` has built it in CI already; same captions, bit for
# bit, as a release build)
cargo build --locked --bin m2
(cd python && "$WORK/build/bin/maturin" build --release --locked -o "$WORK/wheels" 2>&1 | tail -n 1)
WHEEL=$(ls "$WORK"/wheels/m2-*.whl)
echo "wheel: $(basename "$WHEEL") $(stat -c %s "$WHEEL") bytes"

say "2. a fresh venv: the wheel + numpy $NUMPY + pytest $PYTEST; pytest; the stubs (mypy stubtest)"
python3 -m venv "$WORK/test"
"$WORK/test/bin/pip" install -q --disable-pip-version-check "numpy==$NUMPY" "pytest==$PYTEST" \
    "mypy==$MYPY"
"$WORK/test/bin/pip" install -q --disable-pip-version-check --no-index --no-deps "$WHEEL"
(cd python && M2_BIN="$CARGO_TARGET_DIR/debug/m2" "$WORK/test/bin/python" -m pytest -q -rs \
    -p no:cacheprovider tests)
(cd "$WORK" && "$WORK/test/bin/python" -m mypy.stubtest m2 \
    --allowlist "$ROOT/python/stubtest-allowlist.txt")
# what the aarch64 wheel must say too
(cd "$WORK" && "$WORK/test/bin/python" - "$ROOT" > host.json <<'EOF'
import json, sys, numpy as np, m2
root = sys.argv[1]
m = m2.Model(f"{root}/assets/demo/demo-int8.m2")
x = np.load(f"{root}/assets/demo/test_features.npy")[:24]
print(json.dumps(m.caption_batch(x, threads=2, return_tokens=True, return_score=True)))
EOF
)

say "3. the aarch64 wheel (cross-built: aarch64-linux-gnu-gcc links it)"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
(cd python && "$WORK/build/bin/maturin" build --release --locked \
    --target aarch64-unknown-linux-gnu -o "$WORK/wheels-aarch64" 2>&1 | tail -n 1)
WHEEL_A64=$(ls "$WORK"/wheels-aarch64/m2-*aarch64.whl)
echo "wheel: $(basename "$WHEEL_A64") $(stat -c %s "$WHEEL_A64") bytes"

say "4. import and caption under qemu-aarch64 (Debian bookworm's arm64 python3.11, numpy $NUMPY)"
# A private apt state (lists, cache) for arm64 only: the machine's apt configuration is not
# touched. The packages come through apt's signed indices; their versions are bookworm's
# current ones (security updates replace old versions in the archive, so none is pinned).
APT=(-o Dir::State::Lists="$WORK/apt/lists" -o Dir::Cache="$WORK/apt/cache"
     -o Dir::State::status=/dev/null -o APT::Architecture=arm64 -o APT::Architectures::=arm64
     -o APT::Sandbox::User=root)
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/debs" "$WORK/a64"
apt-get "${APT[@]}" update -qq
(cd "$WORK/debs" && apt-get "${APT[@]}" download -qq python3.11-minimal libpython3.11-minimal \
    libpython3.11-stdlib zlib1g libexpat1 libffi8 libbz2-1.0 liblzma5 2>/dev/null)
for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/a64"; done
"$WORK/test/bin/pip" install -q --disable-pip-version-check --target "$WORK/a64-site" \
    --platform manylinux2014_aarch64 --python-version 3.11 --implementation cp \
    --only-binary=:all: "numpy==$NUMPY"
"$WORK/test/bin/python" -m zipfile -e "$WHEEL_A64" "$WORK/a64-site"   # a wheel is a zip
for cpu in cortex-a72:neon cortex-a76:dotprod; do
    QEMU_CPU=${cpu%%:*} QEMU_LD_PREFIX=/usr/aarch64-linux-gnu \
        LD_LIBRARY_PATH="$WORK/a64/usr/lib/aarch64-linux-gnu:$WORK/a64/lib/aarch64-linux-gnu" \
        PYTHONPATH="$WORK/a64-site" PYTHONHOME="$WORK/a64/usr" \
        qemu-aarch64 "$WORK/a64/usr/bin/python3.11" - "$ROOT" "$WORK/host.json" "${cpu##*:}" <<'EOF'
import json, platform, sys, numpy as np, m2
root, host, kernel = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
m = m2.Model(f"{root}/assets/demo/demo-int8.m2")
assert platform.machine() == "aarch64" and m.kernel == kernel, (platform.machine(), m.kernel)
x = np.load(f"{root}/assets/demo/test_features.npy")[:24]
got = m.caption_batch(x, threads=2, return_tokens=True, return_score=True)
same = sum(g[0] == h[0] and g[1] == h[1] for g, h in zip(got, host))
print(f"aarch64 ({m.kernel}): {m.caption_png(f'{root}/assets/demo/scenes/scene_01.png')!r}; "
      f"{same} of {len(host)} captions token for token as on x86_64")
assert same == len(host)
EOF
done
say "python wheel checks passed in ${SECONDS}s"
