"""A Goldmane client that is not ours: grpcio with the code grpc_tools
generated from Goldmane's own api.proto (tests/goldmane/api.proto).

    goldmane_client.py ADDRESS STREAM_START

Calls List (all, then denied only), FilterHints (policy names) and Stream
(history since STREAM_START, two flows), and a List with a negative page
size; prints what it got as one JSON object for tests/python.rs to check.
"""

import json
import sys

import grpc

import api_pb2 as pb
import api_pb2_grpc as rpc


def flow(result):
    f = result.flow
    k = f.Key
    return {
        "id": result.id,
        "source": [k.source_namespace, k.source_name],
        "dest": [k.dest_namespace, k.dest_name],
        "dest_type": pb.EndpointType.Name(k.dest_type),
        "dest_port": k.dest_port,
        "proto": k.proto,
        "action": pb.Action.Name(k.action),
        "reporter": pb.Reporter.Name(k.reporter),
        "enforced": [[h.tier, h.name, h.rule_index, pb.Action.Name(h.action)]
                     for h in k.policies.enforced_policies],
        "pending": [[h.tier, h.name, pb.PolicyKind.Name(h.kind)]
                    for h in k.policies.pending_policies],
        "start": f.start_time,
        "end": f.end_time,
        "source_labels": list(f.source_labels),
        "packets_out": f.packets_out,
        "bytes_out": f.bytes_out,
        "started": f.num_connections_started,
    }


def main():
    address, stream_start = sys.argv[1], int(sys.argv[2])
    with grpc.insecure_channel(address) as channel:
        flows = rpc.FlowsStub(channel)
        out = {}

        listed = flows.List(pb.FlowListRequest(), timeout=10)
        out["total"] = listed.meta.totalResults
        out["list"] = [flow(r) for r in listed.flows]

        only_denied = pb.Filter(actions=[pb.Deny])
        denied = flows.List(pb.FlowListRequest(filter=only_denied), timeout=10)
        out["denied"] = [flow(r) for r in denied.flows]

        hints = flows.FilterHints(
            pb.FilterHintsRequest(type=pb.FilterTypePolicyName), timeout=10)
        out["policy_names"] = [h.value for h in hints.hints]

        streamed = []
        stream = flows.Stream(
            pb.FlowStreamRequest(start_time_gte=stream_start), timeout=10)
        for result in stream:
            streamed.append(flow(result))
            if len(streamed) == 2:
                stream.cancel()
                break
        out["stream"] = streamed

        try:
            flows.List(pb.FlowListRequest(page_size=-1), timeout=10)
            out["negative_page_size"] = "OK"
        except grpc.RpcError as err:
            out["negative_page_size"] = err.code().name

    print(json.dumps(out))


if __name__ == "__main__":
    main()
