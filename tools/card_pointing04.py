"""Adds the Pointing04_dev section (yaw by |pan| band, pitch, reach) to the shipped models' cards and re-renders them.

    python tools/card_pointing04.py            # both shipped models, ../shared/data/Pointing04_dev

`tools/ship_model.py` writes the section into every newly shipped card; this brings cards shipped before it up to
date without retraining or re-timing anything (the rest of each card is kept as it is; rerunning replaces the section).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qa_headpose.core.atomic import write_bytes, write_json
from qa_headpose.training import modelcard

MODELS = Path(__file__).resolve().parents[1] / "qa_headpose" / "models"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--names", nargs="+", default=["accurate", "fast"])
    p.add_argument("--pointing04", default="../shared/data/Pointing04_dev")
    args = p.parse_args()
    for name in args.names:
        card_path = MODELS / f"headpose_{name}.card.json"
        card = json.loads(card_path.read_text())
        card["pointing04_dev"] = modelcard.pointing04_report(MODELS / f"headpose_{name}_int8.tflite", args.pointing04)
        write_json(card_path, card)
        # The section goes in before the latency (where render_markdown puts it); the rest of the text is kept.
        markdown = MODELS / f"MODEL_CARD_{name}.md"
        text = markdown.read_text()
        start = text.find("## Another capture: Pointing04_dev")
        if start >= 0:
            text = text[:start] + text[text.index("## Latency of the int8 model") :]
        section = "\n".join(modelcard.pointing04_section(card["pointing04_dev"]))
        text = text.replace("## Latency of the int8 model", section + "\n## Latency of the int8 model", 1)
        write_bytes(markdown, text.encode())
        print(
            f"{name}: Pointing04_dev yaw {card['pointing04_dev']['yaw']:.2f}, reach {card['pointing04_dev']['reach']}"
        )


if __name__ == "__main__":
    main()
