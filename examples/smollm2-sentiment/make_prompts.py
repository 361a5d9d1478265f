"""Writes prompts/train.txt (320) and prompts/eval.txt (80), the prompts of the real-model lab
(examples/smollm2-lab.yaml): short, sentiment-neutral story openings written for this project (character x
situation, all 400 combinations shuffled with a fixed seed), each wrapped in one instruction; the lab sends each
line as one user message of the chat template (its default system message included: a shorter one measured 15%
of completions ending within 32 tokens instead of most).
Run from anywhere: python examples/smollm2-sentiment/make_prompts.py
The committed files are its output; the eval openings are combinations that never occur in train.
"""

import random
from pathlib import Path

CHARACTERS = [
    "The old fisherman", "A young teacher", "The night nurse", "Maria", "The baker's son", "Two sisters",
    "The new neighbour", "A retired pilot", "The village doctor", "A small robot", "The shopkeeper",
    "An old farmer", "The twins", "A tired traveller", "The lighthouse keeper", "Grandpa Joe", "The mayor",
    "A street musician", "The little girl", "The professor",
]
SITUATIONS = [
    "found a letter under the door", "opened the attic for the first time in years", "missed the last train home",
    "heard a knock at midnight", "walked down to the harbour at dawn", "got a phone call from an old friend",
    "saw smoke rising over the hill", "could not find the keys to the shop", "arrived in a town with no name",
    "woke up to find the street covered in snow", "was asked to give a speech at the wedding",
    "found a stray dog in the garden", "counted the coins in the jar twice", "stood in front of the closed bakery",
    "read the results on the notice board", "watched the storm roll in from the sea", "took the last seat on the bus",
    "opened a parcel with no return address", "came back to the house after twenty years", "met a stranger on the bridge",
]
INSTRUCTION = "Continue this story in one sentence: {}."
N_TRAIN = 320


def main() -> None:
    combos = [(c, s) for c in CHARACTERS for s in SITUATIONS]
    random.Random(0).shuffle(combos)
    lines = [INSTRUCTION.format(f"{c} {s}") + "\n" for c, s in combos]
    out = Path(__file__).parent / "prompts"
    out.mkdir(exist_ok=True)
    (out / "train.txt").write_text("".join(lines[:N_TRAIN]), encoding="utf-8")
    (out / "eval.txt").write_text("".join(lines[N_TRAIN:]), encoding="utf-8")


if __name__ == "__main__":
    main()
