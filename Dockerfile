# dbroker: runs the TypeScript sources through tsx (no build step), like a checkout.
#   docker build -t dbroker .
#   docker run -v ./deploy/config.json:/etc/dbroker/config.json:ro -v dbroker-data:/var/lib/dbroker -p 8200:8200 dbroker
# See docker-compose.yml and deploy/setup.sh for a full example.

# Install stage: the full image has python3, make and g++ in case better-sqlite3
# has to compile instead of using its prebuilt binary. The repo's .npmrc
# (nodedir=/usr, for the dev machine) is deliberately not copied.
FROM node:20-bookworm AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY plugins ./plugins
COPY ui ./ui
RUN chmod 0755 bin/dbroker.mjs \
  && ln -s /app/bin/dbroker.mjs /usr/local/bin/dbroker \
  && mkdir -p /var/lib/dbroker /etc/dbroker \
  && chown node:node /var/lib/dbroker
USER node
VOLUME /var/lib/dbroker
EXPOSE 8200
# Healthy = unsealed and serving (sys/health answers 200); sealed is 503, uninitialised 501.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:8200/v1/sys/health').then(r => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["dbroker"]
CMD ["server", "--config", "/etc/dbroker/config.json"]
