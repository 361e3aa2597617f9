#!/usr/bin/python3
"""A client of predify-serve's gRPC Open Inference Protocol, written as a platform team would:
stubs generated with grpcio-tools from the protocol's .proto (proto/open_inference.proto has the
specification's package, messages and field numbers), encoded images sent as a BYTES tensor.

    /usr/bin/python3 scripts/grpc_client.py --grpc 127.0.0.1:8081 IMAGE.png ...

With --http URL it also classifies each image with POST /classify and exits 1 unless every
timestep's class, probability and PCoder errors agree (the check CI runs).
"""
from __future__ import annotations

import argparse
import importlib
import json
import struct
import sys
import tempfile
import urllib.request
from pathlib import Path

import grpc
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def generated_stubs(out: Path):
    """The messages and stubs of open_inference.proto and health.proto, compiled now into `out`."""
    for proto in ("open_inference.proto", "health.proto"):
        include = Path(protoc.__file__).parent / "_proto"
        code = protoc.main(
            ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", proto]
        )
        if code != 0:
            raise SystemExit(f"protoc failed on {proto}")
    sys.path.insert(0, str(out))
    return tuple(importlib.import_module(m) for m in ("open_inference_pb2", "open_inference_pb2_grpc", "health_pb2", "health_pb2_grpc"))


def length_prefixed(images: list[bytes]) -> bytes:
    """BYTES elements as raw contents: each after its length, 4 bytes little-endian."""
    return b"".join(struct.pack("<I", len(b)) + b for b in images)


def raw_tensor(output, raw: bytes) -> list:
    """An output's raw little-endian bytes as nested Python lists of its shape."""
    fmt = {"FP32": "f", "INT64": "q"}[output.datatype]
    flat = list(struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw))
    for dim in reversed(list(output.shape)[1:]):
        flat = [flat[k : k + dim] for k in range(0, len(flat), dim)]
    return flat


def classify_http(base: str, model: str, image: bytes, timesteps: int, key: str | None) -> dict:
    headers = {"content-type": "image/png"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{base}/classify?model={model}&timesteps={timesteps}", data=image, headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...)")
    parser.add_argument("--grpc", default="127.0.0.1:8081", help="host:port of GRPC_PORT (default %(default)s)")
    parser.add_argument("--http", help="base URL of the same server: compare every number with /classify")
    parser.add_argument("--model", default="fashion-pc")
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--key", help="an API key, sent as authorization: Bearer KEY")
    parser.add_argument("--contents", action="store_true", help="send contents.bytes_contents, not raw_input_contents")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        pb, pb_grpc, health_pb, health_grpc = generated_stubs(Path(tmp))
        channel = grpc.insecure_channel(args.grpc)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        metadata = [("authorization", f"Bearer {args.key}")] if args.key else []

        status = health_grpc.HealthStub(channel).Check(health_pb.HealthCheckRequest(service=""), timeout=10)
        live = stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
        ready = stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        server = stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=metadata, timeout=10)
        model = stub.ModelMetadata(pb.ModelMetadataRequest(name=args.model), metadata=metadata, timeout=10)
        model_ready = stub.ModelReady(pb.ModelReadyRequest(name=args.model), metadata=metadata, timeout=10).ready
        print(
            f"{server.name} {server.version} ({', '.join(server.extensions)}): live={live} ready={ready} "
            f"health={health_pb.HealthCheckResponse.ServingStatus.Name(status.status)}; "
            f"model {model.name} v{','.join(model.versions)} ready={model_ready}"
        )
        if not (live and ready and model_ready):
            return 1
        labels = model.properties["labels"].split(",")

        images = [p.read_bytes() for p in args.images]
        request = pb.ModelInferRequest(model_name=args.model, id="grpc-client")
        request.parameters["timesteps"].int64_param = args.timesteps
        tensor = request.inputs.add(name="input", datatype="BYTES", shape=[len(images)])
        if args.contents:
            tensor.contents.bytes_contents.extend(images)
        else:
            request.raw_input_contents.append(length_prefixed(images))
        for name in ("probabilities", "predictions", "pcoder_errors"):
            request.outputs.add(name=name)
        response = stub.ModelInfer(request, metadata=metadata, timeout=60)
        out = {o.name: raw_tensor(o, raw) for o, raw in zip(response.outputs, response.raw_output_contents)}

        mismatches = 0
        for n, path in enumerate(args.images):
            classes = out["predictions"][n]
            print(f"{path.name}: " + " ".join(f"t{t}={labels[c]}" for t, c in enumerate(classes)))
            if not args.http:
                continue
            reference = classify_http(args.http, args.model, images[n], args.timesteps, args.key)
            pcoders = model.properties["pcoders"].split(",")
            for t, step in enumerate(reference["steps"]):
                probability = out["probabilities"][n][t][step["index"]]
                errors = out["pcoder_errors"][n][t]
                same = (
                    classes[t] == step["index"]
                    and abs(probability - step["confidence"]) <= 1e-6
                    and all(abs(errors[k] - step["errors"][p]) <= 1e-5 * max(1.0, abs(errors[k])) for k, p in enumerate(pcoders))
                )
                if not same:
                    mismatches += 1
                    print(f"  t={t}: gRPC {classes[t]} p={probability} e={errors}; /classify {step}")
        if args.http:
            print(f"compared with /classify: {len(args.images)} images x {args.timesteps + 1} timesteps, {mismatches} differ")
        return 1 if mismatches else 0


def run() -> int:
    """main(), with a failed call as one line naming the gRPC status, not a stack trace."""
    try:
        return main()
    except grpc.RpcError as err:
        print(f"grpc_client: {err.code().name}: {err.details()}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"grpc_client: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
