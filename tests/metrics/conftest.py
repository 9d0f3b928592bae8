"""COCO-style fixtures: real-looking captions, 5 references each, written in the style of MS COCO val."""

from __future__ import annotations

import pytest

# (prediction, 5 references). Mixed case, punctuation, a possessive and a hyphen, as in COCO annotations.
COCO_ITEMS: list[tuple[str, list[str]]] = [
    (
        "a man riding a wave on top of a surfboard.",
        [
            "A man riding a wave on top of a surfboard.",
            "A surfer rides a large wave in the ocean.",
            "A person on a surf board riding a wave.",
            "a man in a wetsuit surfing on a wave",
            "Surfer in black wetsuit catching a big wave.",
        ],
    ),
    (
        "a plate of food with broccoli and meat",
        [
            "A white plate topped with broccoli, rice and chicken.",
            "A plate of food that includes meat and broccoli.",
            "Some broccoli and beef on a dinner plate.",
            "a close up of a plate of food with vegetables",
            "A meal of steamed broccoli and grilled meat on a plate.",
        ],
    ),
    (
        "a group of people standing around a kitchen",
        [
            "Several people are gathered in a small kitchen.",
            "A group of friends cooking together in a kitchen.",
            "People standing around a kitchen counter talking.",
            "Four people in a kitchen preparing food.",
            "A crowded kitchen with people standing near the stove.",
        ],
    ),
    (
        "a giraffe standing next to a tree in a field",
        [
            "A giraffe standing in a grassy field next to a tree.",
            "A tall giraffe eating leaves off of a tree.",
            "The giraffe is standing alone near some trees.",
            "A giraffe in an open field with trees in the background.",
            "a giraffe that is standing by a tree",
        ],
    ),
    (
        "a red double decker bus driving down a street",
        [
            "A red double-decker bus drives down the city street.",
            "A double decker bus on a street in London.",
            "A big red bus traveling down a road.",
            "The red bus is driving past some buildings.",
            "A tour bus with two levels driving on the street.",
        ],
    ),
    (
        "a cat laying on top of a laptop computer",
        [
            "A cat is lying on a laptop keyboard.",
            "A gray cat sleeping on top of an open laptop.",
            "The cat's head rests on the computer's keys.",
            "A kitten curled up on a laptop on a desk.",
            "A cat laying across a black laptop computer.",
        ],
    ),
    (
        "a baseball player swinging a bat at a ball",
        [
            "A baseball player swinging a bat during a game.",
            "A batter swings at the pitch while the catcher waits.",
            "A man hitting a ball with a baseball bat.",
            "The player is about to hit the baseball.",
            "A baseball game in progress with the batter up to bat.",
        ],
    ),
    (
        "a bathroom with a toilet and a sink",
        [
            "A small bathroom with a white toilet and sink.",
            "A clean bathroom with a toilet, sink and mirror.",
            "The bathroom has a toilet next to a pedestal sink.",
            "A white toilet sitting next to a bathroom sink.",
            "A tiled bathroom with a toilet and a vanity.",
        ],
    ),
    (
        "two dogs playing with a frisbee in the grass",
        [
            "Two dogs are running after a frisbee on the lawn.",
            "A pair of dogs playing with a red frisbee.",
            "Two brown dogs chasing a frisbee in a park.",
            "Dogs play together in the grass with a disc.",
            "Two dogs fight over a frisbee on green grass.",
        ],
    ),
    (
        "a woman holding an umbrella in the rain",
        [
            "A woman walks down the street holding an umbrella.",
            "A lady with a black umbrella in the rain.",
            "A woman standing in the rain under an umbrella.",
            "A person holding a pink umbrella on a rainy day.",
            "Woman carrying an umbrella on a wet sidewalk.",
        ],
    ),
]


@pytest.fixture(scope="session")
def coco_items() -> tuple[list[str], list[list[str]]]:
    return [p for p, _ in COCO_ITEMS], [list(r) for _, r in COCO_ITEMS]


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from vlgen.metrics.bertscore import packaged_minilm_dir

    return str(packaged_minilm_dir())
