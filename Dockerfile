# meshfed's image: `docker build -t meshfed:0.1.0 .`
# Runs as a non-root user on a read-only root filesystem with no writable /tmp (nothing is written at run
# time; --ca-dir, if used, is a mounted volume). test/deploy/image.test.ts runs the runtime stage's steps by hand.

# Build: generate and compile src/ to dist/ (needs the dev dependencies: buf, protoc-gen-es, typescript, tsx).
FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Scripts off: `prepare` would build before the sources are here; the build runs below instead.
RUN npm ci --ignore-scripts
COPY . .
RUN npm run build

# Runtime: dist/ and the production dependencies only.
FROM node:22-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /src/dist ./dist
# The base image's `node` user, by number so that Kubernetes' runAsNonRoot can check it.
USER 1000:1000
# xDS (gRPC) and admin HTTP.
EXPOSE 18000 18001
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve"]
