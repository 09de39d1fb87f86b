#!/usr/bin/env bash
# What every Kubernetes node needs before kubeadm: kernel modules and sysctls, no swap,
# containerd and runc at pinned releases, and kubeadm/kubelet/kubectl pinned and held.
# Sourced by provision.sh after lib.sh.

kq_node_base() {
  kq_require KQ_K8S_VERSION KQ_CONTAINERD_VERSION KQ_RUNC_VERSION
  kq_packages ca-certificates curl gpg iptables iproute2 conntrack socat ethtool
  kq_kernel
  kq_swap_off
  kq_containerd
  kq_kube_packages
  kq_kubelet_node_ip
}

kq_kernel() {
  kq_put /etc/modules-load.d/kubequake.conf 0644 <<'CONF' || true
overlay
br_netfilter
CONF
  modprobe overlay
  modprobe br_netfilter
  if kq_put /etc/sysctl.d/90-kubequake.conf 0644 <<'CONF'; then
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
CONF
    sysctl --system >/dev/null
  fi
}

# The kubelet refuses to start with swap on unless told otherwise; the cluster should behave
# like a production one, so swap goes, now and after reboots.
kq_swap_off() {
  if [[ -n "$(swapon --show --noheadings)" ]]; then
    swapoff -a
    kq_log "swap turned off"
  fi
  if grep -Eq '^[^#].*[[:space:]]swap[[:space:]]' /etc/fstab; then
    sed -i -E 's/^([^#].*[[:space:]]swap[[:space:]].*)$/# disabled by kubequake: \1/' /etc/fstab
  fi
}

kq_arch() {
  dpkg --print-architecture
}

# containerd and runc from their upstream releases (Debian's containerd is older than what
# current Kubernetes supports), each checked against the sha256 published with the release.
kq_containerd() {
  local v=$KQ_CONTAINERD_VERSION r=$KQ_RUNC_VERSION arch restart=false dir
  arch=$(kq_arch)
  if [[ "$(/usr/local/bin/containerd --version 2>/dev/null | awk '{print $3}')" != "v$v" ]]; then
    dir=$(mktemp -d)
    local base="https://github.com/containerd/containerd/releases/download/v$v"
    kq_fetch "$base/containerd-$v-linux-$arch.tar.gz" "$dir/containerd-$v-linux-$arch.tar.gz"
    kq_fetch "$base/containerd-$v-linux-$arch.tar.gz.sha256sum" "$dir/sum"
    (cd "$dir" && sha256sum --check --quiet sum) || kq_die "containerd $v download does not match its sha256sum"
    tar -C /usr/local -xzf "$dir/containerd-$v-linux-$arch.tar.gz"
    rm -rf "$dir"
    kq_log "installed containerd $v"
    restart=true
  fi
  if [[ "$(/usr/local/sbin/runc --version 2>/dev/null | awk 'NR == 1 {print $3}')" != "$r" ]]; then
    dir=$(mktemp -d)
    local base="https://github.com/opencontainers/runc/releases/download/v$r"
    kq_fetch "$base/runc.$arch" "$dir/runc.$arch"
    kq_fetch "$base/runc.sha256sum" "$dir/sums"
    (cd "$dir" && grep " \*\?runc.$arch\$" sums | sha256sum --check --quiet) ||
      kq_die "runc $r download does not match its sha256sum"
    install -m 0755 "$dir/runc.$arch" /usr/local/sbin/runc
    rm -rf "$dir"
    kq_log "installed runc $r"
    restart=true
  fi
  # The unit upstream ships, written here so no further download is needed.
  if kq_put /etc/systemd/system/containerd.service 0644 <<'UNIT'; then
[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target local-fs.target dbus.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    restart=true
  fi
  # The kubelet uses the systemd cgroup driver; containerd must match it.
  local config
  config=$(/usr/local/bin/containerd config default | sed -E 's/^([[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*)false/\1true/')
  grep -Eq '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' <<<"$config" ||
    kq_die "containerd $v's default config has no SystemdCgroup setting to turn on; pin another containerd_version"
  if kq_put /etc/containerd/config.toml 0644 <<<"$config"; then
    restart=true
  fi
  kq_put /etc/crictl.yaml 0644 <<'CONF' || true
runtime-endpoint: unix:///run/containerd/containerd.sock
image-endpoint: unix:///run/containerd/containerd.sock
timeout: 10
CONF
  systemctl enable containerd >/dev/null 2>&1
  if [[ $restart == true ]] || ! systemctl is-active --quiet containerd; then
    systemctl restart containerd
  fi
  kq_wait_for 60 "containerd socket" test -S /run/containerd/containerd.sock
}

# kubeadm, kubelet and kubectl from pkgs.k8s.io at exactly KQ_K8S_VERSION, held so an
# unattended upgrade cannot move them: the harness measures the release it was told to.
kq_kube_packages() {
  local minor=${KQ_K8S_VERSION%.*} want=${KQ_K8S_VERSION#v} keyring=/etc/apt/keyrings/kubernetes-apt-keyring.gpg
  local have_all=true p
  for p in kubeadm kubelet kubectl; do
    [[ "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null)" == "$want-"* ]] || have_all=false
  done
  if [[ $have_all == true ]]; then
    return 0
  fi
  install -d -m 0755 /etc/apt/keyrings
  if [[ ! -s "$keyring" ]]; then
    local key
    key=$(mktemp)
    kq_fetch "https://pkgs.k8s.io/core:/stable:/$minor/deb/Release.key" "$key"
    gpg --batch --yes --dearmor -o "$keyring" "$key"
    rm -f "$key"
  fi
  kq_put /etc/apt/sources.list.d/kubernetes.list 0644 \
    <<<"deb [signed-by=$keyring] https://pkgs.k8s.io/core:/stable:/$minor/deb/ /" || true
  timeout 600 apt-get update -qq
  local pkgver
  pkgver=$(apt-cache madison kubeadm | awk -v w="$want" '$3 ~ "^" w "-" { print $3; exit }')
  [[ -n "$pkgver" ]] || kq_die "kubeadm $want is not in the $minor package repository; check kubernetes_version"
  apt-mark unhold kubeadm kubelet kubectl >/dev/null 2>&1 || true
  timeout 1200 apt-get install -y -qq --no-install-recommends --allow-downgrades --allow-change-held-packages \
    "kubeadm=$pkgver" "kubelet=$pkgver" "kubectl=$pkgver" >/dev/null
  apt-mark hold kubeadm kubelet kubectl >/dev/null
  kq_log "installed kubeadm, kubelet and kubectl $pkgver"
}

# Each VM has a NAT interface whose address is the same on every machine (VirtualBox) or not
# routable between them; the kubelet must advertise the private-network address instead.
kq_kubelet_node_ip() {
  if kq_put /etc/default/kubelet 0644 <<<"KUBELET_EXTRA_ARGS=--node-ip=$KQ_NODE_IP"; then
    if systemctl is-active --quiet kubelet; then
      systemctl restart kubelet
    fi
  fi
  systemctl enable kubelet >/dev/null 2>&1
}
