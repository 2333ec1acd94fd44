# syntax=docker/dockerfile:1

# Tollgate: multi-stage build on a Node LTS slim image; runs as the unprivileged `node` user.

ARG NODE_IMAGE=node:24-bookworm-slim

# 1. Build: full dependencies, compile TypeScript to dist/ and bundle the web console into dist/web.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts
COPY src ./src
COPY web ./web
RUN npm run build

# 2. Runtime dependencies only.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

# 3. The image that runs.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    PORT=8080 \
    HOST=0.0.0.0
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
USER node
EXPOSE 8080
# /healthz answers as soon as the process is up; the compose file adds /readyz-style checks of Redis.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node runs as PID 1 and handles SIGTERM itself (graceful close).
CMD ["node", "dist/server.js"]
