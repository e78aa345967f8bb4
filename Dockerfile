# Airlock container image. The base is pinned by digest: Airlock practises what it enforces.
# Bump the digest deliberately (and review the change) rather than following a moving tag.
ARG NODE_IMAGE=docker.io/library/node:20-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Toolchain for the native modules: better-sqlite3 when no prebuilt binary matches, and zstd-napi
# (libzstd), built from its bundled sources.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
# npm ci runs the "prepare" script, which compiles TypeScript to dist/.
RUN npm ci && npm prune --omit=dev

FROM ${NODE_IMAGE}
# GLIBC_TUNABLES: keep freed heap for reuse instead of faulting it back in (src/obs/malloc.ts).
ENV NODE_ENV=production \
    GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432:glibc.malloc.arena_max=1 \
    AIRLOCK_LISTEN=0.0.0.0:8080 \
    AIRLOCK_DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
# The pinned Sigstore trusted root: src/signing/trust.ts reads it beside dist/.
COPY trust ./trust
# The popular-name lists the look-alike check compares against (share/popular/README.md).
COPY share ./share
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/-/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# --max-semi-space-size: V8's young generation kept small (src/obs/malloc.ts NODE_FLAGS).
ENTRYPOINT ["node", "--max-semi-space-size=4", "dist/cli/main.js"]
CMD ["serve", "--config", "/app/config/airlock.yaml"]
