"""The BentoML service: ``bentoml serve service.service:FraudScoring``.

This module only declares things: the settings BentoML's decorator needs (workers, timeout),
the model (declared on the service, so ``bentoml build`` packs it into the Bento), the front
app every request goes through (:mod:`service.app`) and the service class. Work happens when
the service starts, one function per step (:mod:`service.startup`):

* before any worker starts (BentoML's deployment hook, in the serving process): the settings
  and the model are checked; a missing key, a missing or corrupt model stop ``bentoml serve``
  with exit code 2 and one line naming what is wrong;
* in each worker (the service instance): the model is loaded and warmed up, the runtime
  bound to the front app, the process tuned, and only then is the worker ready.
"""

from __future__ import annotations

import bentoml

from service import bentoml_bridge, startup
from service.app import FrontApp
from service.settings import ServiceSettings, get_settings

settings = get_settings()

#: The model served, declared so that ``bentoml build`` packs it into the Bento.
MODEL = bentoml.models.BentoModel(settings.model_tag)
#: Every HTTP request of a worker goes through this app (BentoML's app sits behind it).
FRONT = FrontApp(settings)


def bentoml_config(config: ServiceSettings) -> dict[str, object]:
    """BentoML's part of the configuration: processes, health routes, its own features off.

    BentoML's access log, HTTP metrics and tracing middlewares never see a request: the
    front app answers every route itself and records the same metric families.
    """
    return {
        "workers": config.workers,
        "traffic": {"timeout": config.request_timeout_s},
        "logging": {"access": {"enabled": False}},
        "endpoints": {"livez": "/livez", "readyz": "/readyz"},
        "metrics": {"enabled": False},
    }


@bentoml.service(name="fraud_scoring", **bentoml_config(settings))
class FraudScoring:
    """Credit-card fraud scoring: single, batch and file scoring with explanations."""

    model_ref = MODEL

    @bentoml.on_deployment
    def check() -> None:
        """Before any worker starts: the settings can serve and the model loads."""
        startup.check_settings(settings)
        startup.load_model_or_exit(MODEL, settings)

    def __init__(self) -> None:
        startup.check_settings(settings)
        model = startup.load_model_or_exit(MODEL, settings)
        FRONT.bind(startup.start_worker(settings, model))
        startup.drain_on_sigterm(FRONT, settings.shutdown_drain_s)
        startup.tune_process()

    def __is_ready__(self) -> bool:
        """Readiness: the model is loaded and the warm-up prediction ran."""
        return FRONT.runtime is not None


bentoml_bridge.serve_front_app(FraudScoring, FRONT.in_front_of)
