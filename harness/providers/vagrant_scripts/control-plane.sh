#!/usr/bin/env bash
# kubeadm on the control planes and workers: `kubeadm init` on the first control plane with
# the VIP as control-plane endpoint and the certificates uploaded, then joins that pin the CA
# by hash. Sourced by provision.sh after lib.sh.

KQ_KUBEADM_DIR=/etc/kubernetes/kubequake
KQ_ADMIN_CONF=/etc/kubernetes/admin.conf

kq_node_registration() {
  cat <<CONF
nodeRegistration:
  name: ${KQ_NODE_NAME}
  criSocket: unix:///run/containerd/containerd.sock
  kubeletExtraArgs:
    - name: node-ip
      value: ${KQ_NODE_IP}
CONF
}

kq_control_plane_init() {
  kq_require KQ_TOKEN KQ_CERT_KEY KQ_CLUSTER_NAME KQ_POD_CIDR KQ_SERVICE_CIDR
  if [[ ! -f "$KQ_ADMIN_CONF" ]]; then
    # A recreated first control plane must not start a second cluster next to a live one.
    if kq_api_ready; then
      kq_log "the VIP already serves a cluster: joining it instead of initialising another"
      kq_join control-plane
      return 0
    fi
    kq_install_ca
    kq_init_config | kq_put "$KQ_KUBEADM_DIR/init.yaml" 0600 || true
    kq_log "kubeadm init (control-plane endpoint ${KQ_VIP}:${KQ_API_PORT})"
    timeout 900 kubeadm init --config "$KQ_KUBEADM_DIR/init.yaml" --upload-certs ||
      kq_die "kubeadm init failed; see the output above, then \`kubeadm reset -f\` on this node and provision again"
  fi
  export KUBECONFIG=$KQ_ADMIN_CONF
  kq_wait_for 300 "the API through the VIP" kq_api_ready
  # Uploaded certificates expire after two hours; refreshing them on every run lets a control
  # plane recreated later join with the same certificate key.
  timeout 120 kubeadm init phase upload-certs --upload-certs --certificate-key "$KQ_CERT_KEY" >/dev/null
  if ! timeout 60 kubeadm token list -o jsonpath='{.token}{"\n"}' | grep -qx "$KQ_TOKEN"; then
    timeout 60 kubeadm token create "$KQ_TOKEN" --ttl 0 >/dev/null
    kq_log "recreated the bootstrap token"
  fi
  kq_user_kubeconfig
  kq_cni
}

# kq_init_config: kubeadm's InitConfiguration and ClusterConfiguration, on stdout.
kq_init_config() {
  cat <<CONF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
  - token: "${KQ_TOKEN}"
    # No expiry: machines of this lab cluster may be recreated and rejoin any time. The token
    # lives only on the host (in .vagrant/, mode 0600) and on the first control plane.
    ttl: "0s"
    usages: [signing, authentication]
    groups: [system:bootstrappers:kubeadm:default-node-token]
certificateKey: "${KQ_CERT_KEY}"
localAPIEndpoint:
  advertiseAddress: ${KQ_NODE_IP}
  bindPort: ${KQ_API_PORT}
$(kq_node_registration)
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: ${KQ_CLUSTER_NAME}
kubernetesVersion: ${KQ_K8S_VERSION}
controlPlaneEndpoint: "${KQ_VIP}:${KQ_API_PORT}"
networking:
  podSubnet: ${KQ_POD_CIDR}
  serviceSubnet: ${KQ_SERVICE_CIDR}
apiServer:
  certSANs: ["${KQ_VIP}"]
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
CONF
}

# The host made the cluster CA so every join can pin it; kubeadm keeps an existing CA.
kq_install_ca() {
  install -d -m 0755 /etc/kubernetes/pki
  if [[ ! -f /etc/kubernetes/pki/ca.key ]]; then
    [[ -f "$KQ_STAGE/ca.crt" && -f "$KQ_STAGE/ca.key" ]] ||
      kq_die "the cluster CA was not uploaded to $KQ_STAGE; run \`vagrant provision ${KQ_NODE_NAME}\`"
    install -m 0644 "$KQ_STAGE/ca.crt" /etc/kubernetes/pki/ca.crt
    install -m 0600 "$KQ_STAGE/ca.key" /etc/kubernetes/pki/ca.key
  fi
  rm -f "$KQ_STAGE/ca.key"
}

