/**
 * The gRPC services' definitions, read from proto/ at start-up. Loaded at run time with
 * @grpc/proto-loader rather than compiled into generated code: the .proto files stay the one
 * source of the wire format (the same files a client generates its stubs from, as
 * scripts/grpc_client.py does), there is no generated code to keep in step with them, and the
 * messages the handlers see are plain objects that src/grpc/messages.ts checks anyway.
 */
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/** proto/ sits at the package root, one level above src/ and dist/. */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

// Plain objects: field names as in the .proto, 64-bit integers as numbers (shapes and sizes
// fit; a larger declared size is refused anyway), fields left unset at their defaults ('', 0, [];
// null for a message), and which
// member of a oneof is set named by the oneof.
const LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

function service(file: string, path: string[]): ServiceDefinition {
  const definition = loadSync(file, { ...LOADER_OPTIONS, includeDirs: [PROTO_DIR] });
  let node: unknown = loadPackageDefinition(definition);
  for (const key of path) node = (node as GrpcObject)[key];
  return (node as { service: ServiceDefinition }).service;
}

export const inferenceService = () => service('open_inference.proto', ['inference', 'GRPCInferenceService']);
export const healthService = () => service('health.proto', ['grpc', 'health', 'v1', 'Health']);
