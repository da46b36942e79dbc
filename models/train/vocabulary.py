"""The pack's visual vocabulary (vocabulary.json): the words its VQA head and Loupe's chain understand.

    python vocabulary.py --out ../shapes-world-tiny

export.py writes it with every pack; run this alone to rewrite it in an existing pack (then rewrite
the manifest with `export.py --out <pack> --manifest-only`). The format is described in models/README.md:
colors, shapes with their plurals, sizes with their synonyms, and actions with the verb a question uses,
the patterns (JavaScript regular expressions on the lower-cased question) that name them, and looser cues.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import shapes_world as sw

VERSION = 1

SIZE_SYNONYMS = {"small": ["little", "tiny"], "large": ["big"]}

ACTION_VERBS = {
    "moving left": "move left",
    "moving right": "move right",
    "moving up": "move up",
    "moving down": "move down",
    "growing": "grow",
    "shrinking": "shrink",
}

_MOVE = r"mov(?:e|es|ing)|go(?:es|ing)?|travel(?:s|ling|ing)?"
ACTION_PATTERNS = {
    "moving left": [rf"\b({_MOVE}|slid(?:e|es|ing))\s+(to the\s+)?left(wards?)?\b"],
    "moving right": [rf"\b({_MOVE}|slid(?:e|es|ing))\s+(to the\s+)?right(wards?)?\b"],
    "moving up": [rf"\b({_MOVE}|ris(?:e|es|ing))\s+up(wards?)?\b"],
    "moving down": [rf"\b({_MOVE}|fall(?:s|ing)?|dro(?:p|ps|pping))\s+down(wards?)?\b"],
    "growing": [r"\b(grow(?:s|ing|n)?|expand(?:s|ing)?|get(?:s|ting)? (bigger|larger))\b"],
    "shrinking": [r"\b(shrink(?:s|ing)?|shrunk|contract(?:s|ing)?|get(?:s|ting)? smaller)\b"],
}

# "when does the star move to the far left": a form of "move" and the direction anywhere in the question.
_MOVE_WORDS = ["move", "moves", "moving"]
ACTION_CUES = {
    "moving left": [_MOVE_WORDS, ["left"]],
    "moving right": [_MOVE_WORDS, ["right"]],
    "moving up": [_MOVE_WORDS, ["up"]],
    "moving down": [_MOVE_WORDS, ["down"]],
}


def vocabulary() -> dict:
    """Shapes World's vocabulary in the vocabulary.json format."""
    return {
        "version": VERSION,
        "colors": list(sw.COLORS),
        "shapes": [{"name": shape, "plural": sw.PHRASING["plurals"][shape]} for shape in sw.SHAPES],
        "sizes": [{"name": size, "synonyms": SIZE_SYNONYMS.get(size, [])} for size in sw.SIZES],
        "actions": [
            {
                "name": action,
                "verb": ACTION_VERBS[action],
                "patterns": ACTION_PATTERNS[action],
                **({"cues": ACTION_CUES[action]} if action in ACTION_CUES else {}),
            }
            for action in sw.ACTIONS
        ],
    }


def write_vocabulary(out: Path) -> None:
    (out / "vocabulary.json").write_text(json.dumps(vocabulary(), indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="the pack directory")
    write_vocabulary(Path(parser.parse_args().out))
