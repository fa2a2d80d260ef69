# Sourced by scripts/test and scripts/demo. The tests and the demo listen on
# fixed loopback ports in 47300-47999, which lie inside Linux's ephemeral
# range (32768-60999 by default): any client on the machine may be handed one
# of them as its local port, and a bind then fails with "Address already in
# use" (seen on the CI machine: a connection to 127.0.0.1:15853 held 47310
# while teacher_head_widths started). Where this shell may (root, a writable
# /proc/sys), the range is added to net.ipv4.ip_local_reserved_ports, which
# only keeps the kernel from choosing those ports for outgoing connections;
# elsewhere nothing changes.
distill_reserve_test_ports() {
  local f=/proc/sys/net/ipv4/ip_local_reserved_ports range=47300-47999 now
  [ -w "$f" ] || return 0
  now=$(cat "$f")
  case ",$now," in *",$range,"*) return 0 ;; esac
  if echo "${now:+$now,}$range" >"$f" 2>/dev/null; then
    echo "reserved loopback ports $range from the kernel's ephemeral range (ip_local_reserved_ports)"
  fi
}
