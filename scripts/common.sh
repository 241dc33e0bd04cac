# Call Vitals: shell helpers every script sources: strict mode with a loud error trap, steps, and the one tool installer.
#
# Every script here starts with `source "$(dirname "$0")/common.sh"` and then:
#   need TOOL...   checks each tool and installs what is missing (the only install logic there is);
#   step "what"    names the step that is running, so a failure can say which one failed.
# A failing command never ends a script silently: the ERR trap prints the step, the file and line,
# the command, its exit status and what to do. VITALS_TRACE=1 prints every command as it runs.
# VITALS_TOOLS_DRY_RUN=1 makes `need` print one `would install: KIND:NAME` line per missing tool on
# stdout instead of installing it, and ends the script (scripts/test-scripts checks those lists).

set -Eeuo pipefail
[ "${VITALS_TRACE:-0}" = 1 ] && set -x

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# cargo's own bin folder (cargo, rustup, and what `cargo install` puts there), unless cargo is
# already on PATH: a PATH the caller chose (scripts/test-scripts hides tools with one) is kept.
command -v cargo >/dev/null 2>&1 || export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

VITALS_SCRIPT="$(basename "$0")"
VITALS_STEP="starting"
VITALS_HINT=""
VITALS_STARTED="$(date +%s)"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
# die MESSAGE [WHAT TO DO]: a clear stop, for a cause the script found itself.
die() {
  printf '\nerror (%s, step "%s"): %s\n' "$VITALS_SCRIPT" "$VITALS_STEP" "$1" >&2
  [ -z "${2:-}" ] || printf '  what to do: %s\n' "$2" >&2
  exit 1
}
# step NAME: the step that runs now (printed with the seconds since the script started).
step() {
  VITALS_STEP="$*"
  VITALS_HINT=""
  log "$* ($(($(date +%s) - VITALS_STARTED)) s)"
}
# hint TEXT: what to do if the current step fails (overrides the general advice).
hint() { VITALS_HINT="$*"; }

vitals_on_error() {
  local status="$1" line="$2" cmd="$3" file="$4"
  # Only the script's own process reports: a failure in a subshell or $(...) reaches it anyway.
  [ "$BASHPID" = "$$" ] || return 0
  trap - ERR
  {
    printf '\nerror (%s): step "%s" failed with exit status %s\n' "$VITALS_SCRIPT" "$VITALS_STEP" "$status"
    printf '  at %s:%s: %s\n' "${file#"$ROOT"/}" "$line" "$cmd"
    printf '  what to do: %s\n' "${VITALS_HINT:-read the output above for the cause, fix it and run the command again (VITALS_TRACE=1 prints every command)}"
  } >&2
  exit "$status"
}
trap 'vitals_on_error "$?" "$LINENO" "$BASH_COMMAND" "${BASH_SOURCE[0]:-$0}"' ERR

# ---- tools ----------------------------------------------------------------------------------

# The wasm-bindgen version locked in Cargo.lock: wasm-bindgen-cli must be exactly this version.
wasm_bindgen_version() {
  awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# cargo-deny, at this version (scripts/test checks licenses, bans and sources with it).
CARGO_DENY_VERSION=0.20.2

# installed_version COMMAND: the version COMMAND --version reports (its second word), or
# nothing when there is no such command or it fails.
installed_version() {
  command -v "$1" >/dev/null 2>&1 || return 0
  "$1" --version 2>/dev/null | awk '{print $2}' || true
}

# Each tool a script can need: `deb:PACKAGE` when the command is missing, or a check of its own.
# tool_plan TOOL prints what would install it ("" when it is there).
tool_plan() {
  case "$1" in
    python3) command -v python3 >/dev/null 2>&1 || echo deb:python3 ;;
    curl) command -v curl >/dev/null 2>&1 || echo deb:curl ;;
    pkg-config) command -v pkg-config >/dev/null 2>&1 || echo deb:pkg-config ;;
    # The collector's webhook client and the WebDriver client link OpenSSL (native-tls).
    openssl-dev) dpkg -s libssl-dev >/dev/null 2>&1 || echo deb:libssl-dev ;;
    rsvg) command -v rsvg-convert >/dev/null 2>&1 || echo deb:librsvg2-bin ;;
    chromium) command -v chromium >/dev/null 2>&1 || echo deb:chromium ;;
    chromedriver) command -v chromedriver >/dev/null 2>&1 || echo deb:chromium-driver ;;
    redis) command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || echo deb:redis-server ;;
    turn) command -v turnserver >/dev/null 2>&1 || echo deb:coturn ;;
    # The SFU of the browser test e2e/tests/browser/sfu.rs (VideoRoom plugin, HTTP transport).
    janus) command -v janus >/dev/null 2>&1 || echo deb:janus ;;
    wasm32) rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || echo rustup-target:wasm32-unknown-unknown ;;
    clippy) rustup component list --installed 2>/dev/null | grep -q '^clippy' || echo rustup-component:clippy ;;
    rustfmt) rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || echo rustup-component:rustfmt ;;
    wasm-bindgen)
      local want have
      want="$(wasm_bindgen_version)"
      [ -n "$want" ] || die "no wasm-bindgen in $ROOT/Cargo.lock" "restore Cargo.lock from git (git checkout Cargo.lock)"
      have="$(installed_version wasm-bindgen)"
      [ "$have" = "$want" ] || echo "cargo:wasm-bindgen-cli@$want"
      ;;
    cargo-deny) [ "$(installed_version cargo-deny)" = "$CARGO_DENY_VERSION" ] || echo "cargo:cargo-deny@$CARGO_DENY_VERSION" ;;
    *) die "unknown tool '$1' in a need list" "add it to tool_plan in scripts/common.sh" ;;
  esac
}

