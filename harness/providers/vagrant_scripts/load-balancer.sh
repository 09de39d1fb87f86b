#!/usr/bin/env bash
# The load-balancer pair: HAProxy passes TLS through to every apiserver and health-checks
# /readyz; keepalived moves the VIP to the other node when HAProxy or the machine dies.
# Sourced by provision.sh after lib.sh.

kq_load_balancer() {
  kq_require KQ_CONTROL_PLANES KQ_LOAD_BALANCERS
  kq_packages haproxy keepalived curl iproute2
  kq_haproxy
  kq_keepalived
}

# kq_haproxy_config: the HAProxy configuration for this cluster, on stdout.
kq_haproxy_config() {
  local servers="" name ip
  while read -r name ip; do
    # inter/fall/rise as the local provider's defaults, so both measure the same thing.
    servers+="    server ${name} ${ip}:${KQ_API_PORT} check check-ssl verify none inter 2s fall 3 rise 2"$'\n'
  done < <(kq_peers "$KQ_CONTROL_PLANES")
  cat <<CONF
# Written by kubequake provisioning; rewritten on every run.
global
    log /dev/log local0
    stats socket /run/haproxy/admin.sock mode 660 level admin
    daemon

defaults
    log global
    mode tcp
    option tcplog
    timeout connect 5s
    # Long client and server timeouts so watches survive.
    timeout client 1h
    timeout server 1h

frontend kube-apiserver
    bind *:${KQ_API_PORT}
    default_backend apiservers

backend apiservers
    option httpchk GET /readyz
    http-check expect status 200
    balance roundrobin
${servers}
listen stats
    bind 127.0.0.1:8404
    mode http
    stats enable
    stats uri /stats
CONF
}

kq_haproxy() {
  local cfg
  cfg=$(kq_haproxy_config)
  if kq_put /etc/haproxy/haproxy.cfg 0644 <<<"$cfg"; then
    haproxy -c -q -f /etc/haproxy/haproxy.cfg || kq_die "HAProxy rejects the generated /etc/haproxy/haproxy.cfg"
    systemctl enable haproxy >/dev/null 2>&1
    systemctl reload-or-restart haproxy
  fi
  systemctl is-active --quiet haproxy || systemctl start haproxy
}

# kq_keepalived_config IFACE: the keepalived configuration of this node, on stdout.
kq_keepalived_config() {
  local iface=$1 priority=0 index=0 peers="" name ip
  while read -r name ip; do
    if [[ "$name" == "$KQ_NODE_NAME" ]]; then
      # The first LB in the topology is preferred; each next one 10 lower.
      priority=$((150 - index * 10))
    else
      peers+="        ${ip}"$'\n'
    fi
    index=$((index + 1))
  done < <(kq_peers "$KQ_LOAD_BALANCERS")
  ((priority > 0)) || kq_die "$KQ_NODE_NAME is not in KQ_LOAD_BALANCERS=$KQ_LOAD_BALANCERS"
  # VRRP router ids must be unique on the link; the VIP's last octet is, by construction.
  local vrid=${KQ_VIP##*.}
  cat <<CONF
# Written by kubequake provisioning; rewritten on every run.
global_defs {
    router_id ${KQ_NODE_NAME}
    script_user root
    enable_script_security
}

# A live machine whose HAProxy is down must give the VIP away: its priority drops below
# every peer's while the check fails.
vrrp_script chk_haproxy {
    script "/usr/bin/systemctl is-active --quiet haproxy"
    interval 2
    fall 2
    rise 2
    weight -100
}

vrrp_instance kubequake_api {
    state BACKUP
    interface ${iface}
    virtual_router_id ${vrid}
    priority ${priority}
    advert_int 1
    # Unicast: host-only and libvirt networks do not all pass multicast reliably.
    unicast_src_ip ${KQ_NODE_IP}
    unicast_peer {
${peers}    }
    virtual_ipaddress {
        ${KQ_VIP}/24 dev ${iface}
    }
    track_script {
        chk_haproxy
    }
}
CONF
}

kq_keepalived() {
  local iface cfg
  iface=$(kq_interface_of "$KQ_NODE_IP")
  [[ -n "$iface" ]] || kq_die "no interface carries $KQ_NODE_IP; is the private network attached?"
  cfg=$(kq_keepalived_config "$iface")
  if kq_put /etc/keepalived/keepalived.conf 0644 <<<"$cfg"; then
    systemctl enable keepalived >/dev/null 2>&1
    systemctl restart keepalived
  fi
  systemctl is-active --quiet keepalived || systemctl start keepalived
}
