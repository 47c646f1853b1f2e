# Redis for session scopes where Docker Hub's redis image cannot be pulled: Debian's redis-server
# on the same base as the CodeIntel image. `make image` builds it as codeintel-redis:bookworm;
# docker-compose.yml uses it when CODEINTEL_REDIS_IMAGE names it (deploy/compose.test.yml does).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
# As Docker Hub's image: every interface of the container, no persistence configured.
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no"]
