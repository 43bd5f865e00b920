"""cards: one model card per model, models/<model>/MODEL_CARD.md, generated from the run's metrics and params.

    python -m stages.cards baseline

What the model is, its training and test data and their known biases, its metrics with intervals on
both splits and the cross-dataset drop, its intended use, the uses it must not serve, and its limits
(stages/analysis/cards.py builds the sections; the report carries the same). Written whole, then
renamed into place.
"""

from __future__ import annotations

from typing import Sequence

from stages.analysis.cards import card_sections, card_title, read_card_inputs
from stages.analysis.document import to_markdown
from stages.common import cli
from stages.common.atomic_files import atomic_file
from stages.common.config import MODELS_DIR, load_params

CARD_FILE = "MODEL_CARD.md"


def main(argv: Sequence[str] | None = None) -> None:
    params = load_params()
    model = cli.parse_model_argument(argv, __doc__.splitlines()[0], params.model_names)
    inputs = read_card_inputs(model, params)
    target = MODELS_DIR / model / CARD_FILE
    text = to_markdown(card_title(model, inputs.metrics[0].description), card_sections(inputs), target.parent)
    with atomic_file(target, "w") as handle:
        handle.write(text)
    print(f"cards: wrote {target}")


if __name__ == "__main__":
    cli.run(main)
