#!/usr/bin/env bash
# npm run setup: everything Loupe needs on a development or CI machine. Idempotent: each step checks
# what is already there and skips it, so rerunning it is cheap.
#   1. Node packages (npm ci), unless node_modules already matches package-lock.json.
#   2. A Python virtual environment with the pinned Milvus Lite (scripts/requirements-milvus.txt).
#      For the tests, the S3 test endpoint (moto, an S3 emulator) in a venv of its own, .tmp/s3-test-server.
#   3. Execute permission on the bundled ffprobe/ffmpeg binaries (npm may skip their postinstall).
#   4. Fonts that `loupe synth screens` renders screenshots with (DejaVu, Noto CJK), from Debian's
#      packages when running as root with apt-get; otherwise a note saying what to install.
#   5. Chromium for the browser tests (Debian's `chromium`), the same way.
#   6. The compiled code in dist/ (scripts/build.sh; skipped when dist/ is newer than every source).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv_dir="${LOUPE_VENV_DIR:-.venv}"
requirements="scripts/requirements-milvus.txt"

say() { printf 'setup: %s\n' "$*"; }
fail() {
  printf 'setup: error: %s\n' "$*" >&2
  exit 1
}

# --- Node -----------------------------------------------------------------------------------------
command -v node >/dev/null || fail "node is not installed. Install Node.js 20.19 or newer (https://nodejs.org)."
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' ||
  fail "Node.js $(node --version) is too old; Loupe needs 20.19 or newer."

# npm's own record of what it installed (node_modules/.package-lock.json) is rewritten by every install;
# if it is newer than the lock file and `npm ls` finds nothing missing or mismatched, the tree is current.
if [ -f node_modules/.package-lock.json ] && [ ! package-lock.json -nt node_modules/.package-lock.json ] &&
  npm ls --depth=0 >/dev/null 2>&1; then
  say "node_modules matches package-lock.json; skipping npm ci."
else
  say "installing Node packages (npm ci)..."
  # onnxruntime-node would otherwise download GPU binaries at install time; the CPU build ships in the package.
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund || fail "npm ci failed (see above). Check network access to the npm registry."
fi

# --- Python venv with Milvus Lite ---------------------------------------------------------------------
# Exit 0 when the interpreter is Python 3.10 or newer.
python_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1; }

# Exit 0 when every name==version pin of the requirements file ($1, default the Milvus Lite one) is installed in the venv.
pins_installed() {
  "$venv_dir/bin/python" - "${1:-$requirements}" <<'PY' >/dev/null 2>&1
import importlib.metadata, re, sys
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, version = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)$", line).groups()
    if importlib.metadata.version(name) != version:
        sys.exit(1)
PY
}

if [ -x "$venv_dir/bin/python" ] && python_ok "$venv_dir/bin/python" && pins_installed; then
  say "$venv_dir already has the pinned Milvus Lite; skipping."
else
  python=""
  for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
      python="$candidate"
      break
    fi
  done
  [ -n "$python" ] || fail "no Python 3.10 or newer found (tried python3.13 … python3.10, python3). Install one, e.g. apt-get install python3 python3-venv."
  if [ ! -x "$venv_dir/bin/python" ] || ! python_ok "$venv_dir/bin/python"; then
    say "creating $venv_dir with $($python --version 2>&1)..."
    rm -rf "$venv_dir"
    "$python" -m venv "$venv_dir" ||
      fail "could not create $venv_dir with $python. On Debian/Ubuntu install the venv module: apt-get install python3-venv."
  fi
  say "installing Milvus Lite into $venv_dir (pip install -r $requirements)..."
  "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements" ||
    fail "pip could not install $requirements into $venv_dir. Check network access to PyPI."
  pins_installed || fail "$venv_dir does not have the versions pinned in $requirements after installing them."
fi
"$venv_dir/bin/milvus-lite" --help >/dev/null 2>&1 ||
  fail "$venv_dir/bin/milvus-lite does not run. Delete $venv_dir and run npm run setup again."

# --- Model tools in the same venv ----------------------------------------------------------------------
# `loupe models quantize` (onnxruntime's quantization tools) and the tokenizer check run with these.
models_requirements="scripts/requirements-models.txt"
if pins_installed "$models_requirements"; then
  say "$venv_dir already has the pinned model tools; skipping."
