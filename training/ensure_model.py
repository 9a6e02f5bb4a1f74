"""Train the preset's model only if the store holds none yet (used by ``make serve``/``demo``).

``python -m training.ensure_model --preset demo`` prints the tag that will be served.
"""

from __future__ import annotations

import argparse

from training.simulator import PRESETS
from training.store import latest_model


def ensure_model(preset_name: str = "demo", force: bool = False) -> str:
    """Return the tag of a model in the store, training ``preset_name`` first if none exists."""
    tag = latest_model()
    if tag is not None and not force:
        return tag
    from training.train import train  # noqa: PLC0415 (only when training is needed)

    return train(preset_name).tag


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--force", action="store_true", help="train even if a model exists")
    args = parser.parse_args(argv)
    print(ensure_model(args.preset, args.force))


if __name__ == "__main__":
    main()
