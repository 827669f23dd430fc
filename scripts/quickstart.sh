#!/usr/bin/env bash
# The quickstart: builds felix, the CNI plugins, calicoctl and calico-lab,
# brings up examples/lab/quickstart (three felix hosts and a BIRD 2 ToR in
# namespaces), applies its resources, adds two workloads per host through the
# CNI plugin, then prints the reachability matrix and each host's BGP status.
#   scripts/quickstart.sh [--name LAB]          run it (lab `quickstart`)
#   scripts/quickstart.sh [--name LAB] --down   delete the workloads, tear the lab down
# The other examples run the same way: scripts/lab-example.sh EXAMPLE.
exec "$(dirname "$0")/lab-example.sh" quickstart "$@"
