"""GenEval's vocabulary: the 80 COCO class names and the 10 colours, in GenEval's order.

The order matters: prompt generation indexes these lists with a seeded RNG, and the
mmdet backend maps label ids to names by position.
"""

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "computer mouse", "tv remote",
    "computer keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

COLORS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
)

# GenEval's zero-shot colour templates; "{c}" is the colour, the class name is filled in first.
COLOR_TEMPLATES: tuple[str, ...] = (
    "a photo of a {{c}} {classname}",
    "a photo of a {{c}}-colored {classname}",
    "a photo of a {{c}} object",
)

TAGS: tuple[str, ...] = (
    "single_object", "two_object", "counting", "colors", "position", "color_attr",
)


def color_prompts(classname: str) -> list[list[str]]:
    """The texts whose embeddings form the colour classifier for `classname`, one list per colour."""
    templates = [t.format(classname=classname) for t in COLOR_TEMPLATES]
    return [[t.format(c=color) for t in templates] for color in COLORS]