else
  say "installing the model tools into $venv_dir (pip install -r $models_requirements)..."
  "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$models_requirements" ||
    fail "pip could not install $models_requirements into $venv_dir. Check network access to PyPI."
  pins_installed "$models_requirements" ||
    fail "$venv_dir does not have the versions pinned in $models_requirements after installing them."
fi

# --- S3 test endpoint ------------------------------------------------------------------------------------
# Loupe itself needs none; the S3 blob store tests (test/media/s3-blob-store.int.test.ts) start moto's server
# mode, an emulator of the S3 API, from a venv of its own (its dependencies stay out of Milvus Lite's venv).
s3_test_venv=".tmp/s3-test-server/venv"
s3_test_requirements="scripts/requirements-s3-test.txt"
if [ ! -f "$s3_test_requirements" ]; then
  say "no $s3_test_requirements (an installed package has no tests); skipping the S3 test server."
elif [ -x "$s3_test_venv/bin/moto_server" ] && venv_dir="$s3_test_venv" pins_installed "$s3_test_requirements"; then
  say "$s3_test_venv already has the pinned S3 test server (moto); skipping."
else
  say "installing the S3 test server (moto, an S3 emulator) into $s3_test_venv..."
  rm -rf "$s3_test_venv"
  "$venv_dir/bin/python" -m venv "$s3_test_venv" ||
    fail "could not create $s3_test_venv. On Debian/Ubuntu install the venv module: apt-get install python3-venv."
  "$s3_test_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$s3_test_requirements" ||
    fail "pip could not install $s3_test_requirements into $s3_test_venv. Check network access to PyPI."
  venv_dir="$s3_test_venv" pins_installed "$s3_test_requirements" ||
    fail "$s3_test_venv does not have the versions pinned in $s3_test_requirements after installing them."
fi

# --- Bundled media binaries -----------------------------------------------------------------------------
for package in @ffprobe-installer/ffprobe @ffmpeg-installer/ffmpeg; do
  binary="$(node -e "process.stdout.write(require('$package').path)" 2>/dev/null)" ||
    fail "$package has no binary for this platform ($(uname -s) $(uname -m))."
  chmod a+rx "$binary" || fail "could not make $binary executable."
  "$binary" -version >/dev/null 2>&1 || fail "$binary does not run on this machine."
done
say "ffprobe and ffmpeg are executable."

# --- Fonts for rendered screenshots ---------------------------------------------------------------------
# Loupe itself needs none; `loupe synth screens` (the screenshot eval suites and their tests) draws text
# with these families through fontconfig.
fonts_present() {
  local families
  families="$(fc-list : family 2>/dev/null || true)"
  [[ "$families" == *"DejaVu Sans"* && "$families" == *"Noto Sans CJK"* ]]
}
if fonts_present; then
  say "DejaVu and Noto CJK fonts are installed."
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing fonts-dejavu-core and fonts-noto-cjk with apt-get..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fontconfig fonts-dejavu-core fonts-noto-cjk >/dev/null; } ||
    fail "apt-get could not install fonts-dejavu-core and fonts-noto-cjk."
  fonts_present || fail "fonts-dejavu-core and fonts-noto-cjk are installed but fontconfig does not list them."
else
  say "note: DejaVu and Noto CJK fonts are missing; \`loupe synth screens\` needs them (apt-get install fonts-dejavu-core fonts-noto-cjk)."
fi

# --- Chromium for the browser tests ---------------------------------------------------------------------
# Loupe itself needs none; the browser tests (test/browser) drive it headless with playwright-core, which
# downloads no browser of its own.
chromium_bin="${LOUPE_CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$chromium_bin" ]; then
  say "Chromium for the browser tests is at $chromium_bin."
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing chromium with apt-get (for the browser tests)..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
    fail "apt-get could not install chromium."
  [ -x "$chromium_bin" ] || fail "chromium is installed but $chromium_bin is not executable; set LOUPE_CHROMIUM_PATH."
else
  say "note: Chromium is missing; the browser tests need it (apt-get install chromium, or set LOUPE_CHROMIUM_PATH)."
fi

# --- Build -------------------------------------------------------------------------------------------------
# bin/loupe.js runs the compiled code in dist/; no TypeScript compiler runs when Loupe does.
bash scripts/build.sh || fail "the TypeScript build failed (see above)."

say "done. Start the server with: npm start"