# need TOOL...: installs every missing tool (Debian packages in one apt-get call), or with
# VITALS_TOOLS_DRY_RUN=1 prints `would install: PLAN` for each, installs nothing and ends the script.
need() {
  local tool plan debs=() others=()
  command -v cargo >/dev/null 2>&1 || die "cargo (Rust) is not installed" \
    "install Rust with rustup (the standard installer) and open a new shell, then run this again"
  command -v rustup >/dev/null 2>&1 || die "rustup is not installed (needed for the wasm32 target)" \
    "install Rust with rustup rather than a distribution's cargo, then run this again"
  for tool in "$@"; do
    plan="$(tool_plan "$tool")"
    case "$plan" in
      "") ;;
      deb:*) debs+=("${plan#deb:}") ;;
      *) others+=("$plan") ;;
    esac
  done
  if [ "${VITALS_TOOLS_DRY_RUN:-0}" = 1 ]; then
    for plan in "${debs[@]/#/deb:}" "${others[@]}"; do [ -z "$plan" ] || echo "would install: $plan"; done
    exit 0
  fi
  [ ${#debs[@]} -eq 0 ] || install_debs "${debs[@]}"
  for plan in "${others[@]}"; do
    case "$plan" in
      rustup-target:*)
        log "adding the Rust target ${plan#*:}"
        hint "run: rustup target add ${plan#*:}"
        rustup target add "${plan#*:}"
        ;;
      rustup-component:*)
        log "adding the Rust component ${plan#*:}"
        hint "run: rustup component add ${plan#*:}"
        rustup component add "${plan#*:}"
        ;;
      cargo:*)
        # cargo:CRATE@VERSION, whose binary is the crate's name less a "-cli".
        local crate="${plan#cargo:}" version="${plan#*@}"
        crate="${crate%@*}"
        local binary="${crate%-cli}"
        log "installing $crate $version (found: $(installed_version "$binary" | grep . || echo none)); a few minutes, once"
        hint "run: cargo install $crate --version $version --force (it builds from crates.io)"
        # No --locked: it fails against the registry mirror here.
        cargo install "$crate" --version "$version" --force
        command -v "$binary" >/dev/null 2>&1 || export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        [ "$(installed_version "$binary")" = "$version" ] ||
          die "$crate $version was installed but the $binary on PATH ($(command -v "$binary")) reports '$(installed_version "$binary")'" \
            "remove the other $binary or put ${CARGO_HOME:-$HOME/.cargo}/bin first on PATH"
        ;;
    esac
  done
  VITALS_HINT=""
}

# install_debs PACKAGE...: one apt-get update and install, as root or through sudo.
install_debs() {
  local sudo=""
  command -v apt-get >/dev/null 2>&1 || die "missing Debian packages: $* (and no apt-get on this machine)" \
    "install the programs these packages provide ($*) with your system's package manager, then run this again"
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing Debian packages: $*; installing them needs root and there is no sudo" \
      "as root run: apt-get update && apt-get install -y --no-install-recommends $*"
    sudo="sudo"
  fi
  log "installing Debian packages: $*"
  hint "as root run: apt-get update && apt-get install -y --no-install-recommends $* (and check that Debian's package archive is reachable)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The tools of each script, in one place (scripts/test-scripts checks these lists).
TOOLS_BUILD=(python3 rsvg wasm32 wasm-bindgen)
TOOLS_RUN=(python3 rsvg pkg-config openssl-dev wasm32 wasm-bindgen)
TOOLS_TEST=(python3 rsvg pkg-config openssl-dev chromium chromedriver redis turn janus wasm32 wasm-bindgen clippy rustfmt cargo-deny)
TOOLS_BENCH_COLLECTOR=(python3 curl pkg-config openssl-dev redis)
TOOLS_BENCH_EXTENSION=(python3 rsvg pkg-config openssl-dev chromium chromedriver wasm32 wasm-bindgen)
TOOLS_RECORD_FIXTURES=(python3 pkg-config openssl-dev chromium chromedriver turn)

# ---- small helpers --------------------------------------------------------------------------

# cargo's target folder (CARGO_TARGET_DIR when set).
target_dir() {
  if [ -n "${CARGO_TARGET_DIR:-}" ]; then echo "$CARGO_TARGET_DIR"; return; fi
  cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

# free_port: prints a TCP port nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

random_key() {
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'
}
