"""How long something takes, in words: the one duration formatter (pure: either side may use it)."""


def duration_text(seconds: float) -> str:
    """`7 s`, `3 min`, `1.5 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def eta_text(seconds: float) -> str:
    """An estimate: `about 7 s`, `about 3 min`, or `under a second`."""
    return "under a second" if seconds < 1 else f"about {duration_text(seconds)}"
