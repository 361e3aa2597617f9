# predify-serve. Two images from this file, one runtime stage:
#
#   docker build -t predify-serve .                                  CPU (the default)
#   docker build --build-arg RUNTIME=cuda -t predify-serve:cuda .    CUDA 12 + cuDNN 9, for GPU nodes
#
# The base images are build arguments so that they can be replaced (for example by local
# stand-ins where registries are unreachable): NODE_IMAGE for the build and the CPU image,
# CUDA_IMAGE for the CUDA runtime (Node is copied into it from NODE_IMAGE).
ARG NODE_IMAGE=node:24-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
# cpu or cuda: which base and which onnxruntime providers the runtime stage gets
ARG RUNTIME=cpu
# The user the server runs as, in both images: node:*-slim's `node` (uid 1000). Kubernetes
# manifests that set runAsUser (deploy/kubernetes/) use the same id; a test holds them together.
ARG APP_UID=1000

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# onnxruntime-node would fetch CUDA binaries at install time; the CPU build needs none, and the
# CUDA stage below fetches them explicitly.
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
COPY scripts/check-node.mjs scripts/build.mjs ./scripts/
RUN npm ci --no-fund --no-audit
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-fund --no-audit
# Only this platform's native binaries: onnxruntime-node alone ships ~220 MB for macOS and
# Windows. The script fails the build if a package's layout is not what it expects.
COPY scripts/prune-native.mjs ./scripts/
RUN node scripts/prune-native.mjs

# The onnxruntime CUDA execution provider (from NuGet, for CUDA 12), added to the pruned
# dependencies. Running the package's install script directly does not depend on whether the
# npm version runs dependencies' install scripts.
FROM build AS build-cuda
RUN ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js \
  && ls node_modules/onnxruntime-node/bin/napi-v6/linux/x64/ | grep -q providers_cuda

# The two images differ only in their base and in onnxruntime's providers; everything else is
# the one runtime stage below, built on base-${RUNTIME} with deps-${RUNTIME}.
FROM ${NODE_IMAGE} AS base-cpu
ENV EXECUTION_PROVIDERS=cpu
# The server handles SIGTERM itself (close-with-grace), so node can run as PID 1.

FROM ${CUDA_IMAGE} AS base-cuda
ARG APP_UID
COPY --from=build /usr/local/bin/node /usr/local/bin/node
# tini forwards SIGTERM to Node and reaps; the CUDA base has no init of its own. Ubuntu 24.04
# bases already have a user with uid 1000 (ubuntu): it becomes `node`, so that the uid is the
# CPU image's.
RUN apt-get update && apt-get install -y --no-install-recommends tini ca-certificates \
  && rm -rf /var/lib/apt/lists/* \
  && if ! id -u node >/dev/null 2>&1; then \
       existing=$(getent passwd "${APP_UID}" | cut -d: -f1); \
       if [ -n "$existing" ]; then \
         usermod -l node -d /home/node -m "$existing" && groupmod -n node "$(id -gn node)"; \
       else useradd --create-home --uid "${APP_UID}" node; fi; \
     fi
ENV EXECUTION_PROVIDERS=cuda,cpu
ENTRYPOINT ["/usr/bin/tini", "--"]

FROM build AS deps-cpu
FROM build-cuda AS deps-cuda

FROM deps-${RUNTIME} AS deps

FROM base-${RUNTIME} AS runtime
ARG APP_UID
# Both bases must give the same uid (deploy/kubernetes/deployment.yaml's runAsUser).
RUN test "$(id -u node)" = "${APP_UID}"
WORKDIR /app
ENV NODE_ENV=production PORT=8080 GRPC_PORT=8081 HOST=0.0.0.0
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY public ./public
# the gRPC services' definitions, read at start-up (src/grpc/protos.ts)
COPY proto ./proto
COPY models/fashion-pc ./models/fashion-pc
# the frost photographs of the ImageNet-C corruptions (npm run corrupt, the studies), Apache-2.0
COPY third_party ./third_party
USER node
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/server.js"]
