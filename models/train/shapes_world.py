"""Shapes World v1 for training: scene and clip sampling, and the texts that go with them.

Follows the Shapes World spec; all wording comes from src/synth/phrasing.json, shared with the
TypeScript generator, so that the model learns the phrasings Loupe's generator and evals use.
Scenes are sampled here (not read from files) so that training sees a fresh stream of them;
the renderer (render.py) draws them on the training device.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

PHRASING = json.loads((Path(__file__).resolve().parents[2] / "src" / "synth" / "phrasing.json").read_text())

SHAPES = ["circle", "square", "triangle", "star", "hexagon"]
COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]
COLOR_RGB = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
}
SIZES = ["small", "large"]
SIZE_RANGE = {"small": (0.06, 0.09), "large": (0.14, 0.20)}
ANSWERS = COLORS + SHAPES + ["0", "1", "2", "3", "4", "yes", "no", "small", "large", "left", "right"]
ACTIONS = PHRASING["actions"]
QUESTION_TYPES = ["color", "shape", "count", "exist", "size", "position"]
MAX_OBJECTS = 4
MARGIN = 0.02
GAP = 0.02


@dataclass
class Obj:
    shape: int
    color: int
    size: int
    x: float
    y: float
    r: float
    rotation: float  # degrees

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.size, self.color, self.shape)


def _in_band(v: float) -> bool:
    return 0.45 < v < 0.55


def _fits(x: float, y: float, r: float, others: list[Obj]) -> bool:
    if x - r < MARGIN or x + r > 1 - MARGIN or y - r < MARGIN or y + r > 1 - MARGIN:
        return False
    return all(math.hypot(x - o.x, y - o.y) >= r + o.r + GAP for o in others)


def place_object(rng: random.Random, shape: int, color: int, size: int, others: list[Obj], r: float | None = None) -> Obj | None:
    lo, hi = SIZE_RANGE[SIZES[size]]
    r = rng.uniform(lo, hi) if r is None else r
    for _ in range(60):
        x = rng.uniform(r + MARGIN, 1 - r - MARGIN)
        y = rng.uniform(r + MARGIN, 1 - r - MARGIN)
        if _in_band(x) or _in_band(y):
            continue
        if _fits(x, y, r, others):
            rotation = 0.0 if SHAPES[shape] == "circle" else rng.uniform(-20, 20)
            return Obj(shape, color, size, x, y, r, rotation)
    return None


def sample_scene(rng: random.Random, n_objects: int | None = None) -> tuple[int, list[Obj]]:
    """Samples a background gray level and 1-4 non-overlapping objects placed per the spec."""
    while True:
        n = n_objects or rng.randint(1, MAX_OBJECTS)
        objects: list[Obj] = []
        # Repeated kinds make counting questions and count words common enough to learn.
        for _ in range(n):
            if objects and rng.random() < 0.3:
                base = rng.choice(objects)
                shape, color, size = base.shape, base.color, base.size
                mode = rng.random()
                if mode < 0.33:
                    color = rng.randrange(6)
                elif mode < 0.66:
                    shape = rng.randrange(5)
            else:
                shape, color, size = rng.randrange(5), rng.randrange(6), rng.randrange(2)
            obj = place_object(rng, shape, color, size, objects)
            if obj is None:
                break
            objects.append(obj)
        if len(objects) == n:
            return rng.randint(70, 150), objects


# ---------------------------------------------------------------- words


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def fix_articles(text: str) -> str:
    """'a' becomes 'an' before a vowel-initial word, as the TypeScript generator writes it."""
    words = text.split(" ")
    for i in range(len(words) - 1):
        if words[i].lower() == "a" and words[i + 1][:1].lower() in "aeiou":
            words[i] = "an" if words[i] == "a" else "An"
    return " ".join(words)


def object_phrase(count: int, size: str | None, color: str | None, shape: str | None) -> str:
    noun = shape or "object"
    words = [w for w in (size, color) if w]
    if count == 1:
        head = _article((words + [noun])[0])
        return " ".join([head, *words, noun])
    return " ".join([PHRASING["countWords"][str(count)], *words, PHRASING["plurals"][noun]])


def join_list(rng: random.Random, parts: list[str]) -> str:
    joiner = rng.choice(PHRASING["listJoiners"])
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0] + joiner["pair"] + parts[1]
    return joiner["sep"].join(parts[:-1]) + joiner["last"] + parts[-1]


def histogram(objects: list[Obj]) -> list[int]:
    """Counts per (size, color, shape): index = size*30 + color*5 + shape."""
    h = [0] * 60
    for o in objects:
        h[o.size * 30 + o.color * 5 + o.shape] += 1
    return h


def describe_groups(rng: random.Random, groups: dict[tuple[int, int, int], int], sized: bool) -> str:
    """groups maps (size, color, shape) (size -1 when unsized) to counts."""
    parts = [
        object_phrase(n, SIZES[s] if sized and s >= 0 else None, COLORS[c], SHAPES[sh])
        for (s, c, sh), n in groups.items()
    ]
    rng.shuffle(parts)
    template = rng.choice(PHRASING["descriptionTemplates"])
    return template.replace("{objects}", join_list(rng, parts))


def groups_of(hist: list[int], sized: bool) -> dict[tuple[int, int, int], int]:
    groups: dict[tuple[int, int, int], int] = {}
    for idx, n in enumerate(hist):
        if n:
            s, c, sh = idx // 30, (idx // 5) % 6, idx % 5
            key = (s if sized else -1, c, sh)
            groups[key] = groups.get(key, 0) + n
    return groups


def describe_scene(rng: random.Random, objects: list[Obj]) -> tuple[str, bool, list[int]]:
    """A full description: returns (text, sized, histogram it states)."""
    hist = histogram(objects)
    sized = rng.random() < 0.6
    return describe_groups(rng, groups_of(hist, sized), sized), sized, hist


def hard_negative(rng: random.Random, objects: list[Obj]) -> tuple[str, bool, list[int]] | None:
    """A description of a scene that differs in one binding, attribute or count."""
    hist = histogram(objects)
    for _ in range(20):
        objs = [Obj(o.shape, o.color, o.size, o.x, o.y, o.r, o.rotation) for o in objects]
        mode = rng.random()
        if mode < 0.3 and len(objs) >= 2:
            a, b = rng.sample(range(len(objs)), 2)
            if rng.random() < 0.5:
                objs[a].color, objs[b].color = objs[b].color, objs[a].color
            else:
                objs[a].shape, objs[b].shape = objs[b].shape, objs[a].shape
        elif mode < 0.5:
            rng.choice(objs).color = rng.randrange(6)
        elif mode < 0.7:
            rng.choice(objs).shape = rng.randrange(5)
        elif mode < 0.8:
            o = rng.choice(objs)
            o.size = 1 - o.size
        elif mode < 0.9 and len(objs) < MAX_OBJECTS:
            objs.append(Obj(*rng.choice(objs).key[::-1], 0, 0, 0, 0))  # one more of an existing kind
        elif len(objs) >= 2:
            objs.pop(rng.randrange(len(objs)))
        new_hist = histogram(objs)
        sized = mode >= 0.7 and mode < 0.8 or rng.random() < 0.5
        if sized and new_hist == hist:
            continue
        if not sized and groups_of(new_hist, False) == groups_of(hist, False):
            continue
        return describe_groups(rng, groups_of(new_hist, sized), sized), sized, new_hist
    return None


def partial_query(rng: random.Random, objects: list[Obj], relevant: bool = True) -> tuple[str, list[int], list[int], list[int], int]:
    """A partial query (one or two attributes of one object kind).

    Returns (text, size_mask[2], color_mask[6], shape_mask[5], count) with count 0 meaning "at least one".
    When relevant is True the query is built from an object of the scene (mostly satisfied).
    """
    kinds = ["color", "shape", "size", "color+shape", "size+shape", "size+color", "count+shape", "count+color"]
    kind = rng.choice(kinds)
    if relevant:
        o = rng.choice(objects)
        size, color, shape = SIZES[o.size], COLORS[o.color], SHAPES[o.shape]
    else:
        size, color, shape = rng.choice(SIZES), rng.choice(COLORS), rng.choice(SHAPES)
    use_size = "size" in kind
    use_color = "color" in kind
    use_shape = "shape" in kind
    count = 0
    if "count" in kind:
        if relevant:
            count = sum(
                1 for x in objects if (not use_color or COLORS[x.color] == color) and (not use_shape or SHAPES[x.shape] == shape)
            )
            if count < 2:
                count = rng.randint(2, 4) if rng.random() < 0.3 else 0
        else:
            count = rng.randint(2, 4)
    phrase = object_phrase(
        max(count, 1), size if use_size else None, color if use_color else None, shape if use_shape else None
    )
    template = rng.choice(PHRASING["partialTemplates"])
    size_mask = [1 if (not use_size or SIZES[i] == size) else 0 for i in range(2)]
    color_mask = [1 if (not use_color or COLORS[i] == color) else 0 for i in range(6)]
    shape_mask = [1 if (not use_shape or SHAPES[i] == shape) else 0 for i in range(5)]
    return template.replace("{object}", phrase), size_mask, color_mask, shape_mask, count


def question(rng: random.Random, objects: list[Obj], qtype: str | None = None) -> tuple[str, int, int]:
    """A VQA question for the scene: (text, answer index, type index). Follows the 'asked only when' rules."""
    types = [qtype] if qtype else list(QUESTION_TYPES)
    rng.shuffle(types)
    for t in types + QUESTION_TYPES:
        templates = PHRASING["questionTemplates"]
        if t == "color":
            by_shape = [o for o in objects if sum(x.shape == o.shape for x in objects) == 1]
            if not by_shape:
                continue
            o = rng.choice(by_shape)
            text = rng.choice(templates["color"]).replace("{shape}", SHAPES[o.shape])
            return text, ANSWERS.index(COLORS[o.color]), 0
        if t == "shape":
            by_color = [o for o in objects if sum(x.color == o.color for x in objects) == 1]
            if not by_color:
                continue
            o = rng.choice(by_color)
            text = rng.choice(templates["shape"]).replace("{color}", COLORS[o.color])
            return text, ANSWERS.index(SHAPES[o.shape]), 1
        if t == "count":
            variant = rng.random()
            if variant < 0.4:
                shape = rng.randrange(5) if rng.random() < 0.4 else rng.choice(objects).shape
                n = sum(o.shape == shape for o in objects)
                text = rng.choice(templates["count_shape"]).replace("{shapes}", PHRASING["plurals"][SHAPES[shape]])
            elif variant < 0.8:
                color = rng.randrange(6) if rng.random() < 0.4 else rng.choice(objects).color
                n = sum(o.color == color for o in objects)
                text = rng.choice(templates["count_color"]).replace("{color}", COLORS[color])
            else:
                n = len(objects)
                text = rng.choice(templates["count_all"])
            return text, ANSWERS.index(str(n)), 2
        if t == "exist":
            if rng.random() < 0.5:
                o = rng.choice(objects)
                color, shape = o.color, o.shape
            else:
                # A near miss half the time: right color or right shape, wrong pairing.
                o = rng.choice(objects)
                color, shape = (o.color, rng.randrange(5)) if rng.random() < 0.5 else (rng.randrange(6), o.shape)
            yes = any(x.color == color and x.shape == shape for x in objects)
            text = fix_articles(rng.choice(templates["exist"]).replace("{color}", COLORS[color]).replace("{shape}", SHAPES[shape]))
            return text, ANSWERS.index("yes" if yes else "no"), 3
        if t in ("size", "position"):
            unique = [o for o in objects if sum(x.color == o.color and x.shape == o.shape for x in objects) == 1]
            if not unique:
                continue
            o = rng.choice(unique)
            text = rng.choice(templates[t]).replace("{color}", COLORS[o.color]).replace("{shape}", SHAPES[o.shape])
            if t == "size":
                return text, ANSWERS.index(SIZES[o.size]), 4
            return text, ANSWERS.index("left" if o.x < 0.5 else "right"), 5
    raise AssertionError("the count question is always possible")


# ---------------------------------------------------------------- videos

FRAMES = 16


def sample_clip(rng: random.Random) -> tuple[int, list[list[Obj]], int, int]:
    """A 16-frame clip: (background, frames of objects, index of the acting object, action index).

    The action, the number of objects and their kinds are drawn once and only the layout is retried, as
    the TypeScript generator does: retrying the whole draw would favour the actions and object counts
    that are easiest to lay out (shrinking, one object) over the others."""
    n = rng.randint(1, 3)
    action = rng.randrange(6)
    bg = rng.randint(70, 150)
    actor_size = 0 if ACTIONS[action] == "growing" else 1 if ACTIONS[action] == "shrinking" else rng.randrange(2)
    actor_kind = (rng.randrange(5), rng.randrange(6))
    other_kinds = [(rng.randrange(5), rng.randrange(6), rng.randrange(2)) for _ in range(n - 1)]
    while True:
        actor = place_object(rng, *actor_kind, actor_size, [])
        if actor is None:
            continue
        still: list[Obj] = []
        for shape, color, size in other_kinds:
            o = place_object(rng, shape, color, size, [actor, *still])
            if o is None:
                break
            still.append(o)
        if len(still) != len(other_kinds):
            continue
        name = ACTIONS[action]
        x0, y0, r0 = actor.x, actor.y, actor.r
        x1, y1, r1 = x0, y0, r0
        if name.startswith("moving"):
            travel = rng.uniform(0.3, 0.6)
            dx, dy = {"moving left": (-1, 0), "moving right": (1, 0), "moving up": (0, -1), "moving down": (0, 1)}[name]
            x1, y1 = x0 + dx * travel, y0 + dy * travel
        elif name == "growing":
            # Ends at a large radius, at least 1.8 times the small one it started from.
            r1 = rng.uniform(max(r0 * 1.8, SIZE_RANGE["large"][0]), SIZE_RANGE["large"][1])
        else:
            # Ends at a small radius, at most 1/1.8 of the large one it started from.
            r1 = rng.uniform(SIZE_RANGE["small"][0], min(r0 / 1.8, SIZE_RANGE["small"][1]))
        frames: list[list[Obj]] = []
        ok = True
        for f in range(FRAMES):
            t = f / (FRAMES - 1)
            a = Obj(actor.shape, actor.color, actor.size, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, r0 + (r1 - r0) * t, actor.rotation)
            if a.x - a.r < MARGIN or a.x + a.r > 1 - MARGIN or a.y - a.r < MARGIN or a.y + a.r > 1 - MARGIN:
                ok = False
                break
            if any(math.hypot(a.x - o.x, a.y - o.y) < a.r + o.r + GAP for o in still):
                ok = False
                break
            frames.append([a, *still])
        if ok:
            return bg, frames, 0, action


OPPOSITE_ACTION = {"moving left": "moving right", "moving right": "moving left", "moving up": "moving down", "moving down": "moving up", "growing": "shrinking", "shrinking": "growing"}


def clip_negative(rng: random.Random, actor: Obj, action: int) -> tuple[str, int, int, int, int]:
    """A description that is false of the clip: the opposite action (45%), another direction of movement
    (25%), another color (10%) or shape (20%). Returns (text, size index or -1, color, shape, action)."""
    color, shape, act = actor.color, actor.shape, action
    name = ACTIONS[action]
    roll = rng.random()
    if roll < 0.45:
        act = ACTIONS.index(OPPOSITE_ACTION[name])
    elif roll < 0.7:
        # Moving objects are most often mistaken for moving another way; growth for a movement.
        others = [a for a in ACTIONS if a.startswith("moving") and a not in (name, OPPOSITE_ACTION[name])]
        act = ACTIONS.index(rng.choice(others))
    elif roll < 0.8:
        color = rng.choice([c for c in range(len(COLORS)) if c != actor.color])
    else:
        shape = rng.choice([s for s in range(len(SHAPES)) if s != actor.shape])
    sized = rng.random() < 0.5
    phrase = object_phrase(1, SIZES[actor.size] if sized else None, COLORS[color], SHAPES[shape])
    template = rng.choice(PHRASING["videoTemplates"])
    text = template.replace("{object}", phrase).replace("{action}", ACTIONS[act])
    return text, actor.size if sized else -1, color, shape, act


def describe_clip(rng: random.Random, actor: Obj, action: int) -> tuple[str, int]:
    """A clip description; returns (text, size index or -1 when the size word is omitted)."""
    sized = rng.random() < 0.5
    phrase = object_phrase(1, SIZES[actor.size] if sized else None, COLORS[actor.color], SHAPES[actor.shape])
    template = rng.choice(PHRASING["videoTemplates"])
    return template.replace("{object}", phrase).replace("{action}", ACTIONS[action]), actor.size if sized else -1
