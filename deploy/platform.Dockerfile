# Container platforms (Heroku via heroku.yml, Railway via railway.json) build from this file.
# It deploys the released scoring image unchanged: release.yml pushes it to GHCR for amd64 and
# arm64, with the model inside (no model is fetched at run time). The image's entrypoint
# honours the platform's $PORT (it overrides BENTOML_PORT), runs as UID 10001 and checks
# readiness on /readyz.
#
# Choose the image with the FRAUD_IMAGE build argument (heroku.yml `build.config`, a Railway
# service variable of the same name); the default is the release matching pyproject.toml.
ARG FRAUD_IMAGE=ghcr.io/fraud-detection/fraud-detection:0.1.0
FROM ${FRAUD_IMAGE}
