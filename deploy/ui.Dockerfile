# The analyst UI (Gradio, `fraud-ui`) as an OCI image: `make image-ui` builds it as
# fraud-detection-ui:<version> and :latest from a small context that deploy/build_ui_image.py
# assembles (the UI and the shared contract packages, the UI's exact dependency versions
# exported from uv.lock, and training's evaluation plots for the Model tab). Same conventions as the API image: non-root UID/GID 10001, nothing
# writable but /tmp (read-only root filesystem), a HEALTHCHECK on /healthz for Docker users.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: a virtualenv with exactly the pinned packages ----------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY requirements.txt /tmp/requirements.txt
# Every version is pinned (exported from uv.lock), so --no-deps installs exactly that set and
# `pip check` proves it is complete.
RUN python -m venv /app/.venv \
    && /app/.venv/bin/pip install --no-deps --requirement /tmp/requirements.txt \
    && /app/.venv/bin/pip check \
    && /app/.venv/bin/pip uninstall --yes pip setuptools \
    && find /app/.venv -depth -type d -name __pycache__ -exec rm -rf {} +

# ---- runtime -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin app
ENV PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    GRADIO_TEMP_DIR=/tmp/gradio \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_OFFLINE=1 \
    FRAUD_UI_HOST=0.0.0.0 \
    FRAUD_UI_PORT=7860 \
    FRAUD_UI_REPORTS_DIR=/app/reports/model
COPY --from=builder /app/.venv /app/.venv
WORKDIR /app
# Code owned by root: the app cannot modify it. Byte-compiled now, the root FS is read-only later.
COPY fraud_contract ./fraud_contract
# The ui package carries the Live tab's replay file (ui/replay_transactions.csv.gz, simulated
# raw transactions): the simulator itself needs pyarrow and the training package, not shipped here.
COPY ui ./ui
# Training's evaluation plots (reports/model/*.png), shown on the Model tab.
COPY reports/model ./reports/model
RUN python -m compileall -q fraud_contract ui
EXPOSE 7860
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "ui.app"]
