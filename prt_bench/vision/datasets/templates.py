"""Zero-shot prompt templates, one list per dataset.

The paper's datasets use CLIP_benchmark's English templates
(``clip_benchmark/datasets/en_zeroshot_classification_templates.json``, MIT licence,
Copyright (c) 2022 Mehdi Cherti), which follow the CLIP paper's prompts; ``{c}`` is the
class name.  CUB has none there: its template follows the fine-grained ones (Flowers, Pets,
Aircraft).  Fashion-MNIST's are prt-bench's own.
"""

CIFAR_TEMPLATES = [
    "a photo of a {c}.",
    "a blurry photo of a {c}.",
    "a black and white photo of a {c}.",
    "a low contrast photo of a {c}.",
    "a high contrast photo of a {c}.",
    "a bad photo of a {c}.",
    "a good photo of a {c}.",
    "a photo of a small {c}.",
    "a photo of a big {c}.",
    "a photo of the {c}.",
    "a blurry photo of the {c}.",
    "a black and white photo of the {c}.",
    "a low contrast photo of the {c}.",
    "a high contrast photo of the {c}.",
    "a bad photo of the {c}.",
    "a good photo of the {c}.",
    "a photo of the small {c}.",
    "a photo of the big {c}.",
]

TEMPLATES: dict[str, list[str]] = {
    "aircraft": [
        "a photo of a {c}, a type of aircraft.",
        "a photo of the {c}, a type of aircraft.",
    ],
    "caltech101": [
        "a photo of a {c}.",
        "a painting of a {c}.",
        "a plastic {c}.",
        "a sculpture of a {c}.",
        "a sketch of a {c}.",
        "a tattoo of a {c}.",
        "a toy {c}.",
        "a rendition of a {c}.",
        "a embroidered {c}.",
        "a cartoon {c}.",
        "a {c} in a video game.",
        "a plushie {c}.",
        "a origami {c}.",
        "art of a {c}.",
        "graffiti of a {c}.",
        "a drawing of a {c}.",
        "a doodle of a {c}.",
        "a photo of the {c}.",
        "a painting of the {c}.",
        "the plastic {c}.",
        "a sculpture of the {c}.",
        "a sketch of the {c}.",
        "a tattoo of the {c}.",
        "the toy {c}.",
        "a rendition of the {c}.",
        "the embroidered {c}.",
        "the cartoon {c}.",
        "the {c} in a video game.",
        "the plushie {c}.",
        "the origami {c}.",
        "art of the {c}.",
        "graffiti of the {c}.",
        "a drawing of the {c}.",
        "a doodle of the {c}.",
    ],
    "cars": [
        "a photo of a {c}.",
        "a photo of the {c}.",
        "a photo of my {c}.",
        "i love my {c}!",
        "a photo of my dirty {c}.",
        "a photo of my clean {c}.",
        "a photo of my new {c}.",
        "a photo of my old {c}.",
    ],
    "cifar100": CIFAR_TEMPLATES,
    "country211": [
        "a photo i took in {c}.",
        "a photo i took while visiting {c}.",
        "a photo from my home country of {c}.",
        "a photo from my visit to {c}.",
        "a photo showing the country of {c}.",
    ],
    "cub": [
        "a photo of a {c}, a type of bird.",
        "a photo of the {c}, a type of bird.",
    ],
    "flowers": [
        "a photo of a {c}, a type of flower.",
    ],
    # "sattelite" is CLIP_benchmark's spelling, kept so zero-shot numbers stay comparable.
    "resisc45": [
        "a sattelite image of {c}",
        "an aerial view of {c}",
        "a sattelite photo of {c}",
        "{c} from above",
    ],
    "fashion_mnist": [
        "a photo of a {c}.",
        "a black and white photo of a {c}.",
        "a low resolution photo of the {c}.",
        "a photo of the {c}, a type of clothing.",
    ],
}

# Users' own image folders without a templates.txt get this one.
DEFAULT_TEMPLATES = ["a photo of a {c}."]
