"""Web-like captions for Fashion-MNIST images, generated from their labels.

Real CLIP data pairs each image with whatever text sat next to it on a web page: the exact
class name only sometimes, more often a synonym ("trainers" for a sneaker), a vague superclass
("footwear"), shop words and attributes, and a share of captions that describe something else
or nothing at all.  The generator reproduces that mix with explicit rates, so that a data
version is defined by a handful of numbers (``CaptionNoise``) and its measured noise can be
checked.  One caption per image, fixed for a data version: a web image comes with one text.

The class names are the downstream task's (``prt_bench/vision/datasets/classnames/
fashion_mnist.txt``), so zero-shot prompts built from them meet words the text tower has seen.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field

# Canonical names, in label order (as the downstream zero-shot head spells them).
CLASSNAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]

# What a shop or a blog would call each class instead.  No synonym contains another class's name.
SYNONYMS = {
    "t-shirt": ["tee", "top", "tank top", "crew neck tee", "tshirt"],
    "trouser": ["trousers", "pants", "jeans", "slacks", "chinos"],
    "pullover": ["sweater", "jumper", "knit sweater", "sweatshirt", "hoodie"],
    "dress": ["gown", "sundress", "frock", "maxi", "evening gown"],
    "coat": ["jacket", "overcoat", "parka", "trench", "blazer"],
    "sandal": ["sandals", "flip flops", "slides", "strappy heels", "espadrilles"],
    "shirt": ["blouse", "button-down", "flannel", "collared top", "oxford"],
    "sneaker": ["sneakers", "trainers", "running shoes", "tennis shoes", "kicks"],
    "bag": ["handbag", "purse", "tote", "backpack", "clutch"],
    "ankle boot": ["boots", "chelsea boots", "booties", "short boots", "combat boots"],
}

# The vague words web text often uses instead: they tell the group, not the class.
SUPERCLASS = {
    "t-shirt": "tops", "pullover": "tops", "shirt": "tops", "coat": "outerwear",
    "trouser": "bottoms", "dress": "womenswear", "sandal": "footwear", "sneaker": "footwear",
    "ankle boot": "footwear", "bag": "accessories",
}

ATTRIBUTES = ["black", "white", "grey", "dark", "light", "striped", "plain", "printed", "cotton",
              "leather", "wool", "denim", "vintage", "casual", "classic", "slim", "oversized",
              "women's", "men's", "kids'", "summer", "winter", "new", "designer"]

TEMPLATES = ["{x}", "{x}", "a {x}", "photo of a {x}", "a photo of a {x}", "{x} for sale", "buy {x} online",
             "my new {x}", "cheap {x}, free shipping", "{x} on sale", "look at this {x}", "the best {x}",
             "{x}, size m", "{x} in stock", "i love this {x}", "{x} outfit idea", "a picture of the {x}"]

# Captions that say nothing about the image: file names, shop boilerplate, nothing.
EMPTY = ["", "image", "photo", "img_{n}.jpg", "dsc{n}", "new arrivals", "click to enlarge", "product photo",
         "sale!", "untitled", "best price", "limited offer", "in stock now"]

KINDS = ("classname", "synonym", "superclass", "wrong", "empty")


@dataclass(frozen=True)
class CaptionNoise:
    """The rates that define a caption version.

    ``wrong``: the caption describes another, random class; ``empty``: it describes nothing.
    Among the remaining (informative) captions, ``classname`` use the canonical class name,
    ``superclass`` only the group word, the rest a synonym.  ``attribute``: the chance of each
    of up to two attribute words.  ``unnamed``: classes whose canonical (downstream) name the
    crawl never uses -- a shop says "jumper", never "pullover" -- so a caption that would name
    one of them names it by a synonym: every base trained on such a crawl meets the downstream
    label name without having learnt it, the gap a fine-tuned reward can close for any base.
    ``named_as``: class -> the class name the crawl uses for it instead (a dialect: the crawl's
    "shirt" is the dataset's "t-shirt" and the other way round), so every base learns the two
    names with each other's meaning -- a confusion shared by all bases, in the label space.
    ``named_as_share``: the share of those captions that use the other name; the rest use the
    class's own (a dialect most of the crawl speaks, not all of it), so the confusion a base can
    learn from the crawl has a bounded confidence, however long it trains.  Drawn from a random
    stream of its own: every other caption is the same as at share 1.
    """

    wrong: float
    empty: float
    classname: float
    superclass: float
    attribute: float = 0.4
    unnamed: tuple[str, ...] = ()
    named_as: dict[str, str] = field(default_factory=dict)
    named_as_share: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "unnamed", tuple(self.unnamed))
        object.__setattr__(self, "named_as", dict(self.named_as))
        unknown = sorted((set(self.unnamed) | set(self.named_as) | set(self.named_as.values())) - set(CLASSNAMES))
        if unknown:
            raise ValueError(f"caption noise unnamed/named_as {unknown}: not class names ({', '.join(CLASSNAMES)})")
        for name, value in asdict(self).items():
            if name in ("unnamed", "named_as"):
                continue
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"caption noise {name}={value} is not a probability")
        if self.wrong + self.empty > 1.0:
            raise ValueError(f"wrong + empty = {self.wrong + self.empty} > 1")
        if self.classname + self.superclass > 1.0:
            raise ValueError(f"classname + superclass = {self.classname + self.superclass} > 1")

    @property
    def noise_rate(self) -> float:
        """Share of captions that do not describe the image's class at all."""
        return self.wrong + self.empty

    def expected_shares(self) -> dict[str, float]:
        informative = 1.0 - self.wrong - self.empty
        named = 1.0 - len(self.unnamed) / len(CLASSNAMES)  # the classes are balanced
        return {"classname": informative * self.classname * named, "superclass": informative * self.superclass,
                "synonym": informative * (1.0 - self.classname * named - self.superclass),
                "wrong": self.wrong, "empty": self.empty}


def _describe(rng: random.Random, label: int, noise: CaptionNoise, dialect: random.Random) -> tuple[str, str]:
    """(caption, kind) naming class ``label`` the way web text would."""
    name = CLASSNAMES[label]
    u = rng.random()
    if u < noise.classname and name not in noise.unnamed:
        kind, words = "classname", name
        if name in noise.named_as and dialect.random() < noise.named_as_share:
            words = noise.named_as[name]
    elif noise.classname <= u < noise.classname + noise.superclass:
        kind, words = "superclass", SUPERCLASS[name]
    else:
        kind, words = "synonym", rng.choice(SYNONYMS[name])
    attributes = [a for a in rng.sample(ATTRIBUTES, 2) if rng.random() < noise.attribute]
    return rng.choice(TEMPLATES).format(x=" ".join([*attributes, words])), kind


def make_captions(labels, noise: CaptionNoise, seed: int) -> tuple[list[str], list[str]]:
    """One caption per label and what kind of caption it is (one of ``KINDS``); deterministic in ``seed``."""
    rng = random.Random(seed)
    dialect = random.Random(f"{seed}:dialect")  # named_as_share's own stream
    captions, kinds = [], []
    for label in labels:
        label = int(label)
        u = rng.random()
        if u < noise.empty:
            caption, kind = rng.choice(EMPTY).format(n=rng.randrange(10000)), "empty"
        elif u < noise.empty + noise.wrong:
            other = rng.choice([c for c in range(len(CLASSNAMES)) if c != label])
            caption, _ = _describe(rng, other, noise, dialect)
            kind = "wrong"
        else:
            caption, kind = _describe(rng, label, noise, dialect)
        captions.append(caption)
        kinds.append(kind)
    return captions, kinds


def measured_shares(kinds: list[str]) -> dict[str, float]:
    counts = Counter(kinds)
    return {k: counts[k] / max(len(kinds), 1) for k in KINDS}
