#!/usr/bin/env bash
# Entry point of every machine's provisioning; the Vagrantfile passes the node's role,
# addresses, pinned versions and cluster secrets as KQ_* environment variables.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=node.sh
. "$HERE/node.sh"
# shellcheck source=load-balancer.sh
. "$HERE/load-balancer.sh"
# shellcheck source=control-plane.sh
. "$HERE/control-plane.sh"

kq_require KQ_NODE_NAME KQ_ROLE KQ_NODE_IP KQ_VIP KQ_API_PORT
case "$KQ_ROLE" in
  load-balancer | control-plane | worker) ;;
  *) kq_die "KQ_ROLE=$KQ_ROLE: expected load-balancer, control-plane or worker" ;;
esac
install -d -m 0755 "$KQ_STATE"

case "$KQ_ROLE" in
  load-balancer)
    kq_load_balancer
    ;;
  control-plane)
    kq_node_base
    if [[ "${KQ_INIT_NODE:-false}" == true ]]; then
      kq_control_plane_init
    else
      kq_join control-plane
    fi
    ;;
  worker)
    kq_node_base
    kq_join worker
    ;;
esac
kq_log "provisioned as $KQ_ROLE"