kq_user_kubeconfig() {
  local user=${SUDO_USER:-vagrant} home
  home=$(getent passwd "$user" | cut -d: -f6)
  [[ -n "$home" ]] || return 0
  install -d -m 0700 -o "$user" "$home/.kube"
  if ! cmp -s "$KQ_ADMIN_CONF" "$home/.kube/config"; then
    install -m 0600 -o "$user" "$KQ_ADMIN_CONF" "$home/.kube/config"
  fi
}

# kq_join control-plane|worker
kq_join() {
  local kind=$1
  kq_require KQ_TOKEN KQ_CA_HASH
  if [[ -f /etc/kubernetes/kubelet.conf ]]; then
    [[ "$kind" == control-plane ]] && kq_user_kubeconfig
    return 0
  fi
  [[ "$kind" == control-plane ]] && kq_require KQ_CERT_KEY
  kq_wait_for 900 "the API through the VIP ${KQ_VIP}:${KQ_API_PORT}" kq_api_ready
  kq_join_config "$kind" | kq_put "$KQ_KUBEADM_DIR/join.yaml" 0600 || true
  # A join can fail halfway (an etcd member added while another joins); kubeadm's own
  # answer is reset and retry, a bounded number of times.
  local attempt
  for attempt in 1 2 3; do
    kq_log "kubeadm join as $kind (attempt $attempt)"
    if timeout 900 kubeadm join --config "$KQ_KUBEADM_DIR/join.yaml"; then
      [[ "$kind" == control-plane ]] && kq_user_kubeconfig
      return 0
    fi
    timeout 300 kubeadm reset -f >/dev/null 2>&1 || true
    sleep 10
  done
  kq_die "kubeadm join failed 3 times; on the first control plane check \`kubectl get nodes\` and \`kubeadm token list\`"
}

# kq_join_config control-plane|worker: kubeadm's JoinConfiguration, on stdout. Discovery
# pins the CA by hash: a machine answering on the VIP with another CA is refused.
kq_join_config() {
  cat <<CONF
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "${KQ_VIP}:${KQ_API_PORT}"
    token: "${KQ_TOKEN}"
    caCertHashes: ["${KQ_CA_HASH}"]
$(kq_node_registration)
CONF
  if [[ "$1" == control-plane ]]; then
    cat <<CONF
controlPlane:
  localAPIEndpoint:
    advertiseAddress: ${KQ_NODE_IP}
    bindPort: ${KQ_API_PORT}
  certificateKey: "${KQ_CERT_KEY}"
CONF
  fi
}

# Flannel, pinned, pointed at the private network: it would otherwise pick the NAT
# interface, which has the same address on every VirtualBox machine.
kq_cni() {
  kq_require KQ_CNI KQ_CNI_VERSION
  [[ "$KQ_CNI" == flannel ]] || kq_die "KQ_CNI=$KQ_CNI: the provisioning scripts install flannel only"
  local manifest="$KQ_STATE/kube-flannel-${KQ_CNI_VERSION}.yml"
  if [[ ! -s "$manifest" ]]; then
    local raw
    raw=$(mktemp)
    kq_fetch "https://github.com/flannel-io/flannel/releases/download/${KQ_CNI_VERSION}/kube-flannel.yml" "$raw"
    sed -E -e "s#10\.244\.0\.0/16#${KQ_POD_CIDR}#g" \
      -e "s#^( *)- --kube-subnet-mgr\$#&\n\1- --iface-can-reach=${KQ_VIP}#" "$raw" >"$raw.patched"
    [[ "$(grep -c -- "--iface-can-reach=${KQ_VIP}" "$raw.patched")" == 1 ]] ||
      kq_die "flannel ${KQ_CNI_VERSION}'s manifest has no single --kube-subnet-mgr argument to extend"
    grep -q "\"Network\": \"${KQ_POD_CIDR}\"" "$raw.patched" ||
      kq_die "flannel ${KQ_CNI_VERSION}'s manifest does not take the pod network ${KQ_POD_CIDR}"
    install -m 0644 "$raw.patched" "$manifest"
    rm -f "$raw" "$raw.patched"
  fi
  timeout 120 kubectl --kubeconfig "$KQ_ADMIN_CONF" apply -f "$manifest" >/dev/null
  timeout 320 kubectl --kubeconfig "$KQ_ADMIN_CONF" wait --for=condition=Ready "node/${KQ_NODE_NAME}" --timeout=300s >/dev/null ||
    kq_die "node ${KQ_NODE_NAME} is not Ready 300s after installing flannel; see \`kubectl -n kube-flannel get pods\`"
}
