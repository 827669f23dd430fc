# The dual-stack example, for scripts/lab-example.sh (sourced): every
# workload gets an IPv4 and an IPv6 address, and both families are probed.
# Two workloads per host, HOST:NAME:LABELS.
WORKLOADS=(
  h1:client-1:app=client h1:web-1:app=web
  h2:web-2:app=web h2:db-2:app=db
  h3:client-3:app=client h3:db-3:app=db
)
FAMILIES=(4 6)
IPAM='{"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "true"}'
