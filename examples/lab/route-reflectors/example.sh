# The route-reflector example, for scripts/lab-example.sh (sourced).
# One workload per host, HOST:NAME:LABELS, tenants alternating: resources.yaml
# lets each reach only its own tenant's.
WORKLOADS=(
  h1:blue-1:tenant=blue h2:red-2:tenant=red h3:blue-3:tenant=blue
  h4:red-4:tenant=red h5:blue-5:tenant=blue h6:red-6:tenant=red
)

# h1 and h2 become route reflectors as in Calico's guide: a cluster ID on
# the Node felix registered, and the label resources.yaml's BGPPeer selects.
setup() {
  local rr
  for rr in h1 h2; do
    calicoctl patch node "$rr" -p '{"spec": {"bgp": {"routeReflectorClusterID": "244.0.0.1"}}}'
    calicoctl label node "$rr" route-reflector=true
  done
}
