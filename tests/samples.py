"""Texts shared by the backend tests.

CALIBRATION: calibration texts for the static int8 exports (disjoint from conftest's TEXTS).
"""

CALIBRATION = [
    "An instant classic, with a score that lingers long after the credits.",
    "The script is a mess and the leads have no chemistry at all.",
    "Funny, touching and surprisingly smart about grief.",
    "Two hours of noise and explosions in search of a story.",
    "A documentary that follows three families through a hard winter in Maine.",
    "The director's best work in a decade: tense, lean and gorgeous to look at.",
    "It wants to be profound but settles for being merely pretentious.",
    "A retired boxer agrees to train the son of his old rival.",
    "Charming performances cannot save a plot this thin.",
    "Every frame looks like a painting, and the acting matches it.",
    "I laughed, I cried, and then I laughed again at the ending.",
    "A bloated, joyless franchise entry that nobody asked for.",
    "After a plane crash, survivors on a remote island must learn to trust each other.",
    "Smart, sharp and never condescending to its young audience.",
    "The twist is obvious from the first ten minutes.",
    "A moving portrait of an immigrant family in 1950s New York.",
    "Slow, but rewarding if you give it the patience it asks for.",
    "Cheap jokes, cheaper effects, and a running time that feels endless.",
    "A heist movie with more style than substance, but what style.",
    "The animation is lovely; the songs are forgettable.",
    "A young chef opens a restaurant in her late grandmother's house.",
    "Brave, angry, necessary filmmaking.",
    "Nothing here you have not seen done better elsewhere.",
    "It is the rare sequel that improves on the original in every way.",
]
