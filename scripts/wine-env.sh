# Sourced by scripts/wine-*.sh: where the Wine prefix lives and how to call the Windows python.
# Kept outside the work tree so that a fresh clone (CI) reuses a machine's provisioned prefix.
WINE_ROOT=${GRACEFUL_WINE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/graceful-wine}
export WINEPREFIX=$WINE_ROOT/prefix WINEARCH=win64 WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml="   # no Mono/Gecko install prompts
WIN_PYDIR=$WINEPREFIX/drive_c/Python312
WIN_PY='C:\Python312\python.exe'
# The Windows python.exe under Wine cannot write to a regular file: always pipe through cat.
winpy() { wine "$WIN_PY" "$@" </dev/null 2>&1 | tr -d '\r' | cat; }
# A persistent wineserver, detached from our stdout: otherwise it exits ~3 s after its last
# client (killing running services) and services.exe inherits our pipes.
wine_server_up() {
  wineserver -p </dev/null >/dev/null 2>&1 || true   # exits at once if one is already running
  wineboot </dev/null >/dev/null 2>&1 || true          # starts services.exe, rpcss once
}
