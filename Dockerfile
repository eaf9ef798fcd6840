FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
# The workflow bundle, built once here rather than by every worker at start.
RUN node --import tsx worker/bundle.ts
ENTRYPOINT []
