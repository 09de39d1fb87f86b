#!/usr/bin/env bash
# Helpers shared by kubequake's provisioning scripts. Every step checks before it changes,
# so running provisioning twice changes nothing the second time.

# The stage directory holds the uploaded scripts and, on the first control plane, the CA;
# the state directory keeps downloaded manifests. Both are used by the sourcing scripts.
KQ_STAGE="${KQ_STAGE:-/var/lib/kubequake/stage}"
# shellcheck disable=SC2034
KQ_STATE=/var/lib/kubequake
export DEBIAN_FRONTEND=noninteractive

kq_log() {
  printf 'kubequake[%s] %s\n' "${KQ_NODE_NAME:-node}" "$*"
}

kq_die() {
  printf 'kubequake[%s] ERROR: %s\n' "${KQ_NODE_NAME:-node}" "$*" >&2
  exit 1
}

# kq_require VAR...: fail early, naming the variable, when the Vagrantfile did not pass it.
kq_require() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || kq_die "$name is not set; run provisioning through the Vagrantfile"
  done
}

# kq_put PATH MODE < CONTENT: write PATH only if CONTENT differs. Succeeds when it wrote,
# fails when the file was already up to date, so callers restart services only on change:
#   if kq_put /etc/x.conf 0644 <<<"$text"; then systemctl restart x; fi
kq_put() {
  local path=$1 mode=$2 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [[ -f "$path" ]] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
    chmod "$mode" "$path"
    return 1
  fi
  install -D -m "$mode" "$tmp" "$path"
  rm -f "$tmp"
  kq_log "wrote $path"
  return 0
}

# kq_wait_for SECONDS WHAT COMMAND...: retry COMMAND every 3 s until it succeeds or time runs out.
kq_wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      kq_die "$what: not reached within ${timeout}s"
    fi
    sleep 3
  done
}

# kq_fetch URL DEST: download with connect and total timeouts, retrying transient failures.
kq_fetch() {
  curl -fsSL --connect-timeout 20 --max-time 600 --retry 5 --retry-delay 3 -o "$2" "$1" ||
    kq_die "download of $1 failed; check the VM's internet access"
}

# kq_packages PKG...: install the Debian packages that are missing, and only those.
kq_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    kq_log "installing ${missing[*]}"
    timeout 600 apt-get update -qq
    timeout 1200 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# kq_interface_of IP: the network interface that carries IP (eth1, enp0s8, ... by provider).
kq_interface_of() {
  ip -o -4 addr show | awk -v ip="$1" '{ split($4, a, "/"); if (a[1] == ip) { print $2; exit } }'
}

# kq_peers "name=ip,name=ip": one "name ip" line per entry.
kq_peers() {
  tr ',' '\n' <<<"$1" | awk -F= 'NF == 2 { print $1, $2 }'
}

# kq_api_ready: the API answers /readyz through the VIP (anonymous access is kubeadm's default).
kq_api_ready() {
  [[ "$(curl -sk --max-time 5 -o /dev/null -w '%{http_code}' "https://${KQ_VIP}:${KQ_API_PORT}/readyz")" == 200 ]]
}
