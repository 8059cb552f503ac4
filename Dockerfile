# Build stage: compile TypeScript with the dev dependencies. No dependency's
# install script is needed to compile (tsc is plain JavaScript).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Runtime stage: production dependencies and the compiled server only.
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    PORT=3000 \
    HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
# No production dependency has an install script; npm's cache, its logs and
# Node's compile cache would only weigh on the image.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf /root/.npm/_logs /tmp/node-compile-cache
COPY --from=build /app/dist ./dist
COPY config ./config
# Unprivileged, and the files above stay root's. The server writes nothing at
# run time (logs go to stdout, and node runs directly rather than through npm,
# which writes logs under ~/.npm), so it runs with `--read-only --tmpfs /tmp`.
USER node
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Configured by environment: DESKIE_URL is required in production (see docs/settings.md).
# The same command as `npm start` (a test checks), with Node's default flags.
CMD ["node", "dist/server.js"]
