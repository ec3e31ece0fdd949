# Shared by scripts/demo and scripts/test: find Python 3.11+, make .venv, install bastion.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BASTION_VENV:-$ROOT/.venv}"
VENDOR="$ROOT/vendor"  # browser assets from the npm registry (gitignored, never committed)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
    # Install the Debian packages named, when missing; only root can.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    as_root || die "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    die "bastion needs Python 3.11 or newer (apt-get install python3)"
}

make_venv() {
    # $1: the pip extras to install ("" or "test"). Reinstalls only when a build input changed.
    local extras="$1" python stamp want
    python="$(find_python)"
    if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        "$python" -m venv "$VENV"
    fi
    # The compiled parts (bastion/masking/_fastrows.c, bastion/pgwire/_fastscan.c,
    # bastion/audit/_fastchain.c, bastion/audit/_fastqlog.c) need a C compiler, Python's
    # headers, and SQLite's and OpenSSL's headers (the chain's walk and the query log's
    # check read the store and hash with them).
    apt_install gcc libc6-dev libsqlite3-dev libssl-dev
    if [ ! -f "$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then
        apt_install python3-dev
    fi
    stamp="$VENV/.bastion-installed"
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT"/bastion/*/_fast*.[ch] |
        sha256sum | cut -d' ' -f1)"
    have="$(cat "$stamp" 2>/dev/null || true)"
    # Up to date when the build inputs are unchanged and the extras asked for are installed.
    if [ "${have%% *}" != "$want" ] || { [ -n "$extras" ] && [ "${have#* }" != "$extras" ]; } ||
        ! "$VENV/bin/python" -c \
            'import bastion.masking._fastrows, bastion.pgwire._fastscan, bastion.audit._fastchain, bastion.audit._fastqlog' \
            2>/dev/null; then
        say "installing bastion${extras:+ with [$extras]} into $VENV"
        "$VENV/bin/python" -m pip install -qq --upgrade pip
        "$VENV/bin/python" -m pip install -qq -e "$ROOT${extras:+[$extras]}"
        echo "$want $extras" >"$stamp"
    fi
    install_player
}

install_player() {
    # The web console's recording player, asciinema-player, from the npm registry into
    # vendor/ (bastion/reviewing/player.py finds it there). The version and the integrity
    # hash of every package are pinned in scripts/player/package-lock.json; `npm ci`
    # installs exactly that and refuses a tarball whose hash differs.
    local want have
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    want="$(cat "$ROOT/scripts/player/package.json" "$ROOT/scripts/player/package-lock.json" |
        sha256sum | cut -d' ' -f1)"
    have="$(cat "$VENDOR/.bastion-installed" 2>/dev/null || true)"
    if [ "$want" = "$have" ] && [ -f "$VENDOR/node_modules/asciinema-player/package.json" ]; then
        return 0
    fi
    say "installing the recording player (asciinema-player) into $VENDOR"
    mkdir -p "$VENDOR"
    cp "$ROOT/scripts/player/package.json" "$ROOT/scripts/player/package-lock.json" "$VENDOR/"
    (cd "$VENDOR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) ||
        die "npm could not install the recording player into $VENDOR (see above)"
    echo "$want" >"$VENDOR/.bastion-installed"
}
