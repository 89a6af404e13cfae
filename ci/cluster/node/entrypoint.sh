#!/bin/bash
# PID-1 preparation for a kind-style node container started WITHOUT --privileged
# (see docs/offline-cluster.md for the docker run flags), then exec systemd.
set -euo pipefail

say() { echo "saga-node-entrypoint: $*" >&2; }

# 1. Docker mounts /sys and the cgroup hierarchies read-only for unprivileged
#    containers. A plain remount reports "busy"; a bind-remount works.
mount -o remount,bind,rw /sys || say "WARN: cannot remount /sys rw"
if mountpoint -q /sys/fs/cgroup; then
  mount -o remount,bind,rw /sys/fs/cgroup 2>/dev/null || true
fi
while read -r target; do
  mount -o remount,bind,rw "$target" || say "WARN: cannot remount $target rw"
done < <(findmnt -rn -t cgroup,cgroup2 -o TARGET)

# 1b. cgroup v1: kubelet runs with cgroupRoot /kubelet (systemd driver: kubelet.slice)
#     and insists that the cgroup exists in every v1 controller. systemd does not
#     create it in cpuset/cpuacct/... , so make it ourselves, seed cpuset from the
#     parent, and bind it onto itself so systemd treats it as a mount and leaves it.
if [[ ! -f /sys/fs/cgroup/cgroup.controllers ]]; then
  while read -r target opts; do
    case ",${opts}," in *,name=systemd,*) continue ;; esac
    for cg in kubelet kubelet.slice; do
      d="${target}/${cg}"
      mkdir -p "$d" || { say "WARN: cannot create $d"; continue; }
      if [[ -f "${target}/cpuset.cpus" ]]; then
        cat "${target}/cpuset.cpus" > "$d/cpuset.cpus" 2>/dev/null || true
        cat "${target}/cpuset.mems" > "$d/cpuset.mems" 2>/dev/null || true
      fi
      mountpoint -q "$d" || mount --bind "$d" "$d" || say "WARN: cannot bind $d"
    done
  done < <(findmnt -rn -t cgroup -o TARGET,OPTIONS)
fi

# 2. kubelet (and kernel-log readers) want /dev/kmsg.
#    Docker does not pass it through without --privileged; the device rule lets us
#    create the node (char 1:11). Fall back to /dev/null if mknod is refused.
if [[ ! -e /dev/kmsg ]]; then
  mknod -m 640 /dev/kmsg c 1 11 2>/dev/null || { say "WARN: mknod /dev/kmsg failed, linking /dev/null"; ln -s /dev/null /dev/kmsg; }
fi

# 3. Mount propagation for kubelet volumes / containerd.
mount --make-rshared /

# 4. A fresh machine-id per container.
rm -f /etc/machine-id
systemd-machine-id-setup >/dev/null 2>&1 || tr -d - </proc/sys/kernel/random/uuid >/etc/machine-id

# 5. kubeadm wants a product_uuid unique per node: fake one and bind it over the DMI file.
mkdir -p /etc/saga-node
cat /proc/sys/kernel/random/uuid > /etc/saga-node/product_uuid
for f in /sys/class/dmi/id/product_uuid /sys/devices/virtual/dmi/id/product_uuid; do
  if [[ -e "$f" ]]; then mount --bind /etc/saga-node/product_uuid "$f" 2>/dev/null || true; fi
done

# 6. Use the iptables backend the host (Docker) already uses.
legacy=$( (iptables-legacy-save 2>/dev/null || true) | grep -c '^-' || true)
nft=$( (iptables-nft-save 2>/dev/null || true) | grep -c '^-' || true)
if [[ "${legacy:-0}" -gt "${nft:-0}" ]]; then mode=legacy; else mode=nft; fi
for t in iptables ip6tables; do
  update-alternatives --set "$t" "/usr/sbin/${t}-${mode}" >/dev/null 2>&1 || true
done
say "iptables backend: ${mode} (legacy rules ${legacy:-0}, nft rules ${nft:-0})"

# 7. sysctls kube-proxy relies on (best effort: some are not namespaced).
sysctl -qw net.ipv4.conf.all.route_localnet=1 2>/dev/null || true
sysctl -qw net.ipv4.conf.all.arp_ignore=0 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1 2>/dev/null || true

# 8. Docker's embedded DNS (127.0.0.11) is unreachable from pod network namespaces
#    (CoreDNS would forward to itself: loop). Point resolv.conf at the node's own IP
#    and DNAT port 53 on that IP to the embedded resolver's real ports.
node_ip="$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{split($4,a,"/"); print a[1]; exit}')"
if [[ -n "${node_ip}" ]] && grep -q '^nameserver 127\.0\.0\.11' /etc/resolv.conf; then
  nat="$(iptables-save -t nat 2>/dev/null || true)"
  for proto in tcp udp; do
    port="$(sed -n "s#.*-d 127.0.0.11/32 -p ${proto} .*--dport 53 -j DNAT --to-destination 127.0.0.11:\([0-9]*\).*#\1#p" <<<"${nat}" | head -1)"
    [[ -n "${port}" ]] || { say "WARN: no embedded-DNS ${proto} rule found"; continue; }
    for chain in PREROUTING OUTPUT; do
      rule=(-d "${node_ip}/32" -p "${proto}" --dport 53 -j DNAT --to-destination "127.0.0.11:${port}")
      iptables -t nat -C "${chain}" "${rule[@]}" 2>/dev/null || iptables -t nat -I "${chain}" "${rule[@]}"
    done
  done
  # resolv.conf is a bind mount: rewrite in place
  sed "s/^nameserver 127\.0\.0\.11/nameserver ${node_ip}/" /etc/resolv.conf > /tmp/resolv.conf.new
  cat /tmp/resolv.conf.new > /etc/resolv.conf && rm -f /tmp/resolv.conf.new
  say "DNS: resolv.conf -> ${node_ip}, DNAT to the embedded resolver"
fi

export container=docker
exec /lib/systemd/systemd --log-target=console "$@"
