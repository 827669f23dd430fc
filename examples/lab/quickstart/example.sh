# The quickstart's workloads, for scripts/lab-example.sh (sourced): two per
# host, HOST:NAME:LABELS, each listening on TCP 8080. resources.yaml's
# policy: `web` admits only `client`s, `db` only `web`s on TCP 8080,
# `client`s everyone.
WORKLOADS=(
  h1:client-1:app=client h1:web-1:app=web
  h2:web-2:app=web h2:db-2:app=db
  h3:client-3:app=client h3:db-3:app=db
)
TCP_PORT=8080
